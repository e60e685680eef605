"""Everything a real ``assay serve`` answers parses with the reference schema package
(``dyff-schema``, in the reference client's own environment), strictly: the reference's
models refuse unknown fields, so an Assay-only field on the wire, or a field the reference
requires that Assay leaves out, is a failure here.

One entity of every kind the server serves is made through the API — a data set, a model
(uploaded files), a module, inference services of every runner kind that needs no GPU to
create (a mock from ``create_mock``, a mock as the reference client sends it, ``python``,
``http``, ``openai``, ``huggingface``, ``vllm``, and the ``pipeline`` service of a deployed
pipeline), a session, an evaluation, a measurement, a safety case with a score (with a
confidence interval, an Assay extension) and a curve, methods, a family, a report — and
every answer about them is fetched as raw JSON over HTTP (gets, queries, create answers,
labels, documentation, statuses, downlinks, logs, scores and curves) and validated with the
reference model of its kind (``reference_validate.py``). The test lists every kind and field
that does not parse.

Assay's own client asks for Assay's extensions (``EXTENSIONS_HEADER``), so it still sees
them: the score's interval and the runners' configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.server.loopback import Served

from assay.client import Client
from assay.core.kinds import mock_service_request
from assay.core.platform import PlatformCore
from assay.local import mocks
from assay.schema import ids
from assay.schema.dataschema import DataSchema
from assay.server.resources import RESOURCE_KINDS
from assay.server.settings import ServerSettings
from assay.server.state import core_config

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("reference_validate.py")
ACCOUNT = "alice"
ROWS = 8

METRICS = '''\
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    """Characters in the first response to each instance."""
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })
'''

ECHO = '''\
class Echo:
    """Answers with the text it is given."""

    endpoints = ["generate"]

    def infer(self, endpoint, request):
        return [{"text": request["text"]}]
'''

NOTEBOOK_CELLS = [
    "from assay.analysis import AnalysisContext\n"
    "import pyarrow.compute as pc\n"
    "ctx = AnalysisContext()\n"
    "lengths = ctx.inputs('lengths').to_table()['length']\n"
    "mean = pc.mean(lengths).as_py()\n",
    "ctx.Score('mean_length', 'Answers average some characters.', mean,\n"
    "          interval=(mean - 1.0, mean + 1.0), confidence=0.9)\n",
    "ctx.Curve('share_below', 'Share of answers below each length.',\n"
    "          {'threshold': [10.0, 100.0],\n"
    "           'share': [pc.mean(pc.less(lengths, t).cast('float64')).as_py() for t in (10, 100)]})\n",
]

SCORES = [
    {
        "name": "mean_length",
        "title": "Mean answer length",
        "summary": "The mean number of characters in an answer.",
        "minimum": 0,
        "maximum": 10000,
        "unit": "chars",
    },
    {
        "name": "share_below",
        "title": "Length distribution",
        "summary": "The share of answers below each length.",
        "dimensions": {
            "threshold": {"name": "threshold", "title": "Threshold", "summary": "Characters."},
            "share": {"name": "share", "title": "Share", "summary": "Of answers."},
        },
    },
]


class Answers:
    """Raw JSON answers of the server (no Assay client: what any HTTP client receives), each
    recorded with the reference model it must parse as."""

    def __init__(self, served: Served, token: str) -> None:
        self._http = httpx.Client(
            base_url=f"{served.url}/v0",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        self.checks: list[dict[str, Any]] = []

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, model: str, *, many: bool = False, **kwargs: Any) -> Any:
        """The JSON of ``method path`` (which must succeed), recorded as a ``model`` (a list
        of them with ``many``)."""
        response = self._http.request(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        doc = response.json()
        self.checks.append({"what": f"{method} {path}", "model": model, "many": many, "json": doc})
        return doc

    def unchecked(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of ``method path`` (which must succeed), not recorded: an Assay-only
        route."""
        response = self._http.request(method, path, **kwargs)
        assert response.status_code < 300, (
            f"{method} {path}: {response.status_code} {response.text}"
        )
        return response.json()

    def get(self, path: str, model: str, *, many: bool = False, **kwargs: Any) -> Any:
        return self.call("GET", path, model, many=many, **kwargs)

    def create(self, resource: str, model: str, body: dict[str, Any]) -> Any:
        return self.call("POST", f"/{resource}", model, json=body)


