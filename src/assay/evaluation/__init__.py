"""The evaluation engine: every instance of a data set through an inference session, exactly
once (see ``workflow.py``)."""

from assay.evaluation.integrity import INTEGRITY_ANNOTATION, Integrity, check_integrity
from assay.evaluation.workflow import run_evaluation

__all__ = ["INTEGRITY_ANNOTATION", "Integrity", "check_integrity", "run_evaluation"]
