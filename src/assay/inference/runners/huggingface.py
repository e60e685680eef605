"""The ``huggingface`` runner: a ``transformers`` pipeline over a Model's files, served by
Assay's replica processes.

Configuration::

    {"task": "text-generation" | "text-classification" | "feature-extraction",
     "pipelineArgs": {...},      # keyword arguments of transformers.pipeline()
     "generateArgs": {...},      # keyword arguments of every pipeline call
     "device": "cpu",            # or "cuda", "cuda:1", 0, ...
     "batchSize": 8,             # the most instances the model runs on at once
     "readyTimeoutSeconds": 120}

The service needs a ``model``: a Model with files (uploaded with
``models.create_from_volume`` or fetched from a ``HuggingFaceHub`` source), saved by
``save_pretrained`` (``config.json`` and the weights, with the tokenizer's files). Each replica
is a process running :class:`assay.inference.hf_service.HuggingFaceService` with the platform's
own interpreter, which loads the files from the Model's directory and never downloads
anything (``HF_HUB_OFFLINE=1``). :func:`huggingface_interface` builds the interface for each
task; the endpoints and replies are listed in :mod:`assay.inference.hf_service`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay import errors
from assay.inference.hf_service import TASK_ENDPOINTS
from assay.inference.runners.base import (
    ProcessRunner,
    ReplicaHandle,
    RunnerEnv,
    config_error,
    configuration,
)

if TYPE_CHECKING:
    from assay.schema.platform import (
        ForeignModel,
        InferenceInterface,
        InferenceService,
        InferenceSession,
    )

__all__ = ["RUNNER", "SERVICE_TARGET", "HuggingFaceRunner", "huggingface_interface"]

#: The class each replica serves.
SERVICE_TARGET = "assay.inference.hf_service:HuggingFaceService"
DEFAULT_BATCH_SIZE = 8


def _tasks() -> str:
    return ", ".join(repr(t) for t in TASK_ENDPOINTS)


def huggingface_interface(task: str) -> InferenceInterface:
    """The interface of a ``huggingface`` service for ``task``: its endpoint, and the output
    schema of its replies (``text``; ``label`` and ``score``; ``embedding``)."""
    import pyarrow as pa

    from assay.schema.dataschema import DataSchema
    from assay.schema.platform import InferenceInterface

    if not isinstance(task, str) or task not in TASK_ENDPOINTS:
        raise errors.ValidationError(
            f"huggingface_interface(): task {task!r} is not one of the huggingface runner's "
            f"tasks: {_tasks()}",
            field="task",
            value=task,
        )
    outputs = {
        "text-generation": [pa.field("text", pa.string())],
        "text-classification": [pa.field("label", pa.string()), pa.field("score", pa.float64())],
        "feature-extraction": [pa.field("embedding", pa.list_(pa.float64()))],
    }
    return InferenceInterface(
        endpoint=TASK_ENDPOINTS[task],
        outputSchema=DataSchema.make_output_schema(pa.schema(outputs[task])),
    )


class HuggingFaceRunner(ProcessRunner):
    kind = "huggingface"

    def _kwargs(self, service: InferenceService) -> dict[str, Any]:
        """The service class's keyword arguments (all but the model directory), checked."""
        config = configuration(service)
        task = config.get("task")
        if not isinstance(task, str) or task not in TASK_ENDPOINTS:
            raise config_error(service, "task", f"is {task!r}, not one of the tasks: {_tasks()}")
        kwargs: dict[str, Any] = {"task": task}
        for key, name in (("pipelineArgs", "pipeline_args"), ("generateArgs", "generate_args")):
            value = config.get(key)
            value = {} if value is None else value
            if not isinstance(value, dict):
                raise config_error(service, key, "must be an object of keyword arguments")
            kwargs[name] = value
        device = config.get("device", "cpu")
        if isinstance(device, bool) or not isinstance(device, str | int):
            raise config_error(service, "device", "must be a device name, e.g. 'cpu' or 'cuda:0'")
        kwargs["device"] = device
        batch = config.get("batchSize", DEFAULT_BATCH_SIZE)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise config_error(service, "batchSize", "must be a positive integer")
        kwargs["batch_size"] = batch
        return kwargs

    def _model(self, service: InferenceService) -> ForeignModel:
        model = service.model
        if model is None:
            raise errors.ValidationError(
                f"InferenceService {service.name!r}: the huggingface runner loads a Model's "
                "files; set model to the id of a Model made with models.create_from_volume or "
                "from a HuggingFaceHub source",
                field="model",
            )
        if model.artifact.kind == "Mock":
            raise errors.ValidationError(
                f"InferenceService {service.name!r}: Model {model.id} ({model.name!r}) is a "
                "Mock, with no files for the huggingface runner to load; use a Model made "
                "with models.create_from_volume or from a HuggingFaceHub source",
                field="model",
                value=model.id,
            )
        return model

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        task = self._kwargs(service)["task"]
        self._model(service)
        interface = service.interface.endpoint.strip("/")
        endpoint = TASK_ENDPOINTS[task]
        if interface != endpoint:
            raise config_error(
                service,
                "task",
                f"is {task!r}, answered on the endpoint {endpoint!r}, "
                f"but interface.endpoint is {service.interface.endpoint!r}; use "
                "huggingface_interface(task) for the interface",
            )

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        from assay.inference.replicas import python_replica_argv

        service: InferenceService = session.inferenceService  # type: ignore[assignment]
        self.check(service, env)
        model = self._model(service)
        model_dir = env.entity_dir(model.id)
        if not (model_dir / "config.json").is_file():
            raise errors.ValidationError(
                f"InferenceService {service.id}: Model {model.id} has no config.json in "
                f"{str(model_dir)!r}; the huggingface runner loads a model saved with "
                "save_pretrained() (config.json, the weights and the tokenizer's files)",
                field="model",
                value=model.id,
            )
        kwargs = {"model_dir": str(model_dir), **self._kwargs(service)}
        argv = python_replica_argv(SERVICE_TARGET, paths=[], kwargs=kwargs)
        environment = {
            "HF_HUB_OFFLINE": "1",  # serve the Model's files; never download anything
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        return self.spawn(session, index, env, argv, environment, read_only=[model_dir])


RUNNER = HuggingFaceRunner()
