"""The demo from start to end: open the platform, run the audit (or the text track), print
the tables, the documents and the time and memory it took."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from assay.demo.steps import Steps

__all__ = ["DEMO_VERSION", "DemoResult", "run", "version"]

#: The demo's version: raise it when what the demo makes changes in a way that the hash in
#: :func:`version` does not see (a new step, other arguments), so that the next run starts
#: over instead of reusing.
DEMO_VERSION = 2


def version() -> str:
    """The demo version that labels its entities: :data:`DEMO_VERSION` and a digest of what
    its entities are made of (the served class, the notebook, the data settings, the prompts),
    so that a changed demo starts over."""
    from assay.demo import digits, notebook, served, text

    digest = hashlib.sha256(Path(served.__file__).read_bytes())
    parts = {
        "cells": notebook.CELLS,
        "scores": notebook.SCORES,
        "data": [digits.TEST_SHARE, digits.SPLIT_SEED, digits.NOISE, digits.NOISE_SEED],
        "prompts": text.PROMPTS,
    }
    digest.update(json.dumps(parts, sort_keys=True).encode())
    return f"{DEMO_VERSION}-{digest.hexdigest()[:10]}"


@dataclass
class DemoResult:
    """What a run of the demo made."""

    safety_cases: list[tuple[str, str]] = field(default_factory=list)
    """``(system, SafetyCase id)`` of each system audited (none for the text track)."""
    documents: list[Path] = field(default_factory=list)
    """The HTML file of each safety case."""
    created: int = 0
    """Entities made by this run."""
    reused: int = 0
    """Entities found from an earlier run and reused."""
    seconds: float = 0.0
    """Wall time of the run."""


def run(
    data: str | os.PathLike[str],
    *,
    account: str = "demo",
    text: bool = False,
    out: IO[str] | None = None,
) -> DemoResult:
    """Run the demo on the embedded platform whose state is in ``data``: the audit of two
    digit classifiers, or with ``text`` the text track. Prints its progress to ``out``
    (default: standard output). Raises :class:`assay.errors.ValidationError` when the audit
    needs scikit-learn and it is not installed."""
    from assay.local import LocalPlatform

    started = time.perf_counter()
    if not text:
        from assay.demo.classifiers import require_sklearn

        require_sklearn()
    root = Path(data).expanduser().resolve()
    result = DemoResult()
    with LocalPlatform(storage_root=root, account=account) as platform:
        steps = Steps(account, version(), out)
        track = "two text models" if text else "two handwritten-digit classifiers"
        steps.say(f"Assay demo: an audit of {track} on the embedded platform in {root}")
        if text:
            from assay.demo.report import text_table
            from assay.demo.text import run_text

            systems = run_text(platform, steps)
            steps.heading("Text models compared")
            for line in text_table(platform, systems):
                steps.say(line)
            steps.say(
                "Each rate by kind is over 10 prompts (30 in all), hence the wide intervals. "
                "The mock never refuses; the chat model's keyword filter refuses some harmful "
                "requests, and some benign ones."
            )
        else:
            from assay.demo.audit import run_audit
            from assay.demo.report import score_table

            audit = run_audit(platform, steps)
            steps.heading(
                "The two systems compared (scores of their safety cases, 95 % intervals in "
                "brackets)"
            )
            for line in score_table(platform, audit):
                steps.say(line)
            steps.say("Safety cases (open in a browser):")
            for system in audit.systems:
                document = platform.safetycases.document_path(system.safety_case.id)
                result.safety_cases.append((system.spec.key, system.safety_case.id))
                result.documents.append(document)
                steps.say(f"  {system.spec.key:<7} {document}")
        result.created, result.reused = steps.created, steps.reused
    result.seconds = time.perf_counter() - started
    from assay.demo.report import usage

    steps.say(
        f"Done in {result.seconds:.1f} s ({result.created} entities made, {result.reused} "
        f"reused); {usage()}."
    )
    steps.say("Run it again and it reuses what exists; add --serve to browse the results.")
    return result
