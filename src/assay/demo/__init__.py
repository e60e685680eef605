"""``assay demo``: a genuine audit of genuine models, out of the box.

```python
from assay.demo import run

result = run("assay-data")              # the audit of two digit classifiers
print(result.documents)                 # the safety cases' HTML files
run("assay-data", text=True)            # the text track: a mock and an OpenAI-compatible API
```

The audit (:mod:`assay.demo.audit`) trains a logistic regression and a random forest with
scikit-learn on its handwritten digits (:mod:`assay.demo.digits`,
:mod:`assay.demo.classifiers`), serves each from a Module with the ``python`` runner
(:mod:`assay.demo.served`), evaluates both on a clean and a noisy test set with two replicas,
measures them with the built-in methods, and renders a safety case for each from a notebook
(:mod:`assay.demo.notebook`); the end is a comparison table (:mod:`assay.demo.report`). The
text track (:mod:`assay.demo.text`) audits the ``TextCompletion`` mock and a chat model behind
the fake OpenAI-compatible server for refusals and repeated e-mail addresses. A second run
reuses what the first made (:mod:`assay.demo.steps`); ``--serve`` then serves the results
(:mod:`assay.demo.serving`).

The audit needs scikit-learn (``pip install 'assay[demo]'``); the text track does not.
"""

from __future__ import annotations

from assay.demo._demo import DEMO_VERSION, DemoResult, run, version

__all__ = ["DEMO_VERSION", "DemoResult", "run", "version"]
