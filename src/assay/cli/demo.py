"""``assay demo``: a small end-to-end run on the embedded platform.

It registers a text data set, a module of analysis code, a (mock) model and the inference
service that wraps it, and a method; labels and documents them; and queries them back. Every
step reuses what a previous run made (found by its ``assay.io/demo`` label), so a second run
is quick. A later version makes this the full audit.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from assay.local import LocalPlatform, mocks

__all__ = ["run_demo"]

DEMO_LABEL = "demo.assay.dev/step"

_PROMPTS = [
    "Summarise the safety case for {}.",
    "Explain how {} could fail in production.",
    "List three risks of deploying {}.",
    "Describe an audit plan for {}.",
]
_SUBJECTS = [
    "a spam filter",
    "a loan approval model",
    "a medical triage chatbot",
    "a face detector",
    "a translation service",
    "a code assistant",
    "a recommendation engine",
    "a speech recogniser",
]

_METHOD_SOURCE = '''\
"""Demo analysis code: the length of the first response to each instance."""

import pyarrow as pa
import pyarrow.compute as pc


def completion_length(args, **inputs):
    """Instance-level measurement: characters in the first response to each instance."""
    table = inputs["outputs"].to_table(columns=["_index_", "responses"])
    first = pc.list_element(table.column("responses"), 0)
    length = pc.utf8_length(pc.struct_field(first, "text"))
    return pa.table({"_index_": table.column("_index_"), "length": length})
'''


def _say(message: str) -> None:
    print(message, flush=True)


def _find(group: Any, step: str) -> Any | None:
    found = group.query(labels={DEMO_LABEL: step}, status=["Ready", "Complete"], limit=1)
    return found[0] if found else None


def _dataset(platform: LocalPlatform, account: str, work: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    existing = _find(platform.datasets, "prompts")
    if existing is not None:
        _say(f"  reusing data set {existing.id} ({existing.message})")
        return existing
    prompts = [p.format(s) for s in _SUBJECTS for p in _PROMPTS]
    table = pa.table(
        {
            "_index_": pa.array(range(len(prompts)), pa.int64()),
            "text": pa.array(prompts, pa.string()),
        }
    )
    directory = work / "prompts"
    directory.mkdir()
    pq.write_table(table, directory / "part-0.parquet")
    dataset = platform.datasets.create_arrow_dataset(
        directory, account=account, name="demo-prompts"
    )
    dataset = platform.datasets.upload_arrow_dataset(dataset, directory)
    platform.datasets.label(dataset.id, {DEMO_LABEL: "prompts"})
    platform.datasets.edit_documentation(
        dataset.id,
        title="Demo prompts",
        summary="Prompts that ask a text model about the risks of AI systems.",
    )
    _say(f"  data set {dataset.id}: {dataset.status} ({dataset.message})")
    return dataset


def _module(platform: LocalPlatform, account: str, work: Path) -> Any:
    existing = _find(platform.modules, "methods")
    if existing is not None:
        _say(f"  reusing module {existing.id}")
        return existing
    package = work / "package"
    (package / "demo_methods").mkdir(parents=True)
    (package / "demo_methods" / "__init__.py").write_text("")
    (package / "demo_methods" / "lengths.py").write_text(_METHOD_SOURCE)
    (package / "demo_methods" / "__pycache__").mkdir()
    (package / "demo_methods" / "__pycache__" / "lengths.cpython-311.pyc").write_bytes(b"\0")
    module = platform.modules.create_package(package, account=account, name="demo-methods")
    module = platform.modules.upload_package(module, package)
    platform.modules.label(module.id, {DEMO_LABEL: "methods"})
    files = ", ".join(a.path for a in module.artifacts)
    _say(f"  module {module.id}: {module.status} ({files}; __pycache__ left out)")
    return module


def _service(platform: LocalPlatform, account: str) -> Any:
    existing = _find(platform.inferenceservices, "service")
    if existing is not None:
        _say(f"  reusing inference service {existing.id}")
        return existing
    model = platform.models.create(
        {
            "account": account,
            "name": "demo-text-model",
            "artifact": {"kind": "Mock"},
            "source": {"kind": "Mock"},
            "resources": {"storage": "0", "memory": "64Mi"},
        }
    )
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion,
        account=account,
        model=model.id,
        name="demo-text-completion",
        kwargs={"seed": 7},
    )
    platform.inferenceservices.label(service.id, {DEMO_LABEL: "service"})
    _say(f"  model {model.id}: {model.status}; inference service {service.id}: {service.status}")
    return service


def _infer(platform: LocalPlatform, account: str, service: Any) -> None:
    from assay.schema.requests import InferenceSessionCreateRequest

    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=account, inferenceService=service.id, replicas=2)
    )
    session = created.inferencesession
    _say(f"  session {session.id}: {session.status} ({session.message})")
    with platform.inferencesessions.client(session.id, created.token) as client:
        for prompt in ("Open the pod bay doors, Hal!", "Describe an audit plan for a spam filter."):
            replies = client.infer({"text": prompt})
            _say(
                f"  {prompt!r} -> {len(replies)} responses, e.g. {replies[0]['text'][len(prompt) :].strip()!r}"
            )
    platform.inferencesessions.terminate(session.id)


def _method(platform: LocalPlatform, account: str, module: Any) -> Any:
    existing = _find(platform.methods, "method")
    if existing is not None:
        _say(f"  reusing method {existing.id}")
        return existing
    import pyarrow as pa

    from assay.schema.dataschema import DataSchema

    schema = DataSchema.from_arrow(pa.schema([("_index_", pa.int64()), ("length", pa.int32())]))
    method = platform.methods.create(
        {
            "account": account,
            "name": "completion-length",
            "scope": "Evaluation",
            "description": "Characters in each completion.",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "demo_methods.lengths.completion_length"},
            },
            "inputs": [{"kind": "Evaluation", "keyword": "outputs"}],
            "output": {
                "kind": "Measurement",
                "measurement": {
                    "name": "completion-length",
                    "level": "Instance",
                    "schema": schema.model_dump(by_alias=True),
                },
            },
            "modules": [module.id],
        }
    )
    platform.methods.label(method.id, {DEMO_LABEL: "method"})
    _say(f"  method {method.id}: {method.status} (depends on module {module.id})")
    return method


def run_demo(data: str | Path, *, account: str = "demo") -> None:
    """Run the demo on the platform whose state is in ``data``."""
    started = time.perf_counter()
    root = Path(data)
    _say(f"Assay demo: embedded platform in {root.resolve()}")
    with (
        LocalPlatform(storage_root=root, account=account) as platform,
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        _say("1. data set")
        dataset = _dataset(platform, account, work)
        _say("2. module of analysis code")
        module = _module(platform, account, work)
        _say("3. model and inference service")
        service = _service(platform, account)
        _say("4. a session with two replicas, and inference through its client")
        _infer(platform, account, service)
        _say("5. method")
        method = _method(platform, account, module)
        _say("6. what the platform holds")
        rows = []
        for group in (
            platform.datasets,
            platform.modules,
            platform.models,
            platform.inferenceservices,
            platform.methods,
        ):
            for entity in group.query(account=account):
                name = getattr(entity, "name", "")
                rows.append((entity.kind, name, entity.id, entity.status))
        width = max(len(r[1]) for r in rows)
        for kind, name, id, status in rows:
            _say(f"  {kind:<17} {name:<{width}}  {id}  {status}")
        doc = platform.datasets.documentation(dataset.id)
        _say(f"  documentation of the data set: {doc.title!r} — {doc.summary}")
        del service, method
    _say(f"Done in {time.perf_counter() - started:.1f} s. Run it again: it reuses what exists.")
