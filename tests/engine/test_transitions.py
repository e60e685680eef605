from __future__ import annotations

import pytest

from assay import errors
from assay.engine import apply_transition, check_transition
from assay.schema.status import Status


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("Created", "Admitted"),
        ("Created", "Ready"),
        ("Created", "Failed"),
        ("Admitted", "Complete"),
        ("Admitted", "Failed"),
        ("Admitted", "Admitted"),
        ("Ready", "Terminated"),
        ("Complete", "Deleted"),
        ("Failed", "Deleted"),
    ],
)
def test_allowed_moves(current: str, new: str) -> None:
    check_transition("Evaluation", "e1", current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("Complete", "Admitted"),
        ("Failed", "Complete"),
        ("Deleted", "Created"),
        ("Deleted", "Deleted"),
        ("Ready", "Complete"),
        ("Terminated", "Ready"),
    ],
)
def test_refused_moves_say_what_is_allowed(current: str, new: str) -> None:
    with pytest.raises(errors.ConflictError) as info:
        check_transition("Evaluation", "e1", current, new)
    assert current in str(info.value) and new in str(info.value)


def test_apply_transition_stamps_time_only_on_change() -> None:
    doc = {"kind": "Evaluation", "id": "e1", "status": "Created", "reason": "UnsatisfiedDependency"}
    apply_transition(doc, Status.Admitted)
    assert doc["status"] == "Admitted" and "reason" not in doc
    stamp = doc["lastTransitionTime"]
    apply_transition(doc, Status.Admitted, message="41,000 / 100,000 instances")
    assert doc["lastTransitionTime"] == stamp
    assert doc["message"] == "41,000 / 100,000 instances"
