"""``assay demo``: a genuine audit of two real classifiers on the embedded platform.

The work is done by :func:`assay.demo.run` (see :mod:`assay.demo`); this module only declares
the command's arguments (:func:`add_demo_arguments`) and calls it (:func:`run_demo`), then,
with ``--serve``, :func:`assay.demo.serving.serve`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["DESCRIPTION", "HELP", "add_demo_arguments", "run_demo"]

#: The command's one-line help, and its description.
HELP = "run the demonstration audit on the embedded platform"
DESCRIPTION = (
    "Audit two real classifiers on the embedded platform: train a logistic regression and a "
    "random forest on scikit-learn's handwritten digits, serve each as a python inference "
    "service, evaluate both on a clean and a noisy test set, measure them with the built-in "
    "methods (accuracy, recall, calibration, robustness, paired comparison), render a safety "
    "case for each, and print a comparison table. A second run reuses what exists. Needs "
    "scikit-learn: pip install 'assay[demo]'. With --text, audit two text models instead."
)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``assay demo`` to its parser."""
    parser.add_argument(
        "--data",
        default=os.environ.get("ASSAY_DEMO_DATA", "assay-data"),
        help="directory of the platform's state (env: ASSAY_DEMO_DATA; default: assay-data)",
    )
    parser.add_argument(
        "--account",
        default=os.environ.get("ASSAY_ACCOUNT", "demo"),
        help="account that owns the demo's entities (env: ASSAY_ACCOUNT; default: demo)",
    )
    parser.add_argument(
        "--text",
        action="store_true",
        default=_flag("ASSAY_DEMO_TEXT"),
        help="audit two text models instead (the TextCompletion mock and a chat model behind "
        "an OpenAI-compatible API) for refusals and repeated e-mail addresses; needs no "
        "scikit-learn (env: ASSAY_DEMO_TEXT=1)",
    )
    parser.add_argument(
        "--serve",
        action="store_true",
        default=_flag("ASSAY_DEMO_SERVE"),
        help="then serve the results with 'assay serve' on --data, printing the URL and an "
        "API token (env: ASSAY_DEMO_SERVE=1)",
    )
    parser.add_argument(
        "--host", help="with --serve: address to listen on (env: ASSAY_HOST; default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port",
        type=int,
        help="with --serve: TCP port to listen on (env: ASSAY_PORT; default: 8000)",
    )


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on")


def run_demo(
    data: str | Path,
    *,
    account: str = "demo",
    text: bool = False,
    serve: bool = False,
    host: str | None = None,
    port: int | None = None,
) -> int:
    """Run the demo on the platform whose state is in ``data``, then serve it if ``serve``;
    the exit status."""
    from assay.demo import run

    result = run(data, account=account, text=text)
    if serve:
        from assay.demo.serving import serve as serve_results

        serve_results(data, account=account, host=host, port=port, safety_cases=result.safety_cases)
    return 0
