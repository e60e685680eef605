"""The one check of a path a user names inside an entity (``check_entity_path``): relative,
no ``..``, not absolute, no name the platform keeps for itself (``.assay*``), and, on disk,
no symbolic link out of the entity's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay import errors
from assay.schema.paths import RESERVED_PREFIX, check_entity_path


@pytest.mark.parametrize("path", ["case.ipynb", "audit/metrics.py", "a/b/.hidden", "assay/x"])
def test_ordinary_paths_pass(path: str) -> None:
    assert check_entity_path(path) == path


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("../0123456789abcdef0123456789abcdef/private.ipynb", "'..'"),
        ("../../x", "'..'"),
        ("a/../../x", "'..'"),
        ("/etc/passwd", "not absolute"),
        ("C:/x", "not absolute"),
        ("", "non-empty"),
    ],
)
def test_paths_out_of_the_entity_are_refused(path: str, rule: str) -> None:
    with pytest.raises(errors.ValidationError, match="notebookPath") as raised:
        check_entity_path(path, field="notebookPath", entity="Method 'm'")
    assert rule in raised.value.message and "Method 'm'" in raised.value.message
    assert raised.value.field == "notebookPath"


@pytest.mark.parametrize(
    ("path", "segment"),
    [
        (".assay-tmp-x", ".assay-tmp-x"),
        (".assay/logs.txt", ".assay"),
        ("data/.assay-tmp-0123", ".assay-tmp-0123"),
        (".assay-cache.json", ".assay-cache.json"),
        (".ASSAY/x", ".ASSAY"),
    ],
)
def test_reserved_names_are_refused_naming_the_prefix(path: str, segment: str) -> None:
    with pytest.raises(errors.ValidationError) as raised:
        check_entity_path(path, field="artifacts[0].path", entity="Module")
    message = raised.value.message
    assert f"the name {segment!r} is reserved" in message
    assert repr(RESERVED_PREFIX) in message and "artifacts[0].path" in message


def test_a_link_out_of_the_entity_is_refused_on_disk(tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    theirs.mkdir()
    (theirs / "private.ipynb").write_text("{}")
    (mine / "inside.ipynb").write_text("{}")
    (mine / "stolen.ipynb").symlink_to(theirs / "private.ipynb")
    (mine / "door").symlink_to(theirs, target_is_directory=True)
    (mine / "alias.ipynb").symlink_to(mine / "inside.ipynb")
    assert check_entity_path("inside.ipynb", root=mine) == "inside.ipynb"
    assert check_entity_path("alias.ipynb", root=mine) == "alias.ipynb"  # a link inside: fine
    for path in ("stolen.ipynb", "door/private.ipynb"):
        with pytest.raises(errors.ValidationError, match="leads outside its entity's directory"):
            check_entity_path(path, field="notebookPath", root=mine)
    # an entity directory that is itself a link (an editable Module) is its own root
    linked = tmp_path / "linked"
    linked.symlink_to(mine, target_is_directory=True)
    assert check_entity_path("inside.ipynb", root=linked) == "inside.ipynb"
