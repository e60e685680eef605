"""Benchmark of the web UI: the server time of every page with 10,000 entities in the store.

The store: a real audit made with ``LocalPlatform`` (a Dataset, two mock services evaluated,
measured and audited in a SafetyCase with Scores, a failed Measurement), then copies of its
entities inserted straight into the entity store — each copy its own id, name and labels,
the same references (so one Dataset has thousands of dependents, one Method thousands of
analyses), a tenth of them ``Failed`` with a message — until the store holds ``--entities``
(10,000). The copies stand for an account's history: its pages page, count and filter them.
A pipeline of two versions is served and called ``--records`` (2,000) times, for its pages.

The server: ``create_app`` over that data directory, driven in-process (Starlette's
``TestClient``), signed in through the sign-in form as a person is. Each page is requested
``--requests`` times after two warm-up requests; its **server time** is the time the app
spends on the request (measured around the ASGI app, so no network or client parsing), printed
as the median and the 95th percentile, and whether the 95th percentile is under the issue's
200 ms; ``gc2`` counts the interpreter's full garbage collections that fell in a page's
requests (each pauses the request it falls in). Beside them, the same run's baselines: the
API's JSON answer for the same list or entity (``GET /v0/<kind>?limit=...``) and a static
asset. The store is filled by a child process, so this one holds only what a server holds.

Run: ``.venv/bin/python bench/bench_ui.py [--entities N] [--requests N]``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

#: The issue's bound on every page's server time.
BOUND_MS = 200.0

METRICS = '''
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    """Characters in the first response to each instance."""
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    print("measured", table.num_rows, "rows")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })


def refuse(args, *, evaluation):
    raise ValueError("this metric refuses to measure anything")
'''

CASE = [
    "from assay.analysis import AnalysisContext\nimport pyarrow.compute as pc\n"
    "ctx = AnalysisContext()\n"
    "mean = pc.mean(ctx.inputs('lengths').to_table()['length']).as_py()\n",
    "ctx.Score('mean_length', f'Answers average {mean:.0f} characters.', mean)\n",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGI = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class Timed:
    """An ASGI app that records how long ``app`` took over each HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        start = time.perf_counter()
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.last = time.perf_counter() - start


def _write_inputs(root: Path) -> tuple[Path, Path]:
    import nbformat
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = root / "prompts"
    data.mkdir(parents=True)
    texts = [f"question {i}: is this safe?" for i in range(50)]
    pq.write_table(
        pa.table({"_index_": pa.array(range(50), pa.int64()), "text": texts}),
        data / "part-0.parquet",
    )
    package = root / "package"
    (package / "benchaudit").mkdir(parents=True)
    (package / "benchaudit" / "__init__.py").write_text("")
    (package / "benchaudit" / "metrics.py").write_text(METRICS)
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [nbformat.v4.new_markdown_cell("# Length audit")]  # type: ignore[no-untyped-call]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in CASE]  # type: ignore[no-untyped-call]
    (package / "case.ipynb").write_text(nbformat.writes(nb))  # type: ignore[no-untyped-call]
    return data, package


