"""Comparison across systems: the scores that one Method's safety cases published, as a
systems x scores table, and the **paired** differences of a score where two systems were
measured on the same instances.

```python
from assay import comparison

table = comparison.compare_method(platform.core, method_id)       # or compare_scores(...)
for pair in table.pairs:
    print(pair.a_label, "-", pair.b_label, pair.why)
    if pair.statistics:                                             # paired: t and bootstrap
        s = pair.statistics
        print(s.difference, (s.t_low, s.t_high), s.p_value)
comparison.scores_csv(table)                                        # the export
```

How a pair is judged paired, and where the per-instance values come from:
:mod:`assay.comparison._table` and :mod:`assay.comparison._instances`; the statistics:
:mod:`assay.comparison._paired`. Design notes: ``docs/design/analysis.md`` ("Comparing
systems"). The web UI's ``/compare`` page shows it (``assay.server.ui.compare``).
"""

from assay.comparison._csv import DIFFERENCE_COLUMNS, SCORE_COLUMNS, differences_csv, scores_csv
from assay.comparison._instances import InstanceValues, instance_values
from assay.comparison._paired import PairedStatistics, paired_statistics
from assay.comparison._student import t_quantile, two_sided_p
from assay.comparison._table import (
    EVERYTHING,
    MAX_PAIRED_ROWS,
    PairedDifference,
    SystemComparison,
    SystemRow,
    Visibility,
    compare_method,
    compare_scores,
)

__all__ = [
    "DIFFERENCE_COLUMNS",
    "EVERYTHING",
    "MAX_PAIRED_ROWS",
    "SCORE_COLUMNS",
    "InstanceValues",
    "PairedDifference",
    "PairedStatistics",
    "SystemComparison",
    "SystemRow",
    "Visibility",
    "compare_method",
    "compare_scores",
    "differences_csv",
    "instance_values",
    "paired_statistics",
    "scores_csv",
    "t_quantile",
    "two_sided_p",
]
