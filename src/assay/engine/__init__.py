"""The workflow engine: status machine, dependency rules, executors."""

from assay.engine.engine import (
    Engine,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowResult,
    WorkflowSpec,
)
from assay.engine.executors import Executor, InlineExecutor, WorkflowJob
from assay.engine.processes import ProcessExecutor
from assay.engine.transitions import ALLOWED, apply_transition, check_transition

__all__ = [
    "ALLOWED",
    "Engine",
    "Executor",
    "InlineExecutor",
    "ProcessExecutor",
    "WorkflowCancelled",
    "WorkflowContext",
    "WorkflowJob",
    "WorkflowResult",
    "WorkflowSpec",
    "apply_transition",
    "check_transition",
]
