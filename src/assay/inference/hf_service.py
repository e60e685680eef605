"""The service a ``huggingface`` replica serves: a ``transformers`` pipeline over a Model's files.

Each replica process of the ``huggingface`` runner runs
``assay.inference.replica_server --target assay.inference.hf_service:HuggingFaceService``;
:class:`HuggingFaceService` builds ``transformers.pipeline(task, model=dir, tokenizer=dir,
device=...)`` once, at start, and answers one endpoint, chosen by the task:

============================  ==========  ===============================================
task                          endpoint    reply to ``{"text": ...}``
============================  ==========  ===============================================
``text-generation``           generate    ``[{"text": completion}, ...]``, one per returned
                                          sequence (``num_return_sequences``); the prompt is
                                          left out unless ``return_full_text`` is true
``text-classification``       classify    ``[{"label": ..., "score": ...}, ...]``, the
                                          ``top_k`` best labels (1 unless set; ``null``:
                                          all)
``feature-extraction``        embed       ``[{"embedding": [...]}]``, the mean of the
                                          token vectors (padding left out)
============================  ==========  ===============================================

``infer_batch`` hands the whole batch to the pipeline with ``batch_size``, so the replica's
``/batch`` endpoint runs the model on padded batches. This module imports nothing heavy at
import time; ``transformers`` and ``torch`` are imported by the constructor, in the replica.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TASK_ENDPOINTS", "HuggingFaceService"]

#: The tasks the ``huggingface`` runner serves, and the endpoint each answers on.
TASK_ENDPOINTS: dict[str, str] = {
    "text-generation": "generate",
    "text-classification": "classify",
    "feature-extraction": "embed",
}

#: Call arguments a task gets unless the configuration's ``generateArgs`` say otherwise.
_DEFAULT_CALL_ARGS: dict[str, dict[str, Any]] = {
    "text-generation": {"return_full_text": False},
    "text-classification": {"top_k": 1},
    "feature-extraction": {},
}

JSONObject = dict[str, Any]


def _texts(endpoint: str, requests: list[JSONObject]) -> list[str]:
    texts: list[str] = []
    for i, request in enumerate(requests):
        text = request.get("text") if isinstance(request, dict) else None
        if not isinstance(text, str):
            where = f"request {i} of the batch" if len(requests) > 1 else "the request"
            raise ValueError(
                f"{where} to {endpoint!r} needs a 'text' string, e.g. {{'text': 'Hello'}}; "
                f"got {request!r:.200}"
            )
        texts.append(text)
    return texts


class HuggingFaceService:
    """A ``transformers`` pipeline for one task, loaded from a directory of model files.

    ``pipeline_args`` go to ``transformers.pipeline()`` (e.g. ``{"dtype": "float32"}``);
    ``generate_args`` to every call of the pipeline (e.g. ``{"max_new_tokens": 32}`` for
    text generation, ``{"top_k": 3}`` for classification, ``{"truncation": true}`` for
    feature extraction); ``batch_size`` is the most texts the model runs on at once.
    """

    def __init__(
        self,
        model_dir: str,
        task: str,
        pipeline_args: JSONObject | None = None,
        generate_args: JSONObject | None = None,
        device: str | int = "cpu",
        batch_size: int = 8,
    ) -> None:
        if task not in TASK_ENDPOINTS:
            raise ValueError(
                f"task {task!r} is not served by the huggingface runner; the tasks are "
                f"{', '.join(TASK_ENDPOINTS)}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        from transformers import pipeline

        build: Any = pipeline  # typed per literal task name; ours is checked above
        self.task = task
        self.endpoints = [TASK_ENDPOINTS[task]]
        self.batch_size = batch_size
        self._call_args = {**_DEFAULT_CALL_ARGS[task], **(generate_args or {})}
        self._pipeline = build(
            task, model=model_dir, tokenizer=model_dir, device=device, **(pipeline_args or {})
        )

    def infer(self, endpoint: str, request: JSONObject) -> list[JSONObject]:
        """Answer one request (see the table in the module docstring)."""
        return self.infer_batch(endpoint, [request])[0]

    def infer_batch(self, endpoint: str, requests: list[JSONObject]) -> list[list[JSONObject]]:
        """Answer several requests with one pipeline call over all their texts."""
        if endpoint not in self.endpoints:
            raise KeyError(
                f"unknown endpoint {endpoint!r}: a {self.task} service answers {self.endpoints[0]!r}"
            )
        texts = _texts(endpoint, requests)
        if not texts:
            return []
        if self.task == "feature-extraction":
            return self._embed(texts)
        outputs = self._pipeline(
            texts, batch_size=min(self.batch_size, len(texts)), **self._call_args
        )
        if self.task == "text-generation":
            return [[{"text": o["generated_text"]} for o in _listed(out)] for out in outputs]
        return [
            [{"label": str(o["label"]), "score": float(o["score"])} for o in _listed(out)]
            for out in outputs
        ]

    def _embed(self, texts: list[str]) -> list[list[JSONObject]]:
        """Mean-pooled token vectors. The pipeline pads a batch and leaves the padding in its
        outputs, so each text's own token count decides which vectors are averaged."""
        args = dict(self._call_args)
        tokenize = dict(args.get("tokenize_kwargs") or {})
        if "truncation" in args:
            tokenize["truncation"] = args["truncation"]
        tokenizer = self._pipeline.tokenizer
        lengths = [len(ids) for ids in tokenizer(texts, **tokenize)["input_ids"]]
        args["return_tensors"] = True
        outputs = self._pipeline(texts, batch_size=min(self.batch_size, len(texts)), **args)
        left = getattr(tokenizer, "padding_side", "right") == "left"
        replies: list[list[JSONObject]] = []
        for text, tensor, n in zip(texts, outputs, lengths, strict=True):
            if n == 0:
                raise ValueError(f"the text {text!r:.100} has no tokens to embed")
            vectors = tensor[0]  # [tokens (padded), hidden]
            kept = vectors[vectors.shape[0] - n :] if left else vectors[:n]
            replies.append([{"embedding": kept.float().mean(dim=0).tolist()}])
        return replies


def _listed(output: Any) -> list[Any]:
    """One input's output as a list (a pipeline gives a bare dict for a single result)."""
    return output if isinstance(output, list) else [output]
