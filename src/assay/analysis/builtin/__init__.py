"""Built-in audit methods: classification and text metrics, fairness, robustness,
comparisons and drift (population stability index), each a Python function
``f(args, **inputs) -> pyarrow.Table`` that the analysis runtime runs as a Method.

```python
from assay.analysis import builtin

methods = builtin.register_all(platform)     # name -> Method, in the platform's account
builtin.classification.METRICS.register(platform, account="me")   # or one at a time
```

Instance-level built-ins return one row per evaluation row (``_index_``, ``_replication_``
and their own columns); dataset-level ones return the long schema :data:`METRICS_SCHEMA`
(``metric``, ``group``, ``value``, ``low``, ``high``, ``n``), every score with a bootstrap
confidence interval (see :mod:`assay.analysis.stats`). Each built-in's docstring is its
Method's description.

| Method | Level | Inputs |
|---|---|---|
| ``classification.correct`` | Instance | evaluation, dataset |
| ``classification.metrics`` | Dataset | evaluation, dataset |
| ``text.exact_match`` | Instance | evaluation, dataset |
| ``text.contains``, ``text.regex``, ``text.refused``, ``text.length`` | Instance | evaluation |
| ``text.metrics`` | Dataset | evaluation, dataset |
| ``fairness.metrics`` | Dataset | evaluation, dataset |
| ``robustness.drop`` | Dataset | clean, perturbed, dataset |
| ``robustness.drop_with_perturbed_dataset`` | Dataset | clean, perturbed, dataset, perturbed_dataset |
| ``comparison.difference`` | Dataset | a, b, dataset |
| ``drift.psi`` | Dataset | baseline, current |
"""

from __future__ import annotations

from assay.analysis.builtin import classification, comparison, drift, fairness, robustness, text
from assay.analysis.builtin._registry import Builtin, MethodFunction, Platform
from assay.analysis.builtin._results import METRICS_SCHEMA
from assay.schema.platform import Method

__all__ = [
    "BUILTINS",
    "METRICS_SCHEMA",
    "Builtin",
    "MethodFunction",
    "Platform",
    "classification",
    "comparison",
    "drift",
    "fairness",
    "register_all",
    "robustness",
    "text",
]

#: Every built-in, by Method name.
BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        classification.CORRECT,
        classification.METRICS,
        text.EXACT_MATCH,
        text.CONTAINS,
        text.REGEX,
        text.REFUSED,
        text.LENGTH,
        text.METRICS,
        fairness.METRICS,
        robustness.DROP,
        robustness.DROP_WITH_PERTURBED_DATASET,
        comparison.DIFFERENCE,
        drift.PSI,
    )
}


def register_all(platform: Platform, *, account: str | None = None) -> dict[str, Method]:
    """Create a Method for every built-in in ``account`` (default: the platform's; new ones
    at every call); returns them by name."""
    return {name: b.register(platform, account=account) for name, b in BUILTINS.items()}
