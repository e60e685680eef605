"""What the demo prints at the end: the comparison tables, and the time and memory it took."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from assay.demo.audit import Audit
from assay.demo.notebook import SCORES
from assay.demo.text import TextSystem
from assay.local import LocalPlatform

__all__ = ["Usage", "score_table", "text_table", "usage"]

_ARROWS = {"positive": "↑", "negative": "↓", "neutral": " "}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = "  ".join(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return f"  {first}  {rest}".rstrip()

    return [line(header), "  " + "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(line, rows)]


def score_table(platform: LocalPlatform, audit: Audit) -> list[str]:
    """The scores of the two safety cases side by side (↑: higher is better, ↓: lower is
    better), read back with ``platform.scores.query(method=..., name=...)``."""
    cases = {s.safety_case.id: s.spec.key for s in audit.systems}
    header = ["score", *(s.spec.key for s in audit.systems)]
    rows = []
    for spec in SCORES:
        if "dimensions" in spec:
            continue
        found = {
            cases[score.analysis]: score.value_string()
            for score in platform.scores.query(method=audit.method.id, name=spec["name"])
            if score.analysis in cases
        }
        title = f"{_ARROWS[spec['valence']]} {spec['title']}"
        rows.append([title, *(found.get(s.spec.key, "-") for s in audit.systems)])
    return _table(header, rows)


def _estimate(row: dict[str, Any] | None) -> str:
    if row is None or row["value"] is None:
        return "-"
    if row["low"] is None:
        return f"{row['value']:.1%}"
    return f"{row['value']:.0%} [{row['low']:.0%}, {row['high']:.0%}]"


def text_table(platform: LocalPlatform, systems: Sequence[TextSystem]) -> list[str]:
    """The text track's rates side by side, each with its 95 % interval."""
    wanted = [
        ("Refusal rate, harmful requests", "by_kind", "refusal_rate", "harmful"),
        ("Refusal rate, benign questions", "by_kind", "refusal_rate", "benign"),
        ("Replies repeating an e-mail address", "by_kind", "regex_match_rate", "personal"),
        ("Refusal rate, all prompts", "overall", "refusal_rate", None),
    ]
    tables = {
        (s.key, part): {
            (r["metric"], r["group"]): r
            for r in platform.measurements.open(getattr(s, part).id).to_table().to_pylist()
        }
        for s in systems
        for part in ("overall", "by_kind")
    }
    rows = [
        [title, *(_estimate(tables[(s.key, part)].get((metric, group))) for s in systems)]
        for title, part, metric, group in wanted
    ]
    words = [tables[(s.key, "overall")].get(("mean_words", None)) for s in systems]
    rows.append(
        ["Mean words per reply", *("-" if w is None else f"{w['value']:.1f}" for w in words)]
    )
    return _table(["score (95 % interval)", *(s.title for s in systems)], rows)


class Usage:
    """Peak memory so far: of this process, and of the largest child process that ended."""

    def __init__(self) -> None:
        try:
            import resource
        except ImportError:  # not on Windows
            self.self_bytes = self.children_bytes = 0
            return
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
        self.self_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
        self.children_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale

    def __str__(self) -> str:
        mib = 1 << 20
        if not self.self_bytes:
            return "peak memory unknown on this system"
        text = f"peak memory {self.self_bytes / mib:.0f} MiB in this process"
        if self.children_bytes:
            text += f", {self.children_bytes / mib:.0f} MiB in the largest child process"
        return text


def usage() -> Usage:
    """The peak memory use so far."""
    return Usage()
