"""The API reference in ``docs/reference/`` is what ``scripts/gen_reference.py`` writes from
the code today: a changed docstring, signature or ``__all__`` fails here until the pages are
regenerated (``.venv/bin/python scripts/gen_reference.py``)."""

from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "reference"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_reference", ROOT / "scripts" / "gen_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_is_up_to_date(tmp_path: Path) -> None:
    _generator().write(tmp_path)
    fresh = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    committed = {p.name: p.read_text(encoding="utf-8") for p in COMMITTED.glob("*.md")}
    problems = []
    for name in sorted(set(fresh) | set(committed)):
        if name not in committed:
            problems.append(f"docs/reference/{name} is missing")
        elif name not in fresh:
            problems.append(f"docs/reference/{name} is no longer generated (remove it)")
        elif fresh[name] != committed[name]:
            diff = difflib.unified_diff(
                committed[name].splitlines(),
                fresh[name].splitlines(),
                f"docs/reference/{name} (committed)",
                f"docs/reference/{name} (from the code)",
                n=1,
                lineterm="",
            )
            problems.append("\n".join(list(diff)[:40]))
    assert not problems, (
        "the API reference is out of date; run `.venv/bin/python scripts/gen_reference.py` "
        "and commit docs/reference/:\n\n" + "\n\n".join(problems)
    )


def test_reference_covers_every_public_name() -> None:
    """Each name in a documented module's ``__all__`` has its own heading."""
    generator = _generator()
    for module_name in generator.MODULES:
        module = importlib.import_module(module_name)
        text = (COMMITTED / f"{module_name}.md").read_text(encoding="utf-8")
        for name in module.__all__:
            assert f"## `{name}" in text, f"{module_name}.{name} is not in its reference page"


def test_reference_pages_have_no_python_blocks() -> None:
    """Docstring examples are illustrations (``text``): tests/test_docs.py runs every
    ``python`` block under docs/, and these are not meant to run on their own."""
    for page in COMMITTED.glob("*.md"):
        assert "```python" not in page.read_text(encoding="utf-8"), page.name
