"""``import assay`` stays light."""

from __future__ import annotations

import subprocess
import sys


def test_import_assay_imports_nothing_heavy() -> None:
    heavy = [
        "jupyter_client",
        "nbclient",
        "ray",
        "torch",
        "transformers",
        "fastapi",
        "pandas",
        "pyarrow",
    ]
    code = (
        "import sys, assay, assay.errors, assay.schema.platform, assay.schema.requests; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_import_local_platform_imports_no_jupyter_ray_torch_or_fastapi() -> None:
    heavy = ["jupyter_client", "nbclient", "ray", "torch", "transformers", "fastapi"]
    code = f"import sys, assay.local; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_import_analysis_imports_no_jupyter() -> None:
    heavy = ["jupyter_client", "nbclient", "nbformat", "ipykernel", "IPython", "zmq", "pandas"]
    code = (
        "import sys, assay.analysis, assay.analysis.runtime, assay.analysis.workflow; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
