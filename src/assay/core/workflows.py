"""How the engine treats each entity kind (see ``docs/design/workflows.md``).

Resources (Dataset, Module, Model, InferenceService, Method, Family) end ``Ready`` or
``Error``; jobs (Evaluation, Measurement, SafetyCase, Report, Audit) end ``Complete`` or
``Failed``. Kinds without a runner yet (Report, Audit) fail with a message saying so, rather than
waiting forever.
"""

from __future__ import annotations

from assay import errors
from assay.analysis.workflow import run_analysis
from assay.core.datasets import ingest_dataset
from assay.core.models import model_has_work, prepare_model
from assay.core.modules import verify_module
from assay.engine import WorkflowContext, WorkflowResult, WorkflowSpec
from assay.evaluation import run_evaluation
from assay.schema.status import Reason, Status

__all__ = ["default_specs", "unavailable"]


def unavailable(kind: str) -> WorkflowSpec:
    """A spec whose handler fails: this build cannot run ``kind`` workflows."""

    def handler(ctx: WorkflowContext) -> WorkflowResult:
        raise errors.PlatformError(
            f"this Assay installation has no runner for {kind} workflows yet; "
            "the entity is recorded but cannot run"
        )

    failure = Status.Error if kind == "InferenceSession" else Status.Failed
    return WorkflowSpec(kind, handler, success=Status.Complete, failure=failure)


def default_specs() -> list[WorkflowSpec]:
    ready, error = Status.Ready, Status.Error
    return [
        WorkflowSpec(
            "Dataset",
            ingest_dataset,
            success=ready,
            failure=error,
            failure_reason=Reason.IngestFailed,
            upload_gate=True,
        ),
        WorkflowSpec("Module", verify_module, success=ready, failure=error, upload_gate=True),
        WorkflowSpec(
            "Model",
            prepare_model,
            success=ready,
            failure=error,
            upload_gate=True,
            runs=model_has_work,
        ),
        WorkflowSpec("InferenceService", success=ready, failure=error),
        WorkflowSpec("Method", success=ready, failure=error),
        WorkflowSpec("Family", success=ready, failure=error),
        WorkflowSpec("DataSource", success=ready, failure=error),
        WorkflowSpec("AuditProcedure", success=ready, failure=error),
        WorkflowSpec("History", success=ready, failure=error),
        WorkflowSpec("Revision", success=ready, failure=error),
        WorkflowSpec("Evaluation", run_evaluation, success=Status.Complete, failure=Status.Failed),
        WorkflowSpec("Measurement", run_analysis, success=Status.Complete, failure=Status.Failed),
        WorkflowSpec("SafetyCase", run_analysis, success=Status.Complete, failure=Status.Failed),
        unavailable("Report"),
        unavailable("Audit"),
    ]
