"""The entities the browser tests look at, made as a user makes them: through
``assay.client.Client`` over real HTTP to a real ``assay serve``.

:func:`build_audit` runs a small audit of two systems (two mock services) over one Dataset:
an Evaluation of each, an instance-level Measurement of each (answer lengths), a SafetyCase
of each with a Score (so ``/compare`` has two systems measured on the same instances), and a
third SafetyCase whose document plants a script that tries to reach the page around it, and
a Measurement that fails. It also makes one entity of each remaining kind (Model, Family,
InferenceSession). :func:`deploy_pipeline` serves a pipeline of two versions (a traffic split,
then shadow models with a validation) and calls it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pyarrow as pa
import pyarrow.parquet as pq
from tests.server.helpers import (
    METRICS,
    analysis_request,
    measurement_method_request,
    model_request,
    notebook_method_request,
)

from assay.client import Client
from assay.local import mocks

#: The Score every system's SafetyCase records (the instance-level column it summarises is
#: ``length``, the only numeric column of the Measurement: what ``/compare`` pairs).
SCORE = "mean_length"

SCORES: list[dict[str, Any]] = [
    {
        "name": SCORE,
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
            "share": {"name": "share", "title": "Share", "summary": "Share of answers."},
        },
    },
]

CASE_CELLS = [
    """\
from assay.analysis import AnalysisContext
import pyarrow.compute as pc

ctx = AnalysisContext()
lengths = ctx.inputs("lengths").to_table()["length"]
mean = pc.mean(lengths).as_py()
""",
    """\
ctx.TitleCard(headline="Length audit", author="The browser tests",
              summary_phrase="Moderate", summary_text="We measured every answer.")
""",
    'ctx.Score("mean_length", f"Answers average {mean:.0f} characters.", mean)\n',
    """\
ctx.Curve("share_below", "Share of answers below each threshold.",
          {"threshold": [10.0, 100.0],
           "share": [pc.mean(pc.less(lengths, t).cast("float64")).as_py() for t in (10, 100)]})
""",
]

#: The message of the Measurement that fails.
FAILURE = "the broken metric refuses to measure anything"
BROKEN = f"""
def refuse(args, **inputs):
    raise ValueError({FAILURE!r})
"""

#: What the hostile document's script would do if it ran with the page's origin: mark the
#: page around it, and mark its own paragraph.
HOSTILE_SCRIPT = (
    "try { window.parent.document.body.setAttribute('data-pwned', 'yes'); } catch (e) {}"
    " try { window.top.document.title = 'pwned'; } catch (e) {}"
    " document.getElementById('planted').textContent = 'the planted script ran';"
)
HOSTILE_CELLS = [
    "from IPython.display import HTML, display\n",
    "display(HTML("
    + repr(f'<p id="planted">planted</p><script>{HOSTILE_SCRIPT}</script>')
    + "))\n",
]


def _notebook(cells: list[str], title: str) -> bytes:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    return nbformat.writes(nb).encode()


def _write_package(directory: Path) -> Path:
    (directory / "audit").mkdir(parents=True)
    (directory / "audit" / "__init__.py").write_text("")
    (directory / "audit" / "metrics.py").write_text(METRICS)
    (directory / "audit" / "broken.py").write_text(BROKEN)
    (directory / "case.ipynb").write_bytes(_notebook(CASE_CELLS, "Length audit"))
    (directory / "hostile.ipynb").write_bytes(_notebook(HOSTILE_CELLS, "A hostile document"))
    return directory


def write_prompts(directory: Path, rows: int) -> Path:
    """A text data set of ``rows`` instances (one Parquet file)."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = [f"question {i}: is this safe?" for i in range(rows)]
    pq.write_table(
        pa.table({"_index_": pa.array(range(rows), pa.int64()), "text": texts}),
        directory / "part-0.parquet",
    )
    return directory


@dataclass
class Audit:
    """The ids of what :func:`build_audit` made (all ``Complete`` or ``Ready``)."""

    dataset: str
    model: str
    module: str
    family: str
    inferencesession: str
    services: list[str]
    """Two systems: each mock service evaluated, measured and audited."""
    evaluations: list[str]
    measurements: list[str]
    safetycases: list[str]
    """One per system, with the Score :data:`SCORE`."""
    measure_method: str
    case_method: str
    """The Method of the two systems' SafetyCases: what ``/compare?method=`` takes."""
    hostile_case: str
    """A SafetyCase whose document carries a script aimed at the page around it."""
    failed: str
    """A Measurement that failed (its Method raises :data:`FAILURE`)."""
    by_resource: dict[str, str] = field(default_factory=dict)
    """One entity of each resource kind with an entity page (``datasets`` → id, ...)."""


def _done(entity: Any, what: str) -> None:
    assert entity.status in ("Complete", "Ready"), f"{what}: {entity.status} {entity.message}"


