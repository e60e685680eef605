"""The ``vllm`` runner: ``vllm serve`` for a Model's files, on a GPU host.

Configuration: ``{"args": ["--max-model-len", "4096", ...]}`` (extra ``vllm serve``
arguments). The server speaks the OpenAI API, so the service's interface is the one
:func:`assay.inference.runners.openai.openai_interface` builds. Needs an NVIDIA GPU with CUDA
and the ``vllm`` package; elsewhere a session fails at once with a message saying so.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from typing import TYPE_CHECKING

from assay import errors
from assay.inference.runners.base import (
    ReplicaHandle,
    Runner,
    RunnerEnv,
    config_error,
    configuration,
)
from assay.inference.runners.http import wait_for

if TYPE_CHECKING:
    from assay.schema.platform import InferenceService, InferenceSession

__all__ = ["RUNNER", "VLLMRunner", "gpu_problem"]


def gpu_problem() -> str | None:
    """Why vLLM cannot run here, or None if it can."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "this machine has no NVIDIA GPU (nvidia-smi is not installed)"
    try:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nvidia-smi failed ({exc})"
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return "nvidia-smi lists no GPU"
    if shutil.which("vllm") is None:
        return "the vllm package is not installed (pip install vllm)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VLLMRunner(Runner):
    kind = "vllm"

    def check(self, service: InferenceService, env: RunnerEnv | None = None) -> None:
        if service.model is None:
            raise errors.ValidationError(
                f"InferenceService {service.name!r}: the vllm runner serves a Model's files; set model",
                field="model",
            )
        args = configuration(service).get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise config_error(
                service, "args", "must be a list of strings (extra 'vllm serve' arguments)"
            )

    def start(self, session: InferenceSession, index: int, env: RunnerEnv) -> ReplicaHandle:
        from assay.inference.replicas import ProcessReplica

        service = session.inferenceService
        problem = gpu_problem()
        if problem is not None:
            raise errors.ValidationError(
                f"InferenceService {service.id}: the vllm runner needs an NVIDIA GPU with CUDA and "
                f"vLLM, but {problem}; run the session on a GPU host, or use the huggingface runner"
            )
        if service.model is None:
            raise errors.ValidationError(
                f"InferenceService {service.id}: the vllm runner needs a model"
            )
        port = _free_port()
        argv = [
            "vllm",
            "serve",
            str(env.entity_dir(service.model.id)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            service.model.name,
            *configuration(service).get("args", []),  # type: ignore[arg-type]
        ]
        replica = ProcessReplica(argv, name=f"session {session.id} vllm {index}")
        replica.start()
        return ReplicaHandle(
            index=index,
            style="plain",
            url=f"http://127.0.0.1:{port}/v1",
            process=replica,
            ready_path="models",
        )

    def wait_ready(self, handle: ReplicaHandle, timeout: float) -> None:
        try:
            wait_for(handle.url or "", handle.headers, handle.ready_path, timeout, "vllm serve")
        except errors.UnavailableError as exc:
            tail = handle.process.log_tail(20) if handle.process else ""
            raise errors.UnavailableError(f"{exc}; its last output:\n{tail}") from None


RUNNER = VLLMRunner()
