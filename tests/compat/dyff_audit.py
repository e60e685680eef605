"""The whole audit workflow through the reference client (``dyff-client``), against a running
``assay serve``.

Run by ``test_dyff_client.py`` with the Python of the reference client's own virtual
environment (it cannot import Assay, and Assay's environment cannot import it)::

    python dyff_audit.py <endpoint> <api token> <work directory>

It uses only the reference client's public API and request types, exactly as a Dyff user
would, and prints one JSON object of what it saw for the test to check. Any error the server
answers ends the script with the reference client's own exception.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dyff.client import Client
from dyff.schema.dataset import arrow
from dyff.schema.platform import (
    AnalysisInput,
    AnalysisScope,
    ContainerImageSource,
    CurveSpec,
    DataSchema,
    EntityIdentifier,
    FamilyMemberBase,
    FamilyMemberKind,
    InferenceInterface,
    InferenceServiceRunner,
    InferenceServiceRunnerKind,
    MeasurementLevel,
    MeasurementSpec,
    MethodImplementation,
    MethodImplementationJupyterNotebook,
    MethodImplementationKind,
    MethodImplementationPythonFunction,
    MethodInput,
    MethodInputKind,
    MethodOutput,
    MethodOutputKind,
    MethodScope,
    ModelResources,
    SafetyCaseSpec,
    ScoreSpec,
)
from dyff.schema.requests import (
    AnalysisCreateRequest,
    DocumentationEditRequest,
    EvaluationCreateRequest,
    EvaluationInferenceSessionRequest,
    FamilyCreateRequest,
    InferenceServiceCreateRequest,
    InferenceSessionCreateRequest,
    MethodCreateRequest,
)

ACCOUNT = "alice"
ROWS = 8
TERMINAL = {"Complete", "Ready", "Error", "Failed", "Terminated", "Deleted", "Denied"}

METRICS = '''\
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
'''

NOTEBOOK_CELLS = [
    "from assay.analysis import AnalysisContext\n"
    "import pyarrow.compute as pc\n"
    "ctx = AnalysisContext()\n"
    "lengths = ctx.inputs('lengths').to_table()['length']\n"
    "mean = pc.mean(lengths).as_py()\n",
    "ctx.TitleCard(headline='Length audit by the reference client', author='dyff-client',\n"
    "              summary_phrase='Measured', summary_text='Every answer was measured.')\n",
    "ctx.Score('mean_length', f'Answers average {mean:.0f} characters.', mean)\n",
    "ctx.Curve('share_below', 'Share of answers below each length.',\n"
    "          {'threshold': [10.0, 100.0],\n"
    "           'share': [pc.mean(pc.less(lengths, t).cast('float64')).as_py() for t in (10, 100)]})\n",
]


def wait(group: Any, id: str, timeout: float = 180) -> Any:
    """The entity once its status is terminal (polling ``get``, as a Dyff user does)."""
    deadline = time.monotonic() + timeout
    while (entity := group.get(id)).status not in TERMINAL:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{id} is still {entity.status} after {timeout} s")
        time.sleep(0.1)
    return entity


def schema_of(fields: list[tuple[str, pa.DataType]]) -> DataSchema:
    return DataSchema(arrowSchema=arrow.encode_schema(pa.schema(fields)))


def rows_in(directory: Path) -> int:
    return sum(pq.read_table(path).num_rows for path in directory.rglob("*.parquet"))


def write_inputs(work: Path) -> Path:
    directory = work / "prompts"
    directory.mkdir(parents=True)
    table = pa.table(
        {
            "_index_": pa.array(range(ROWS), pa.int64()),
            "text": [f"prompt {i}" for i in range(ROWS)],
        }
    )
    pq.write_table(table, directory / "part-0.parquet")
    return directory


def write_package(work: Path) -> Path:
    package = work / "package"
    (package / "audit").mkdir(parents=True)
    (package / "audit" / "__init__.py").write_text("")
    (package / "audit" / "metrics.py").write_text(METRICS)
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
    return package


def audit(client: Client, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}

    # data set: create from an Arrow data set, upload (signed PUT URLs), finalize
    inputs = write_inputs(work)
    dataset = client.datasets.create_arrow_dataset(inputs, account=ACCOUNT, name="prompts")
    out["dataset_created"] = dataset.status
    client.datasets.upload_arrow_dataset(dataset, inputs)
    dataset = wait(client.datasets, dataset.id)
    client.datasets.download(dataset.id, work / "downloaded" / "dataset")
    out["dataset"] = {
        "id": dataset.id,
        "status": dataset.status,
        "rows": rows_in(work / "downloaded" / "dataset"),
    }

    # a mock service: the reference's runner needs an image; Assay serves the mock in args
    service = client.inferenceservices.create(
        InferenceServiceCreateRequest(
            account=ACCOUNT,
            name="mock-completion",
            runner=InferenceServiceRunner(
                kind=InferenceServiceRunnerKind.MOCK,
                image=ContainerImageSource(
                    host="assay.invalid", name="assay/mocks", digest="sha256:" + "0" * 64
                ),
                resources=ModelResources(),
                args=["assay.local.mocks.TextCompletion"],
            ),
            interface=InferenceInterface(
                endpoint="generate", outputSchema=schema_of([("text", pa.string())])
            ),
        )
    )
    out["service"] = {"id": service.id, "status": wait(client.inferenceservices, service.id).status}

    # a session: create, ready, tokens, inference through the session client, terminate
    created = client.inferencesessions.create(
        InferenceSessionCreateRequest(
            account=ACCOUNT,
            inferenceService=service.id,
            expires=datetime.now(UTC) + timedelta(hours=1),
        )
    )
    session = created.inferencesession
    deadline = time.monotonic() + 120
    while not client.inferencesessions.ready(session.id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"session {session.id} did not get ready")
        time.sleep(0.1)
    token = client.inferencesessions.token(
        session.id, expires=datetime.now(UTC) + timedelta(minutes=10)
    )
    by_interface = client.inferencesessions.client(session.id, token, interface=service.interface)
    by_endpoint = client.inferencesessions.client(session.id, created.token, endpoint="generate")
    out["session"] = {
        "id": session.id,
        "status": client.inferencesessions.get(session.id).status,
        "infer": by_interface.infer({"text": "Hello"}),
        "infer_with_create_token": by_endpoint.infer({"text": "Hello again"}),
        "terminate": client.inferencesessions.terminate(session.id).status,
    }

    # an evaluation of the data set, with its own session
    evaluation = client.evaluations.create(
        EvaluationCreateRequest(
            account=ACCOUNT,
            dataset=dataset.id,
            inferenceSession=EvaluationInferenceSessionRequest(inferenceService=service.id),
        )
    )
    evaluation = wait(client.evaluations, evaluation.id)
    client.evaluations.download(evaluation.id, work / "downloaded" / "evaluation")
    out["evaluation"] = {
        "id": evaluation.id,
        "status": evaluation.status,
        "message": evaluation.message,
        "links": [link.artifact.path for link in client.evaluations.downlinks(evaluation.id)],
        "rows": rows_in(work / "downloaded" / "evaluation"),
        "workflow_logs": client.evaluations.workflow_logs(evaluation.id).workflow.id,
    }

    # a module (package upload), a Python-function method, a measurement
    package = write_package(work)
    module = client.modules.create_package(package, account=ACCOUNT, name="audit")
    client.modules.upload_package(module, package)
    out["module"] = {"id": module.id, "status": wait(client.modules, module.id).status}
    method = client.methods.create(
        MethodCreateRequest(
            account=ACCOUNT,
            name="lengths",
            scope=MethodScope.Evaluation,
            implementation=MethodImplementation(
                kind=MethodImplementationKind.PythonFunction,
                pythonFunction=MethodImplementationPythonFunction(
                    fullyQualifiedName="audit.metrics.lengths"
                ),
            ),
            inputs=[MethodInput(kind=MethodInputKind.Evaluation, keyword="evaluation")],
            output=MethodOutput(
                kind=MethodOutputKind.Measurement,
                measurement=MeasurementSpec(
                    name="lengths",
                    level=MeasurementLevel.Instance,
                    schema=schema_of(
                        [
                            ("_index_", pa.int64()),
                            ("_replication_", pa.string()),
                            ("length", pa.int64()),
                        ]
                    ),
                ),
            ),
            modules=[module.id],
        )
    )
    scope = AnalysisScope(evaluation=evaluation.id, dataset=dataset.id, inferenceService=service.id)
    measurement = client.measurements.create(
        AnalysisCreateRequest(
            account=ACCOUNT,
            method=method.id,
            scope=scope,
            inputs=[AnalysisInput(keyword="evaluation", entity=evaluation.id)],
        )
    )
    measurement = wait(client.measurements, measurement.id)
    client.measurements.download(measurement.id, work / "downloaded" / "measurement")
    out["measurement"] = {
        "id": measurement.id,
        "method": method.id,
        "status": measurement.status,
        "message": measurement.message,
        "rows": rows_in(work / "downloaded" / "measurement"),
        "logs": list(client.measurements.logs(measurement.id)),
    }

    # a safety case from a notebook method, with a score
    case_method = client.methods.create(
        MethodCreateRequest(
            account=ACCOUNT,
            name="length-case",
            scope=MethodScope.Evaluation,
            implementation=MethodImplementation(
                kind=MethodImplementationKind.JupyterNotebook,
                jupyterNotebook=MethodImplementationJupyterNotebook(
                    notebookModule=module.id, notebookPath="case.ipynb"
                ),
            ),
            inputs=[MethodInput(kind=MethodInputKind.Measurement, keyword="lengths")],
            output=MethodOutput(
                kind=MethodOutputKind.SafetyCase, safetyCase=SafetyCaseSpec(name="Length audit")
            ),
            scores=[
                ScoreSpec(
                    name="mean_length",
                    title="Mean answer length",
                    summary="The mean number of characters in an answer.",
                    minimum=0,
                    maximum=10000,
                    unit="chars",
                ),
                CurveSpec(
                    name="share_below",
                    title="Length distribution",
                    summary="The share of answers below each length.",
                    dimensions={
                        "threshold": ScoreSpec(
                            name="threshold", title="Threshold", summary="Characters."
                        ),
                        "share": ScoreSpec(name="share", title="Share", summary="Of answers."),
                    },
                ),
            ],
            modules=[module.id],
        )
    )
    case = client.safetycases.create(
        AnalysisCreateRequest(
            account=ACCOUNT,
            method=case_method.id,
            scope=scope,
            inputs=[AnalysisInput(keyword="lengths", entity=measurement.id)],
        )
    )
    case = wait(client.safetycases, case.id)
    scores = client.safetycases.scores(case.id)
    out["safetycase"] = {
        "id": case.id,
        "method": case_method.id,
        "status": case.status,
        "message": case.message,
        "links": sorted(link.artifact.path for link in client.safetycases.downlinks(case.id)),
        "scores": [score.model_dump(mode="json") for score in scores],
        "query_scores": [s.id for s in client.safetycases.query_scores(analysis=case.id)],
        "query_scores_by_method": [
            s.id for s in client.safetycases.query_scores(methodName="length-case")
        ],
        "curves": [c.model_dump(mode="json") for c in client.safetycases.curves(case.id)],
        "query_curves": [c.id for c in client.safetycases.query_curves(analysis=case.id)],
    }

    # labels, documentation, queries
    client.datasets.label(dataset.id, {"audit.example.org/stage": "final"})
    edited = client.datasets.edit_documentation(
        dataset.id,
        DocumentationEditRequest(documentation={"title": "Prompts", "summary": "Eight prompts."}),
    )
    out["labels"] = client.datasets.get(dataset.id).labels
    out["documentation"] = {"title": edited.title, "summary": edited.summary}
    out["queries"] = {
        "datasets_by_label": [
            d.id for d in client.datasets.query(labels={"audit.example.org/stage": "final"})
        ],
        "datasets_by_name": [d.id for d in client.datasets.query(name="prompts")],
        "datasets_by_query": [d.id for d in client.datasets.query(query={"name": ["prompts"]})],
        "evaluations_by_dataset": [e.id for e in client.evaluations.query(dataset=dataset.id)],
        "evaluations_by_service_name": [
            e.id for e in client.evaluations.query(inferenceServiceName="mock-completion")
        ],
        "measurements_by_method": [m.id for m in client.measurements.query(method=method.id)],
        "safetycases_by_method_name": [
            c.id for c in client.safetycases.query(methodName="length-case")
        ],
        "safetycases_by_input": [c.id for c in client.safetycases.query(inputs=[measurement.id])],
        "modules_by_name": [m.id for m in client.modules.query(name="audit")],
        "methods_by_output_kind": {
            kind: [m.id for m in client.methods.query(outputKind=kind)]
            for kind in ("Measurement", "SafetyCase")
        },
        "generic_get": client.get(EntityIdentifier(kind="Dataset", id=dataset.id)).id,
    }

    # a family of data sets: tags set, changed and removed; a member read back
    family = client.families.create(
        FamilyCreateRequest(account=ACCOUNT, memberKind=FamilyMemberKind.Dataset)
    )
    tagged = EntityIdentifier(kind="Dataset", id=dataset.id)
    client.families.edit_members(
        family.id,
        {
            "v1": FamilyMemberBase(entity=tagged, description="Eight prompts."),
            "latest": FamilyMemberBase(entity=tagged),
        },
    )
    client.families.edit_members(
        family.id, {"latest": None, "v1.0": FamilyMemberBase(entity=tagged)}
    )
    members = client.families.get(family.id).members
    member = client.families.get_member(family.id, "v1")
    out["family"] = {
        "tags": sorted(members),
        "v1": members["v1"].model_dump(mode="json"),
        "member": None if member is None else [member.kind, member.id],
        "absent": client.families.get_member(family.id, "latest"),
    }

    # delete
    out["deleted"] = {
        "status": client.safetycases.delete(case.id).status,
        "after": client.safetycases.get(case.id).status,
    }
    return out


def main() -> None:
    endpoint, token, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    client = Client(api_token=token, endpoint=endpoint)
    print(json.dumps(audit(client, work)))


if __name__ == "__main__":
    main()