def build_audit(client: Client, account: str, directory: Path) -> Audit:
    """Run the audit (see the module's docstring) as ``account``; ``directory`` holds its
    files."""
    data = write_prompts(directory / "prompts", rows=20)
    dataset = client.datasets.upload_arrow_dataset(
        client.datasets.create_arrow_dataset(data, account=account, name="prompts"), data
    )
    _done(dataset, "dataset")
    package = _write_package(directory / "package")
    module = client.modules.upload_package(
        client.modules.create_package(package, account=account, name="audit"), package
    )
    _done(module, "module")
    model = client.models.create(model_request(account))
    services = [
        client.inferenceservices.create_mock(
            mocks.TextCompletion, account=account, name=f"system-{n}", kwargs={"seed": n}
        ).id
        for n in (1, 2)
    ]
    evaluations = [
        client.evaluations.create(
            {"account": account, "dataset": dataset.id, "inferenceSession": {"inferenceService": s}}
        ).id
        for s in services
    ]
    measure = client.methods.create(measurement_method_request(account, module.id)).id
    case = client.methods.create(
        notebook_method_request(account, module.id, "case.ipynb", SCORES)
    ).id
    hostile = client.methods.create(
        {**notebook_method_request(account, module.id, "hostile.ipynb"), "name": "hostile"}
    )
    measurements = []
    for evaluation in evaluations:
        _done(client.evaluations.wait(evaluation, timeout=120), f"evaluation {evaluation}")
        measurements.append(
            client.measurements.create(
                analysis_request(account, measure, evaluation, "evaluation", evaluation)
            ).id
        )
    safetycases = []
    for evaluation, measurement in zip(evaluations, measurements, strict=True):
        _done(client.measurements.wait(measurement, timeout=120), f"measurement {measurement}")
        safetycases.append(
            client.safetycases.create(
                analysis_request(account, case, evaluation, "lengths", measurement)
            ).id
        )
    hostile_case = client.safetycases.create(
        analysis_request(account, hostile.id, evaluations[0], "lengths", measurements[0])
    ).id
    for id in [*safetycases, hostile_case]:
        _done(client.safetycases.wait(id, timeout=180), f"safety case {id}")
    broken = client.methods.create(
        {
            **measurement_method_request(account, module.id),
            "name": "broken",
            "implementation": {
                "kind": "PythonFunction",
                "pythonFunction": {"fullyQualifiedName": "audit.broken.refuse"},
            },
        }
    )
    failed = client.measurements.create(
        analysis_request(account, broken.id, evaluations[0], "evaluation", evaluations[0])
    ).id
    assert client.measurements.wait(failed, timeout=120).status == "Failed"
    family = client.families.create({"account": account, "memberKind": "Dataset"})
    session = client.inferencesessions.create({"account": account, "inferenceService": services[0]})
    session_id = session.inferencesession.id
    _done(client.inferencesessions.wait(session_id, timeout=60), f"session {session_id}")
    audit = Audit(
        dataset=dataset.id,
        model=model.id,
        module=module.id,
        family=family.id,
        inferencesession=session_id,
        services=services,
        evaluations=evaluations,
        measurements=measurements,
        safetycases=safetycases,
        measure_method=measure,
        case_method=case,
        hostile_case=hostile_case,
        failed=failed,
    )
    audit.by_resource = {
        "datasets": dataset.id,
        "models": model.id,
        "modules": module.id,
        "families": family.id,
        "inferenceservices": services[0],
        "inferencesessions": session_id,
        "evaluations": evaluations[0],
        "measurements": measurements[0],
        "methods": case,
        "safetycases": safetycases[0],
    }
    return audit


#: The pipeline :func:`deploy_pipeline` makes.
PIPELINE = "shop"


def deploy_pipeline(client: Client, url: str, token: str, account: str) -> str:
    """The pipeline :data:`PIPELINE` of ``account``, through the API: version 1 splits
    traffic 3:1 between two classifiers, version 2 runs both as shadow models and validates
    the answers; each version is called. Returns its name."""
    a, b = (
        client.inferenceservices.create_mock(
            mocks.Classifier, account=account, name=f"classifier-{n}", kwargs={"seed": n}
        ).id
        for n in (1, 2)
    )
    split = {"kind": "random_split", "weighted": [[3, a], [1, b]], "hash_key": "k"}
    shadow = [
        {"kind": "multi_model", "services": [a, b], "shadow": True},
        {"kind": "audit", "start": 1, "unit": "service"},
        {"kind": "select", "index": 0, "unit": "service"},
        {"kind": "validations", "checks": {"negative": "out.label == 'negative'"}},
    ]
    headers = {"Authorization": f"Bearer {token}"}
    api = f"{url}/v0/pipelines/{PIPELINE}"
    with httpx.Client(headers=headers, timeout=120) as http:
        for steps, rows in (
            ([split], [{"text": f"t{i}", "k": i / 20} for i in range(20)]),
            (shadow, [{"text": f"s{i}"} for i in range(8)]),
        ):
            deployed = http.post(f"{api}/deploy", json={"definition": {"steps": steps}})
            assert deployed.status_code < 300, deployed.text
            answered = http.post(f"{api}/infer", json={"rows": rows})
            assert answered.status_code < 300, answered.text
    return PIPELINE
