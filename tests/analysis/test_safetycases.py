"""Notebook Methods end to end: safety cases run by a real Jupyter kernel, rendered to HTML,
their scores and curves checked and published, and compared across systems."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat
import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT, ready_dataset

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.schema.dataschema import DataSchema
from assay.schema.status import Status

MEASURE = """
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })
"""

SETUP = """\
from assay.analysis import AnalysisContext
import pyarrow.compute as pc

ctx = AnalysisContext()
lengths = ctx.inputs("lengths").to_table()["length"]
mean = pc.mean(lengths).as_py()
"""

TITLE = """\
ctx.TitleCard(
    headline="Response length audit",
    author="The test suite",
    summary_phrase="Answers are of moderate length",
    summary_text="We measured the length of every answer.",
)
"""

SCORE = """\
ctx.Score("mean_length", f"Answers average {mean:.0f} characters.", mean,
          interval=(mean * 0.9, mean * 1.1))
"""

CURVE = """\
ctx.Curve("share_below", "Share of answers shorter than each threshold.",
          {"threshold": [10.0, 50.0, 100.0],
           "share": [pc.mean(pc.less(lengths, t).cast("float64")).as_py() for t in (10, 50, 100)]})
"""

#: A score widget displayed as is, without ``ctx.Score`` and its checks.
FORGED_SCORE = """\
from assay.analysis import widgets
widgets.display_bundle({{
    "text/plain": "forged",
    widgets.MIME_SCORE: {{"name": "mean_length", "quantity": {quantity}, "text": "forged"}},
}})
"""

CONCLUSION = """\
ctx.Conclusion(indicator="Information", text="Nothing **alarming** here.")
"""

SCORES = [
    {
        "name": "mean_length",
        "title": "Mean answer length",
        "summary": "The mean number of characters in an answer.",
        "valence": "neutral",
        "priority": "primary",
        "minimum": 0,
        "maximum": 1000,
        "format": "{quantity:.1f} {unit}",
        "unit": "chars",
    },
    {
        "name": "share_below",
        "title": "Length distribution",
        "summary": "The share of answers below each length.",
        "dimensions": {
            "threshold": {"name": "threshold", "title": "Threshold", "summary": "Characters."},
            "share": {
                "name": "share",
                "title": "Share",
                "summary": "Share of answers.",
                "minimum": 0,
                "maximum": 1,
            },
        },
    },
]


def _notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Length audit\nAn example safety case.")]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


class Audit:
    """A module with a measurement function and notebooks, and helpers to run them."""

    def __init__(self, platform: LocalPlatform, tmp: Path) -> None:
        self.platform = platform
        package = tmp / "pkg"
        (package / "lengthaudit").mkdir(parents=True)
        (package / "lengthaudit" / "__init__.py").write_text(MEASURE)
        _notebook(package / "ok.ipynb", SETUP, TITLE, SCORE, CURVE, CONCLUSION)
        _notebook(package / "raises.ipynb", SETUP, "1 / 0", CONCLUSION)
        _notebook(package / "too_big.ipynb", SETUP, SCORE.replace("mean,", "mean + 5000,", 1))
        _notebook(package / "undeclared.ipynb", SETUP, 'ctx.Score("median", "x", 1.0)')
        _notebook(package / "twice.ipynb", SETUP, SCORE, SCORE)
        # forged widgets: the notebook skips AnalysisContext's checks; the platform's stop them
        _notebook(package / "forged_too_big.ipynb", FORGED_SCORE.format(quantity=5000.0))
        forged = FORGED_SCORE.format(quantity=5.0)
        _notebook(package / "forged_twice.ipynb", forged, forged)
        module = platform.modules.create_package(package, account=ACCOUNT, name="lengthaudit")
        self.module = platform.modules.upload_package(module, package).id
        schema = pa.schema(
            [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
        )
        self.measure_method = platform.methods.create(
            {
                "account": ACCOUNT,
                "name": "lengths",
                "scope": "Evaluation",
                "implementation": {
                    "kind": "PythonFunction",
                    "pythonFunction": {"fullyQualifiedName": "lengthaudit.lengths"},
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
                "modules": [self.module],
            }
        ).id
        self.dataset = ready_dataset(platform, tmp / "data", rows=30)

    def notebook_method(self, notebook: str) -> str:
        return self.platform.methods.create(
            {
                "account": ACCOUNT,
                "name": f"length audit ({notebook})",
                "scope": "Evaluation",
                "implementation": {
                    "kind": "JupyterNotebook",
                    "jupyterNotebook": {"notebookModule": self.module, "notebookPath": notebook},
                },
                "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
                "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
                "scores": SCORES,
                "modules": [self.module],
            }
        ).id

    def evaluate(self, seed: int) -> tuple[str, str]:
        """An evaluation of a TextCompletion mock and its lengths measurement."""
        service = self.platform.inferenceservices.create_mock(
            mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": seed}
        )
        evaluation = self.platform.evaluations.create(
            {
                "account": ACCOUNT,
                "dataset": self.dataset,
                "inferenceSession": {"inferenceService": service.id},
            }
        ).id
        measurement = self.platform.measurements.create(
            {
                "account": ACCOUNT,
                "method": self.measure_method,
                "scope": {"evaluation": evaluation},
                "inputs": [{"keyword": "evaluation", "entity": evaluation}],
            }
        )
        assert measurement.status == Status.Complete, measurement.message
        return evaluation, measurement.id

    def safety_case(self, method: str, evaluation: str, measurement: str) -> Any:
        return self.platform.safetycases.create(
            {
                "account": ACCOUNT,
                "method": method,
                "scope": {"evaluation": evaluation},
                "inputs": [{"keyword": "lengths", "entity": measurement}],
            }
        )


@pytest.fixture
def audit(platform: LocalPlatform, tmp_path: Path) -> Audit:
    return Audit(platform, tmp_path)


def test_safety_case_document_scores_and_comparison(platform: LocalPlatform, audit: Audit) -> None:
    method = audit.notebook_method("ok.ipynb")
    evaluation, measurement = audit.evaluate(seed=1)
    case = audit.safety_case(method, evaluation, measurement)
    assert case.status == Status.Complete, case.message
    assert case.message == "1 score(s), 1 curve(s)"

    lengths = platform.measurements.open(measurement).to_table()["length"].to_pylist()
    mean = sum(lengths) / len(lengths)
    (score,) = platform.safetycases.scores(case.id)
    assert score.name == "mean_length"
    assert score.quantity == pytest.approx(mean)
    assert score.quantityString == f"{mean:.1f} chars"
    assert score.metadata.refs.evaluation == evaluation
    assert score.metadata.refs.method == method
    assert platform.scores.get(analysis=case.id) == [score]
    (curve,) = platform.safetycases.curves(case.id)
    assert curve.points["threshold"] == [10.0, 50.0, 100.0]
    assert curve.points["share"] == [
        pytest.approx(sum(x < t for x in lengths) / len(lengths)) for t in (10, 50, 100)
    ]

    html = platform.safetycases.document(case.id)
    assert platform.safetycases.document_path(case.id).read_text(encoding="utf-8") == html
    for text in (
        "Response length audit",
        "The test suite",
        "Answers are of moderate length",
        "Mean answer length",
        f"{mean:.1f} chars",
        "<strong>alarming</strong>",
        "<svg",
        "An example safety case.",
    ):
        assert text in html, text
    assert "AnalysisContext()" not in html  # code cells are hidden
    assert "<script src" not in html
    assert "https://" not in html and "http://" not in html.replace("http://www.w3.org", "")

    # the same score of a second system, compared across systems
    other_evaluation, other_measurement = audit.evaluate(seed=2)
    other = audit.safety_case(method, other_evaluation, other_measurement)
    assert other.status == Status.Complete, other.message
    compared = platform.scores.query(method=method, name="mean_length")
    assert {s.analysis for s in compared} == {case.id, other.id}
    services = {s.metadata.refs.inferenceService for s in compared}
    assert len(services) == 2
    assert platform.scores.query(evaluation=other_evaluation) == platform.safetycases.scores(
        other.id
    )


@pytest.mark.parametrize(
    ("notebook", "expected"),
    [
        ("raises.ipynb", "cell 3 (code cell 2) raised ZeroDivisionError: division by zero"),
        ("too_big.ipynb", "mean_length"),
        ("undeclared.ipynb", "declares no score 'median'"),
        ("twice.ipynb", "'mean_length' was already published"),
    ],
)
def test_failing_notebooks(audit: Audit, notebook: str, expected: str) -> None:
    method = audit.notebook_method(notebook)
    evaluation, measurement = audit.evaluate(seed=1)
    case = audit.safety_case(method, evaluation, measurement)
    assert case.status == Status.Failed
    assert expected in (case.message or "")
    assert f"notebook '{notebook}'" in (case.message or "")
    assert audit.platform.safetycases.scores(case.id) == []
    with pytest.raises(errors.ConflictError):
        audit.platform.safetycases.document(case.id)


@pytest.mark.parametrize(
    ("notebook", "expected"),
    [
        ("forged_too_big.ipynb", "mean_length is 5000.0, outside its declared range [0.0, 1000.0]"),
        ("forged_twice.ipynb", "published the score 'mean_length' more than once"),
    ],
)
def test_forged_scores_are_refused(audit: Audit, notebook: str, expected: str) -> None:
    """The platform checks the published widgets itself: a notebook that displays a score
    widget without ``ctx.Score`` cannot publish a score out of range, or one score twice."""
    method = audit.notebook_method(notebook)
    evaluation, measurement = audit.evaluate(seed=1)
    case = audit.safety_case(method, evaluation, measurement)
    assert case.status == Status.Failed
    assert f"SafetyCase {case.id}: " in (case.message or "")
    assert expected in (case.message or "")
    assert audit.platform.safetycases.scores(case.id) == []
    assert audit.platform.scores.query(method=method) == []


def test_notebook_method_checks(platform: LocalPlatform, audit: Audit) -> None:
    with pytest.raises(errors.ValidationError, match=r"has no notebook 'missing\.ipynb'"):
        audit.notebook_method("missing.ipynb")


def test_the_document_names_its_system_and_shows_its_provenance(
    platform: LocalPlatform, audit: Audit
) -> None:
    method = audit.notebook_method("ok.ipynb")
    pages = []
    for seed in (1, 2):
        evaluation, measurement = audit.evaluate(seed=seed)
        case = audit.safety_case(method, evaluation, measurement)
        assert case.status == Status.Complete, case.message
        pages.append((case, evaluation, measurement, platform.safetycases.document(case.id)))
    titles = [re.search(r"<title>(.*?)</title>", page).group(1) for *_, page in pages]  # type: ignore[union-attr]
    assert titles[0] != titles[1], titles  # two systems, two titles
    for (case, evaluation, measurement, page), title in zip(pages, titles, strict=True):
        service = platform.evaluations.require(evaluation).inferenceSession
        assert service is not None
        name = service.inferenceService.name
        assert name in title
        footer = page[page.index('<footer class="assay-provenance">') :]
        block = platform.provenance(case.id) or {}
        method_digest = block["method"]["digest"].removeprefix("sha256:")
        measured = (platform.provenance(measurement) or {})["output"]["digest"]
        for text in (
            case.id,
            method,
            measurement,
            method_digest[:12],
            measured.removeprefix("sha256:")[:12],
            "assay verify",
            "Assay ",
        ):
            assert text in footer, text
    assert platform.verify(pages[0][0].id).ok


def test_scores_carry_provenance_and_say_when_a_comparison_is_paired(
    platform: LocalPlatform, audit: Audit, tmp_path: Path
) -> None:
    from assay import provenance

    method = audit.notebook_method("ok.ipynb")
    cases = []
    for seed in (1, 2):
        evaluation, measurement = audit.evaluate(seed=seed)
        cases.append(audit.safety_case(method, evaluation, measurement).id)
    audit.dataset = ready_dataset(platform, tmp_path / "other-data", rows=25)
    evaluation, measurement = audit.evaluate(seed=3)
    cases.append(audit.safety_case(method, evaluation, measurement).id)
    scores = {s.analysis: s for s in platform.scores.query(method=method, name="mean_length")}
    first, second, third = (scores[c] for c in cases)
    for score in (first, second, third):
        assert score.provenance is not None and score.provenance["analysis"] == score.analysis
        assert len(score.provenance["datasets"]) == 1 and len(score.provenance["methods"]) == 2
        assert "provenance" not in score.to_wire()  # never on the wire
    same = provenance.compare(first, second)
    assert same.paired and same.same_data and same.same_methods, same.why
    other = provenance.compare(first, third)
    assert not other.paired and not other.same_data and other.same_methods
    assert "the data differ" in other.why and audit.dataset in other.why
    bare = first.model_copy(update={"provenance": None})
    assert not provenance.compare(bare, second).paired
