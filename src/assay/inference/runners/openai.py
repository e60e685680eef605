"""The ``openai`` runner: any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, TGI, ...).

Configuration: ``{"baseURL": "http://host:port/v1", "model": "name", "credential": {"env":
"OPENAI_API_KEY"}}``. The service's interface says which endpoint to call (``chat/completions``
or ``completions``) and how Assay's records map to the API's bodies;
:func:`openai_interface` builds the usual one: ``{"text": ...}`` in, one ``{"text": ...}``
response per choice out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from assay.inference.runners.base import (
    ReplicaHandle,
    Runner,
    RunnerEnv,
    config_error,
    configuration,
)
from assay.inference.runners.http import (
    check_service,
    credential_headers,
    service_handle,
    wait_ready_at,
)

if TYPE_CHECKING:
    from assay.schema.platform import InferenceInterface, InferenceService, InferenceSession

__all__ = ["RUNNER", "OpenAIRunner", "openai_interface"]


def openai_interface(
    model: str,
    *,
    api: Literal["chat", "completions"] = "chat",
    parameters: dict[str, Any] | None = None,
    system: str | None = None,
) -> InferenceInterface:
    """The interface that sends an instance's ``text`` to an OpenAI-compatible ``api`` and
    answers with one ``{"text": ...}`` response per choice."""
    import pyarrow as pa

    from assay.schema.dataschema import DataSchema
    from assay.schema.platform import InferenceInterface

    body: dict[str, Any] = {"model": model, **(parameters or {})}
    if api == "chat":
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": "$.text"})
        body["messages"] = messages
        endpoint, content = "chat/completions", "$.choices.message.content"
    else:
        body["prompt"] = "$.text"
        endpoint, content = "completions", "$.choices.text"
    return InferenceInterface(
        endpoint=endpoint,
        outputSchema=DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())])),
        inputPipeline=[{"kind": "TransformJSON", "configuration": body}],
        outputPipeline=[
            {"kind": "ExplodeCollections", "configuration": {"collections": ["choices"]}},
            {"kind": "TransformJSON", "configuration": {"text": content}},
        ],
    )


class OpenAIRunner(Runner):
    kind = "openai"

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        check_service(service, env, "baseURL", starting=False)
        model = configuration(service).get("model")
        if model is not None and not isinstance(model, str):
            raise config_error(service, "model", "must be the model's name")
        endpoint = service.interface.endpoint.strip("/")
        if endpoint not in ("chat/completions", "completions"):
            raise config_error(
                service,
                "baseURL",
                f"is OpenAI-compatible, so interface.endpoint must be 'chat/completions' or "
                f"'completions', not {service.interface.endpoint!r}",
            )

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        service = session.inferenceService
        url = check_service(service, env, "baseURL", starting=True)  # type: ignore[arg-type]
        what = f"InferenceService {service.id}"
        headers = credential_headers(configuration(service), env, what, service.account)  # type: ignore[arg-type]
        return service_handle(service, index, url, headers, "models")  # type: ignore[arg-type]

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:
        wait_ready_at(handle, timeout, "the OpenAI-compatible service")


RUNNER = OpenAIRunner()
