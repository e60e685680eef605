"""A small audit of several systems for the comparison tests (``tests/analysis``,
``tests/ui``): real Datasets, mock services, Evaluations, an instance-level Measurement
(answer lengths) and a notebook SafetyCase publishing two scores, made on any platform core
(an embedded platform's or a server's) through its API groups.

Systems (all measured by the same two Methods):

- ``alpha`` (two replications) and ``beta``, on Dataset ``d1``: a paired comparison;
- ``gamma`` (a name a spreadsheet would run as a formula, with markup), on Dataset ``d2``;
- ``delta``, on ``d1``, owned by the other account: never shown to the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pyarrow as pa
from tests.conftest import write_dataset

from assay.local import mocks
from assay.schema.dataschema import DataSchema

MEASURE = '''
import pyarrow as pa
import pyarrow.compute as pc


def lengths(args, *, evaluation):
    """Characters in the first response to each instance and replication."""
    table = evaluation.to_table()
    text = pc.struct_field(pc.list_element(table["responses"], 0), "text")
    return pa.table({
        "_index_": table["_index_"],
        "_replication_": table["_replication_"],
        "length": pc.utf8_length(text).cast(pa.int64()),
    })
'''

NOTEBOOK = """\
from assay.analysis import AnalysisContext
import pyarrow.compute as pc

ctx = AnalysisContext()
lengths = ctx.inputs("lengths").to_table()["length"]
mean = pc.mean(lengths).as_py()
ctx.Score("mean_length", f"Answers average {mean:.0f} characters.", mean,
          interval=(mean * 0.9, mean * 1.1))
ctx.Score("max_length", "The longest answer.", float(pc.max(lengths).as_py()))
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
        "name": "max_length",
        "title": "Longest answer",
        "summary": "The number of characters in the longest answer.",
        "priority": "secondary",
        "format": "{quantity:.0f}",
    },
]

#: The name of ``gamma``'s service: markup, and a formula for a spreadsheet.
GAMMA = '=HYPERLINK("x") <b>gamma</b> & co'


@dataclass
class System:
    """One system's chain."""

    service: str
    evaluation: str
    measurement: str
    case: str


@dataclass
class World:
    """The ids of the audit."""

    account: str
    other: str
    module: str
    measure_method: str
    method: str
    d1: str
    d2: str
    systems: dict[str, System] = field(default_factory=dict)


def _wait(group: Any, id: str) -> Any:
    entity = group.wait(id, timeout=120)
    assert entity.status in ("Complete", "Ready"), f"{group.kind} {id}: {entity.message}"
    return entity


def _dataset(core: Any, directory: Path, rows: int, account: str, name: str) -> str:
    write_dataset(directory, rows)
    dataset = core.datasets.create_arrow_dataset(directory, account=account, name=name)
    core.datasets.upload_arrow_dataset(dataset, directory)
    return str(_wait(core.datasets, dataset.id).id)


def build(core: Any, directory: Path, *, account: str = "alice", other: str = "bob") -> World:
    """The audit on ``core`` (files under ``directory``)."""
    package = directory / "pkg"
    (package / "lengthaudit").mkdir(parents=True)
    (package / "lengthaudit" / "__init__.py").write_text(MEASURE)
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK)]  # type: ignore[no-untyped-call]
    nbformat.write(nb, package / "audit.ipynb")  # type: ignore[no-untyped-call]
    module = core.modules.create_package(package, account=account, name="lengthaudit")
    core.modules.upload_package(module, package)
    _wait(core.modules, module.id)
    schema = pa.schema(
        [("_index_", pa.int64()), ("_replication_", pa.string()), ("length", pa.int64())]
    )
    measure = core.methods.create(
        {
            "account": account,
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
            "modules": [module.id],
        }
    ).id
    method = core.methods.create(
        {
            "account": account,
            "name": "length audit",
            "scope": "Evaluation",
            "implementation": {
                "kind": "JupyterNotebook",
                "jupyterNotebook": {"notebookModule": module.id, "notebookPath": "audit.ipynb"},
            },
            "inputs": [{"kind": "Measurement", "keyword": "lengths"}],
            "output": {"kind": "SafetyCase", "safetyCase": {"name": "Length audit"}},
            "scores": SCORES,
            "modules": [module.id],
        }
    ).id
    world = World(
        account=account,
        other=other,
        module=module.id,
        measure_method=measure,
        method=method,
        d1=_dataset(core, directory / "d1", 30, account, "prompts"),
        d2=_dataset(core, directory / "d2", 24, account, "other prompts"),
    )
    plan = [
        ("alpha", world.d1, 1, 2, account),
        ("beta", world.d1, 2, 1, account),
        (GAMMA, world.d2, 3, 1, account),
        ("delta", world.d1, 4, 1, other),
    ]
    for name, dataset, seed, replications, owner in plan:
        service = core.inferenceservices.create_mock(
            mocks.TextCompletion, account=owner, name=name, kwargs={"seed": seed}
        ).id
        evaluation = core.evaluations.create(
            {
                "account": owner,
                "dataset": dataset,
                "replications": replications,
                "inferenceSession": {"inferenceService": service},
            }
        ).id
        _wait(core.evaluations, evaluation)
        measurement = core.measurements.create(
            {
                "account": owner,
                "method": measure,
                "scope": {"evaluation": evaluation},
                "inputs": [{"keyword": "evaluation", "entity": evaluation}],
            }
        ).id
        _wait(core.measurements, measurement)
        case = core.safetycases.create(
            {
                "account": owner,
                "method": method,
                "scope": {"evaluation": evaluation},
                "inputs": [{"keyword": "lengths", "entity": measurement}],
            }
        ).id
        _wait(core.safetycases, case)
        world.systems[name] = System(service, evaluation, measurement, case)
    return world
