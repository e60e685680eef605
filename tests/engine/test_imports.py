"""The engine sits below the platform core: ``assay/engine/`` never imports ``assay.core``
(nor the packages built on the engine), so that no import circle runs core → engine →
analysis → core. Workers build their platform core with the factory the platform hands the
engine (``Engine.factory``); see ``docs/design/workflows.md``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import assay.engine

ENGINE = Path(assay.engine.__file__).parent
#: Packages the engine must not import: the core, and what is built on the engine.
ABOVE = (
    "assay.core",
    "assay.inference",
    "assay.evaluation",
    "assay.analysis",
    "assay.pipelines",
    "assay.server",
    "assay.client",
    "assay.local",
    "assay.cli",
)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, anywhere in it (functions and ``TYPE_CHECKING`` blocks
    included), with its line: relative imports resolved against ``assay.engine``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..core import y
                parts = ["assay", "engine"][: 3 - node.level]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def test_the_engine_imports_nothing_above_it() -> None:
    files = sorted(ENGINE.glob("*.py"))
    assert len(files) >= 8  # the walk sees the package
    bad = [
        f"{path.name}:{line}: {module}"
        for path in files
        for line, module in imported_modules(path)
        if any(module == above or module.startswith(above + ".") for above in ABOVE)
    ]
    assert bad == [], "assay.engine imports packages above it:\n" + "\n".join(bad)


def test_the_walk_finds_an_import_of_the_core(tmp_path: Path) -> None:
    # the safeguard bites: a lazy import of the core inside a function is found
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from assay.core.platform import CoreConfig\n"
        "def f():\n    import assay.core.platform\n    from ..core import kinds\n"
    )
    modules = [module for _, module in imported_modules(sample)]
    assert "assay.core.platform" in modules
    assert "assay.core.kinds" in modules
    assert "assay.core.platform.CoreConfig" in modules


def test_the_engine_imports_with_the_core_blocked() -> None:
    code = (
        "import sys; sys.modules['assay.core'] = None\n"
        "import assay.engine, assay.engine.processes, assay.engine.workers\n"
        "import assay.engine.ray_executor, assay.engine.ray_worker\n"
        "assert 'assay.core.platform' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