def _method(name: str, function: str, module: str) -> dict[str, Any]:
    import pyarrow as pa

    from assay.schema.dataschema import DataSchema

    schema = pa.schema(
        [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
    )
    return {
        "name": name,
        "scope": "Evaluation",
        "implementation": {
            "kind": "PythonFunction",
            "pythonFunction": {"fullyQualifiedName": f"benchaudit.metrics.{function}"},
        },
        "inputs": [{"kind": "Evaluation", "keyword": "evaluation"}],
        "output": {
            "kind": "Measurement",
            "measurement": {
                "name": "lengths",
                "level": "Instance",
                "schema": DataSchema.from_arrow(schema).model_dump(by_alias=True),
            },
        },
        "modules": [module],
    }


def real_audit(platform: Any, root: Path) -> dict[str, Any]:
    """The audit the copies are made from; returns the ids the pages are timed on."""
    from assay.local import mocks

    data, package = _write_inputs(root)
    dataset = platform.datasets.upload_arrow_dataset(
        platform.datasets.create_arrow_dataset(data, name="prompts"), data
    )
    module = platform.modules.upload_package(
        platform.modules.create_package(package, name="benchaudit"), package
    )
    services = [
        platform.inferenceservices.create_mock(
            mocks.TextCompletion, name=f"system-{n}", kwargs={"seed": n}
        ).id
        for n in (1, 2)
    ]
    measure = platform.methods.create(_method("lengths", "lengths", module.id)).id
    broken = platform.methods.create(_method("broken", "refuse", module.id)).id
    case = platform.methods.create(
        {
            "name": "case",
            "scope": "Evaluation",
            "implementation": {
                "kind": "JupyterNotebook",
                "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "case.ipynb"},
            },
            "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
            "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
            "scores": [
                {
                    "name": "mean_length",
                    "title": "Mean answer length",
                    "summary": "The mean number of characters in an answer.",
                }
            ],
            "modules": [module.id],
        }
    ).id
    ids: dict[str, Any] = {"datasets": dataset.id, "modules": module.id, "case_method": case}
    ids["inferenceservices"] = services[0]
    ids["methods"] = measure
    evaluations, measurements, cases = [], [], []
    for service in services:
        evaluation = platform.evaluations.create(
            {"dataset": dataset.id, "inferenceSession": {"inferenceService": service}}
        ).id
        platform.evaluations.wait(evaluation, timeout=300)
        evaluations.append(evaluation)
        scope = {"scope": {"evaluation": evaluation}}
        measurement = platform.measurements.create(
            {
                **scope,
                "method": measure,
                "inputs": [{"keyword": "evaluation", "entity": evaluation}],
            }
        ).id
        platform.measurements.wait(measurement, timeout=300)
        measurements.append(measurement)
        safety = platform.safetycases.create(
            {**scope, "method": case, "inputs": [{"keyword": "lengths", "entity": measurement}]}
        ).id
        cases.append(safety)
    failed = platform.measurements.create(
        {
            "scope": {"evaluation": evaluations[0]},
            "method": broken,
            "inputs": [{"keyword": "evaluation", "entity": evaluations[0]}],
        }
    ).id
    platform.measurements.wait(failed, timeout=300)
    for safety in cases:
        platform.safetycases.wait(safety, timeout=300)
    session = platform.inferencesessions.create({"inferenceService": services[0]})
    ids.update(
        evaluations=evaluations[0],
        measurements=measurements[0],
        safetycases=cases[0],
        failed=failed,
        models=platform.models.create(
            {
                "name": "model",
                "artifact": {"kind": "Mock"},
                "source": {"kind": "Mock"},
                "resources": {"storage": "1Gi"},
            }
        ).id,
        families=platform.families.create({"memberKind": "Dataset"}).id,
        inferencesessions=session.inferencesession.id,
    )
    for name in ("evaluations", "measurements", "safetycases", "failed"):
        status = platform._core.store.require(ids[name]).doc["status"]
        expected = "Failed" if name == "failed" else "Complete"
        if status != expected:
            raise SystemExit(f"the real audit's {name} is {status}, not {expected}")
    return ids


#: How the copies are shared out among the kinds (they sum to 1).
SHARES = {
    "Evaluation": 0.30,
    "Measurement": 0.25,
    "SafetyCase": 0.10,
    "Dataset": 0.10,
    "InferenceService": 0.08,
    "Model": 0.07,
    "Method": 0.05,
    "Module": 0.03,
    "Family": 0.02,
}


def fill(platform: Any, total: int) -> dict[str, int]:
    """Copies of the real audit's entities, straight into the store, until it holds
    ``total`` entities; returns the count per kind."""
    from assay.schema import ids as entity_ids
    from assay.schema.platform import entity_class

    store = platform._core.store
    templates: dict[str, list[dict[str, Any]]] = {}
    for doc in store.iter_query():
        if doc.get("status") in ("Complete", "Ready", "Failed"):
            templates.setdefault(doc["kind"], []).append(doc)
    existing = store.count()
    missing = max(0, total - existing)
    made: dict[str, int] = {}
    batch: list[dict[str, Any]] = []
    refs: list[dict[str, list[str]]] = []
    kinds = [k for k in SHARES if k in templates]
    for kind in kinds:
        n = round(missing * SHARES[kind] / sum(SHARES[k] for k in kinds))
        made[kind] = n
        cls = entity_class(kind)
        for i in range(n):
            doc = copy.deepcopy(templates[kind][i % len(templates[kind])])
            doc["id"] = entity_ids.generate_entity_id()
            if "name" in doc:
                doc["name"] = f"{doc['name']}-{i}"
            doc["labels"] = {"batch": str(i % 10), "copy": "yes"}
            if i % 10 == 9 and kind in ("Evaluation", "Measurement", "SafetyCase"):
                doc.update(
                    status="Failed",
                    reason="WorkflowError",
                    message=f"{kind} copy {i}: the workflow raised ValueError (a copy)",
                )
            entity = cls.model_validate(doc)
            batch.append(entity.to_wire())
            stored = {k: list(v) for k, v in entity.query_refs().items() if v}
            if entity.dependencies():
                stored["dependency"] = list(entity.dependencies())
            refs.append(stored)
            if len(batch) >= 500:
                store.create_many(batch, refs=refs)
                batch, refs = [], []
    if batch:
        store.create_many(batch, refs=refs)
    return made


def serve_pipeline(client: Any, api: dict[str, str], records: int) -> str:
    """The pipeline ``shop`` of two versions (a 3:1 traffic split, then two shadow models
    with a validation), called with ``records`` rows in all; returns its name."""
    from assay.core.kinds import mock_service_request
    from assay.local import mocks

    services = []
    for n in (1, 2):
        request = mock_service_request(
            mocks.Classifier, account="bench", name=f"classifier-{n}", kwargs={"seed": n}
        )
        made = client.post("/v0/inferenceservices", json=request, headers=api)
        services.append(made.json()["id"])
    a, b = services
    versions = [
        [{"kind": "random_split", "weighted": [[3, a], [1, b]], "hash_key": "k"}],
        [
            {"kind": "multi_model", "services": [a, b], "shadow": True},
            {"kind": "audit", "start": 1, "unit": "service"},
            {"kind": "select", "index": 0, "unit": "service"},
            {"kind": "validations", "checks": {"negative": "out.label == 'negative'"}},
        ],
    ]
    for steps in versions:
        deployed = client.post(
            "/v0/pipelines/shop/deploy", json={"definition": {"steps": steps}}, headers=api
        )
        if deployed.status_code >= 300:
            raise SystemExit(f"deploying the pipeline: {deployed.status_code} {deployed.text}")
        for start in range(0, records // 2, 200):
            rows = [{"text": f"r{i}", "k": i / records} for i in range(start, start + 200)]
            called = client.post("/v0/pipelines/shop/infer", json={"rows": rows}, headers=api)
            if called.status_code >= 300:
                raise SystemExit(f"calling the pipeline: {called.status_code} {called.text}")
    return "shop"


def sign_in(client: Any, token: str) -> None:
    form = client.get("/signin")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if form.status_code != 200 or not found:
        raise SystemExit(f"GET /signin: {form.status_code}, no CSRF token in the form")
    signed = client.post(
        "/signin", data={"token": token, "csrf_token": found.group(1)}, follow_redirects=False
    )
    if signed.status_code != 303:
        raise SystemExit(f"POST /signin: {signed.status_code} {signed.text[:300]}")


class FullCollections:
    """Counts the interpreter's full (generation 2) garbage collections: each one stops the
    request it falls in for as long as the whole heap takes to scan."""

    def __init__(self) -> None:
        self.count = 0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info.get("generation") == 2:
            self.count += 1


def time_page(
    client: Any, timed: Timed, path: str, runs: int, full: FullCollections
) -> tuple[list[float], int, int]:
    """The app's time (s) of each of ``runs`` requests of ``path`` (after two warm-ups), the
    last status, and the full garbage collections during the timed requests."""
    times = []
    status = 0
    collections = 0
    for i in range(runs + 2):
        before = full.count
        response = client.get(path, follow_redirects=False)
        status = response.status_code
        if status >= 300:
            break
        if i >= 2:
            times.append(timed.last)
            collections += full.count - before
    return times, status, collections


def pages(ids: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(page, its API baseline or None) to time."""
    from assay.server.resources import RESOURCE_KINDS

    found: list[tuple[str, str | None]] = [("/", None), ("/signin", None)]
    for rk in RESOURCE_KINDS:
        found.append((f"/{rk.resource}", f"/v0/{rk.resource}?limit=50"))
    found += [
        ("/evaluations?status=Failed", "/v0/evaluations?status=Failed&limit=50"),
        (
            "/evaluations?label=batch%3D3",
            "/v0/evaluations?labels=%7B%22batch%22%3A%223%22%7D&limit=50",
        ),
        ("/datasets?name=prompts-7", None),
    ]
    for resource in (
        "datasets",
        "evaluations",
        "families",
        "inferenceservices",
        "inferencesessions",
        "measurements",
        "methods",
        "models",
        "modules",
        "safetycases",
    ):
        found.append((f"/{resource}/{ids[resource]}", f"/v0/{resource}/{ids[resource]}"))
    found += [
        (f"/measurements/{ids['failed']}", None),
        (f"/measurements/{ids['measurements']}/logs", None),
        (f"/safetycases/{ids['safetycases']}/document", None),
        (f"/compare?method={ids['case_method']}", None),
        (f"/compare.csv?method={ids['case_method']}", None),
        ("/compare", None),
        ("/pipelines", "/v0/pipelines"),
        ("/pipelines/shop?account=bench", None),
        ("/pipelines/shop?account=bench&version=1", None),
        ("/pipelines/shop?account=bench&valid=anomalies", None),
        ("/pipelines/shop?account=bench&start=2000-01-01T00%3A00&limit=500", None),
        ("/docs", None),
        ("/redoc", None),
        ("/static/assay.css", None),
    ]
    return found


def seed(data: Path, entities: int) -> dict[str, Any]:
    """Fill ``data`` (the real audit, then copies); returns the ids to time and what was made."""
    from assay.local import LocalPlatform

    start = time.perf_counter()
    with LocalPlatform(storage_root=data, account="bench") as platform:
        ids = real_audit(platform, data.parent / "inputs")
        audited = time.perf_counter() - start
        made = fill(platform, entities)
        total = platform._core.store.count()
    filled = time.perf_counter() - start - audited
    return {"ids": ids, "made": made, "total": total, "audited": audited, "filled": filled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--records", type=int, default=2000, help="pipeline log records")
    parser.add_argument("--seed-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_only:  # the child process that fills the store
        print(json.dumps(seed(args.seed_only, args.entities)))
        return

    from starlette.testclient import TestClient

    from assay.server import ServerSettings, create_app, issue_token

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        # filled by another process, so this one holds only what a server holds (the notebook
        # machinery of the real audit would grow its heap, and its garbage collections)
        child = subprocess.run(
            [sys.executable, __file__, "--seed-only", str(data), "--entities", str(args.entities)],
            check=True,
            capture_output=True,
            text=True,
        )
        seeded = json.loads(child.stdout.strip().splitlines()[-1])
        ids, made = seeded["ids"], seeded["made"]
        print(
            f"store: {seeded['total']:,} entities (the real audit in {seeded['audited']:.1f} s, "
            f"{sum(made.values()):,} copies in {seeded['filled']:.1f} s: "
            + ", ".join(f"{k} {n:,}" for k, n in made.items())
            + ")"
        )
        settings = ServerSettings(data_dir=data, executor="threads", log_level="warning")
        app = create_app(settings)
        timed = Timed(app)
        with TestClient(timed) as client:
            token = issue_token(app.state.assay.core, account="bench")
            api = {"Authorization": f"Bearer {token}"}
            serve_pipeline(client, api, args.records)
            sign_in(client, token)
            tracked = len(gc.get_objects())
            start = time.perf_counter()
            gc.collect()
            pause = (time.perf_counter() - start) * 1000
            print(
                f"a full garbage collection of this server process: {pause:.0f} ms over "
                f"{tracked:,} tracked objects; frozen after start-up, as `assay serve` does"
            )
            gc.freeze()  # what `assay serve` does once its app is made
            start = time.perf_counter()
            gc.collect()
            print(f"the same collection once frozen: {(time.perf_counter() - start) * 1000:.0f} ms")
            full = FullCollections()
            static_times, _, _ = time_page(
                client, timed, "/static/favicon.svg", args.requests, full
            )
            floor = statistics.median(static_times) * 1000
            print(
                f"server time per page (ms), {args.requests} requests each after 2 warm-ups; "
                f"bound {BOUND_MS:.0f} ms; a static file takes {floor:.1f} ms. gc2: full "
                "garbage collections during the page's requests (each pauses one request)\n"
            )
            print(
                f"{'page':<58} {'median':>7} {'p95':>7} {'max':>7} {'<200':>5} {'gc2':>4}"
                f" {'API p50':>8} {'ratio':>6}"
            )
            slow = []
            for path, baseline in pages(ids):
                times, status, collections = time_page(client, timed, path, args.requests, full)
                if not times:
                    print(f"{path:<58} answered {status}: not timed")
                    continue
                ordered = sorted(times)
                p50 = statistics.median(ordered) * 1000
                p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000
                under = "yes" if p95 < BOUND_MS else "NO"
                line = (
                    f"{path[:58]:<58} {p50:7.1f} {p95:7.1f} {ordered[-1] * 1000:7.1f} "
                    f"{under:>5} {collections:4d}"
                )
                if baseline is not None:
                    times_api: list[float] = []
                    for i in range(args.requests + 2):
                        reply = client.get(baseline, headers=api)
                        if reply.status_code != 200:
                            raise SystemExit(
                                f"GET {baseline}: {reply.status_code} {reply.text[:200]}"
                            )
                        if i >= 2:
                            times_api.append(timed.last)
                    api_p50 = statistics.median(times_api) * 1000
                    line += f" {api_p50:8.1f} {p50 / api_p50:6.1f}x"
                print(line)
                if p95 >= BOUND_MS:
                    slow.append(path)
            print(
                f"\n{len(slow)} page(s) over {BOUND_MS:.0f} ms at the 95th percentile"
                + (": " + ", ".join(slow) if slow else "")
                + f"; {full.count} full garbage collections in all"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