def _schema(fields: list[tuple[str, pa.DataType]]) -> dict[str, Any]:
    return DataSchema.from_arrow(pa.schema(fields)).model_dump(by_alias=True)


def _output_schema() -> dict[str, Any]:
    made = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    return made.model_dump(by_alias=True)


def _write_files(work: Path) -> dict[str, Path]:
    prompts = work / "prompts"
    prompts.mkdir(parents=True)
    table = pa.table(
        {"_index_": pa.array(range(ROWS), pa.int64()), "text": [f"prompt {i}" for i in range(ROWS)]}
    )
    pq.write_table(table, prompts / "part-0.parquet")
    package = work / "package"
    (package / "audit").mkdir(parents=True)
    (package / "audit" / "__init__.py").write_text("")
    (package / "audit" / "metrics.py").write_text(METRICS)
    (package / "audit" / "echo.py").write_text(ECHO)
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(NOTEBOOK_CELLS)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (package / "case.ipynb").write_text(json.dumps(notebook))
    weights = work / "weights"
    weights.mkdir()
    (weights / "config.json").write_text('{"model_type": "gpt2"}')
    return {"prompts": prompts, "package": package, "weights": weights}


def _services(api: Answers, client: Client, module: str, model: str) -> dict[str, dict[str, Any]]:
    """An InferenceService of every runner kind that needs no GPU to create (and the mocks
    as Assay's client and as the reference client make them), by name."""
    made: dict[str, dict[str, Any]] = {}
    mock = client.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, name="create-mock"
    )
    made["create_mock"] = api.get(f"/inferenceservices/{mock.id}", "InferenceService")
    made["mock"] = api.create(
        "inferenceservices",
        "InferenceService",
        mock_service_request(mocks.TextCompletion, account=ACCOUNT, name="mock"),
    )
    interface = {"endpoint": "generate", "outputSchema": _output_schema()}
    image = {"host": "assay.invalid", "name": "assay/mocks", "digest": "sha256:" + "0" * 64}
    runners: dict[str, tuple[dict[str, Any], dict[str, Any], str | None]] = {
        "mock_reference": (
            {
                "kind": "mock",
                "image": image,
                "resources": {},
                "args": ["assay.local.mocks.TextCompletion"],
            },
            interface,
            None,
        ),
        "python": (
            {"kind": "python", "configuration": {"module": module, "target": "audit.echo:Echo"}},
            interface,
            None,
        ),
        "http": (
            {"kind": "http", "configuration": {"url": "https://service.example.com"}},
            interface,
            None,
        ),
        "openai": (
            {
                "kind": "openai",
                "configuration": {"baseURL": "https://api.example.com/v1", "model": "m"},
            },
            {"endpoint": "chat/completions", "outputSchema": _output_schema()},
            None,
        ),
        "huggingface": (
            {"kind": "huggingface", "configuration": {"task": "text-generation"}},
            {"endpoint": "generate", "outputSchema": _output_schema()},
            model,
        ),
        "vllm": ({"kind": "vllm", "configuration": {"args": []}}, interface, model),
    }
    for name, (runner, iface, backing) in runners.items():
        body: dict[str, Any] = {
            "account": ACCOUNT,
            "name": name.replace("_", "-"),
            "runner": runner,
            "interface": iface,
        }
        if backing is not None:
            body["model"] = backing
        made[name] = api.create("inferenceservices", "InferenceService", body)
    definition = {"steps": [{"kind": "model", "service": made["mock"]["id"]}]}
    api.unchecked("POST", "/pipelines/assistant/deploy", json={"definition": definition})
    summary = api.unchecked("GET", "/pipelines/assistant")
    made["pipeline"] = api.get(
        f"/inferenceservices/{summary['inferenceService']}", "InferenceService"
    )
    return made


def _import_report(served: Served, evaluation: str) -> str:
    """A Report (they cannot be created: the specification deprecates them), stored as a
    fetched one is, in the running server's data directory."""
    core = PlatformCore.from_config(core_config(ServerSettings(data_dir=served.data)))
    try:
        source = core.evaluations.require(evaluation)
        doc = {
            "kind": "Report",
            "id": ids.generate_entity_id(),
            "account": ACCOUNT,
            "status": "Complete",
            "creationTime": "2024-01-01T00:00:00Z",
            "rubric": "x.Rubric",
            "evaluation": evaluation,
            "dataset": source.dataset,
            "inferenceService": source.inferenceSession.inferenceService.id,
        }
        return core.reports._import_record(doc).id
    finally:
        core.close()


