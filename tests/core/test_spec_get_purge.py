"""The reference platform's API, exactly (issue 15, item 5), on ``LocalPlatform``:

- ``get(id)`` answers None for an id it does not know (``get(id: str) -> X | None``), on every
  group; ``require(id)`` and every other call about one entity still raise ``NotFoundError``;
- ``purge(id)`` removes the entity, its artifacts and, for a SafetyCase, the Scores and Curves
  it published (and nothing that another analysis published).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.analysis.test_safetycases import Audit
from tests.conftest import ACCOUNT, model_request

from assay import errors
from assay.local import LocalPlatform
from assay.schema.status import Status

UNKNOWN = "0" * 32

#: Every entity group of the platform.
GROUPS = (
    "datasets",
    "evaluations",
    "families",
    "inferenceservices",
    "inferencesessions",
    "measurements",
    "methods",
    "models",
    "modules",
    "reports",
    "safetycases",
)


# -- get, require ----------------------------------------------------------------------------


@pytest.mark.parametrize("resource", GROUPS)
def test_get_of_an_unknown_id_is_none(platform: LocalPlatform, resource: str) -> None:
    group = getattr(platform, resource)
    assert group.get(UNKNOWN) is None
    with pytest.raises(errors.NotFoundError) as info:
        group.require(UNKNOWN)
    assert (info.value.kind, info.value.id) == (group.kind, UNKNOWN)
    assert UNKNOWN in str(info.value)


def test_get_of_another_kinds_id_is_none(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request())
    assert platform.models.get(model.id) == model
    assert platform.models.require(model.id) == model
    for resource in GROUPS:
        if resource != "models":
            assert getattr(platform, resource).get(model.id) is None, resource
    with pytest.raises(errors.NotFoundError):
        platform.datasets.require(model.id)


#: Calls about one entity (besides get) and the groups that have them: each raises
#: NotFoundError for an unknown id.
CALLS: list[tuple[str, str, Callable[[Any], Any]]] = [
    *[(r, "require", lambda g: g.require(UNKNOWN)) for r in GROUPS],
    *[(r, "delete", lambda g: g.delete(UNKNOWN)) for r in GROUPS],
    *[(r, "purge", lambda g: g.purge(UNKNOWN)) for r in GROUPS],
    *[(r, "documentation", lambda g: g.documentation(UNKNOWN)) for r in GROUPS],
    *[
        (r, "edit_documentation", lambda g: g.edit_documentation(UNKNOWN, title="t"))
        for r in GROUPS
    ],
    *[(r, "label", lambda g: g.label(UNKNOWN, {"a": "b"})) for r in GROUPS],
    *[(r, "wait", lambda g: g.wait(UNKNOWN, timeout=1)) for r in GROUPS],
    *[
        (r, "terminate", lambda g: g.terminate(UNKNOWN))
        for r in ("evaluations", "measurements", "safetycases", "inferencesessions")
    ],
    *[
        (r, "logs", lambda g: g.logs(UNKNOWN))
        for r in ("evaluations", "measurements", "safetycases", "inferencesessions")
    ],
    *[(r, "open", lambda g: g.open(UNKNOWN)) for r in ("datasets", "evaluations", "measurements")],
    ("safetycases", "scores", lambda g: g.scores(UNKNOWN)),
    ("safetycases", "curves", lambda g: g.curves(UNKNOWN)),
    ("safetycases", "document", lambda g: g.document(UNKNOWN)),
    ("inferencesessions", "token", lambda g: g.token(UNKNOWN)),
    ("inferencesessions", "ready", lambda g: g.ready(UNKNOWN)),
    ("families", "get_member", lambda g: g.get_member(UNKNOWN, "tag")),
    ("datasets", "upload_arrow_dataset", lambda g: g.upload_arrow_dataset(UNKNOWN, ".")),
    ("models", "files_dir", lambda g: g.files_dir(UNKNOWN)),
]


@pytest.mark.parametrize(
    ("resource", "call"),
    [(r, c) for r, _, c in CALLS],
    ids=[f"{r}.{name}" for r, name, _ in CALLS],
)
def test_other_calls_about_an_unknown_id_still_raise(
    platform: LocalPlatform, resource: str, call: Callable[[Any], Any]
) -> None:
    with pytest.raises(errors.NotFoundError):
        call(getattr(platform, resource))


def test_get_of_a_purged_entity_is_none(platform: LocalPlatform) -> None:
    model = platform.models.create(model_request())
    platform.models.purge(model.id)
    assert platform.models.get(model.id) is None
    with pytest.raises(errors.NotFoundError):
        platform.models.purge(model.id)  # purged already: it is unknown now


# -- purge -----------------------------------------------------------------------------------


def test_purge_of_a_safety_case_removes_its_scores_and_curves(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    audit = Audit(platform, tmp_path)
    method = audit.notebook_method("ok.ipynb")
    evaluation, measurement = audit.evaluate(seed=1)
    purged = audit.safety_case(method, evaluation, measurement)
    kept = audit.safety_case(method, evaluation, measurement)
    for case in (purged, kept):
        assert case.status == Status.Complete, case.message
        assert [s.name for s in platform.safetycases.scores(case.id)] == ["mean_length"]
        assert [c.name for c in platform.safetycases.curves(case.id)] == ["share_below"]
    assert len(platform.scores.query(name="mean_length")) == 2

    platform.safetycases.purge(purged.id)

    assert platform.safetycases.get(purged.id) is None
    assert not platform.entity_path(purged.id).exists()
    assert platform.scores.query(analysis=purged.id) == []
    assert platform.scores.get(analysis=purged.id) == []
    assert platform.scores.curves(analysis=purged.id) == []
    assert platform.core.store.query(kind=["Score", "Curve"], refs={"analysis": purged.id}) == []
    # another safety case's records stay
    assert [s.analysis for s in platform.scores.query(name="mean_length")] == [kept.id]
    assert [c.analysis for c in platform.scores.curves(name="share_below")] == [kept.id]
    assert [s.name for s in platform.safetycases.scores(kept.id)] == ["mean_length"]

    # a purge of the measurement the other case read (forced) leaves that case's scores alone
    platform.measurements.purge(measurement, force=True)
    assert platform.measurements.get(measurement) is None
    assert [s.analysis for s in platform.scores.query(method=method)] == [kept.id]


def test_purge_of_an_imported_safety_case_removes_the_imported_scores(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    """A safety case imported with its records (as ``fetch`` imports one) is purged with
    them."""
    audit = Audit(platform, tmp_path / "origin")
    method = audit.notebook_method("ok.ipynb")
    evaluation, measurement = audit.evaluate(seed=2)
    case = audit.safety_case(method, evaluation, measurement)
    assert case.status == Status.Complete, case.message
    records = [*platform.scores.query(analysis=case.id), *platform.scores.curves(analysis=case.id)]
    assert len(records) == 2
    with LocalPlatform(tmp_path / "copy", account=ACCOUNT) as copy:
        imported = copy.safetycases._import_record(case.to_wire(), records=records)
        assert imported == case
        assert [s.id for s in copy.scores.query(analysis=case.id)] == [records[0].id]
        assert [c.id for c in copy.scores.curves(analysis=case.id)] == [records[1].id]
        copy.safetycases.purge(case.id, force=True)
        assert copy.safetycases.get(case.id) is None
        assert copy.scores.query(analysis=case.id) == []
        assert copy.scores.curves(analysis=case.id) == []
    assert len(platform.scores.query(analysis=case.id)) == 1  # the origin keeps its own