def _audit(served: Served, api: Answers, client: Client, work: Path) -> dict[str, str]:
    """Make one entity of every kind and fetch every answer about it; resource → id."""
    files = _write_files(work)
    world: dict[str, str] = {}

    dataset = client.datasets.create_arrow_dataset(files["prompts"], account=ACCOUNT, name="p")
    client.datasets.upload_arrow_dataset(dataset, files["prompts"])
    world["datasets"] = client.datasets.wait(dataset.id, timeout=60).id
    module = client.modules.create_package(files["package"], account=ACCOUNT, name="audit")
    client.modules.upload_package(module, files["package"])
    world["modules"] = client.modules.wait(module.id, timeout=60).id
    model = client.models.create_from_volume(files["weights"], account=ACCOUNT, name="weights")
    client.models.upload_volume(model, files["weights"])
    world["models"] = client.models.wait(model.id, timeout=60).id

    services = _services(api, client, world["modules"], world["models"])
    service = world["inferenceservices"] = services["create_mock"]["id"]

    created = api.create(
        "inferencesessions",
        "InferenceSessionAndToken",
        {"account": ACCOUNT, "inferenceService": service},
    )
    session = world["inferencesessions"] = created["inferencesession"]["id"]
    client.inferencesessions.wait(session, timeout=60)

    evaluation = api.create(
        "evaluations",
        "Evaluation",
        {
            "account": ACCOUNT,
            "dataset": world["datasets"],
            "inferenceSession": {"inferenceService": service},
        },
    )["id"]
    assert client.evaluations.wait(evaluation, timeout=120).status == "Complete"
    world["evaluations"] = evaluation

    lengths = [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
    method = api.create(
        "methods",
        "Method",
        {
            "account": ACCOUNT,
            "name": "lengths",
            "scope": "Evaluation",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "audit.metrics.lengths"},
            },
            "inputs": [{"kind": "Evaluation", "keyword": "evaluation"}],
            "output": {
                "kind": "Measurement",
                "measurement": {"name": "lengths", "level": "Instance", "schema": _schema(lengths)},
            },
            "modules": [world["modules"]],
        },
    )["id"]
    case_method = api.create(
        "methods",
        "Method",
        {
            "account": ACCOUNT,
            "name": "length-case",
            "scope": "Evaluation",
            "implementation": {
                "kind": "JupyterNotebook",
                "jupyterNotebook": {
                    "notebookModule": world["modules"],
                    "notebookPath": "case.ipynb",
                },
            },
            "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
            "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
            "scores": SCORES,
            "modules": [world["modules"]],
        },
    )["id"]
    world["methods"] = method
    scope = {"evaluation": evaluation, "dataset": world["datasets"], "inferenceService": service}
    measurement = api.create(
        "measurements",
        "Measurement",
        {
            "account": ACCOUNT,
            "method": method,
            "scope": scope,
            "inputs": [{"keyword": "evaluation", "entity": evaluation}],
        },
    )["id"]
    assert client.measurements.wait(measurement, timeout=120).status == "Complete"
    world["measurements"] = measurement
    case = api.create(
        "safetycases",
        "SafetyCase",
        {
            "account": ACCOUNT,
            "method": case_method,
            "scope": scope,
            "inputs": [{"keyword": "lengths", "entity": measurement}],
        },
    )["id"]
    finished = client.safetycases.wait(case, timeout=180)
    assert finished.status == "Complete", finished.message
    world["safetycases"] = case

    family = api.create("families", "Family", {"account": ACCOUNT, "memberKind": "Dataset"})["id"]
    world["families"] = family
    member = {"entity": {"kind": "Dataset", "id": world["datasets"]}, "description": "Prompts."}
    api.call("PATCH", f"/families/{family}/members", "Family", json={"members": {"v1": member}})
    world["reports"] = _import_report(served, evaluation)

    # every kind: get, query, labels, documentation (read and edited), downlinks, workflow logs
    for rk in RESOURCE_KINDS:
        id = world[rk.resource]
        api.get(f"/{rk.resource}/{id}", rk.kind)
        api.get(f"/{rk.resource}", rk.kind, many=True)
        api.call(
            "PATCH",
            f"/{rk.resource}/{id}/labels",
            rk.kind,
            json={"labels": {"audit.example.org/stage": "final"}},
        )
        api.call(
            "PATCH",
            f"/{rk.resource}/{id}/documentation",
            "Documentation",
            json={"documentation": {"title": "Title", "summary": "Summary."}},
        )
        api.get(f"/{rk.resource}/{id}/documentation", "Documentation")
        api.get(f"/{rk.resource}/{id}/downlinks", "ArtifactURL", many=True)
        api.get(f"/{rk.resource}/{id}/logs/workflow", "WorkflowLogsResponse")
    for doc in services.values():
        api.get(f"/inferenceservices/{doc['id']}", "InferenceService")
        api.get("/inferenceservices", "InferenceService", many=True, params={"name": doc["name"]})
    api.get(f"/measurements/{measurement}/logs", "ArtifactURL")
    api.get(f"/safetycases/{case}/logs", "ArtifactURL")

    # scores and curves, by safety case and queried
    api.get(f"/safetycases/{case}/scores", "Score", many=True)
    api.get(f"/safetycases/{case}/curves", "Curve", many=True)
    api.get("/safetycases/scores", "Score", many=True, params={"analysis": case})
    api.get("/safetycases/curves", "Curve", many=True, params={"analysis": case})
    api.get("/scores", "Score", many=True, params={"method": case_method})

    # uploads and statuses
    pending = api.create(
        "modules",
        "Module",
        {
            "account": ACCOUNT,
            "name": "pending",
            "artifacts": [{"path": "a.py", "digest": {"md5": "0" * 32}}],
        },
    )["id"]
    api.get(f"/modules/{pending}/upload/a.py", "StorageSignedURL")
    api.call("PUT", f"/modules/{pending}/delete", "Status")
    running = api.create(
        "evaluations",
        "Evaluation",
        {
            "account": ACCOUNT,
            "dataset": world["datasets"],
            "inferenceSession": {"inferenceService": service},
        },
    )["id"]
    api.call("PUT", f"/evaluations/{running}/terminate", "Status")
    api.call("PUT", f"/inferencesessions/{session}/terminate", "Status")
    return world


def test_every_answer_parses_with_the_reference_schema(
    dyff_python: Path, served: Served, tmp_path: Path
) -> None:
    token = served.token(ACCOUNT)
    api = Answers(served, token)
    work = tmp_path / "work"
    work.mkdir()
    try:
        with Client(endpoint=f"{served.url}/v0", api_token=token) as client:
            world = _audit(served, api, client, work)
            # a service of every runner kind that needs no GPU to create (as Assay sees them)
            kinds = {s.runner.kind for s in client.inferenceservices.query() if s.runner}
            assert kinds == {"mock", "python", "http", "openai", "huggingface", "vllm", "pipeline"}
            # Assay's own client still sees Assay's extensions
            (score,) = client.safetycases.scores(world["safetycases"])
            assert score.interval is not None and score.confidence == 0.9
            runner = client.inferenceservices.require(world["inferenceservices"]).runner
            assert runner is not None and runner.configuration is not None
            assert runner.configuration["mockType"] == "assay.local.mocks.TextCompletion"
    finally:
        api.close()

    checked = {check["model"] for check in api.checks}
    assert {rk.kind for rk in RESOURCE_KINDS} <= checked
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(api.checks))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DYFF_"))}
    done = subprocess.run(
        [str(dyff_python), str(SCRIPT), str(answers)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    failures = result["failures"]
    # each kind and field that does not parse, once, with the answers it broke
    problems: dict[tuple[str, str, str], list[str]] = {}
    for f in failures:
        problems.setdefault((f["model"], f["loc"] or "(the object)", f["msg"]), []).append(
            f["what"]
        )
    listed = "\n".join(
        f"  {model}: {loc}: {msg} ({len(whats)} answer(s), e.g. {whats[0]})"
        for (model, loc, msg), whats in sorted(problems.items())
    )
    assert not failures, (
        f"{len(problems)} kind/field problem(s) in {len(failures)} place(s) of "
        f"{result['checked']} answers that the reference schema does not parse:\n{listed}"
    )
    log = served.log.read_text()
    assert "Traceback" not in log and "Internal Server Error" not in log, log[-4000:]
