"""Serving pipelines: ordered steps over InferenceServices (models, splits, shadows,
validations), deployed as immutable versions and run in-process.

```python
from assay.pipelines import Pipeline

pipeline = Pipeline(platform, "sentiment", account="me")
pipeline.add_model_step(classifier).add_validations(unsure="out.scores is None")
pipeline.deploy()
pipeline.infer({"text": "great"})
```

Design notes: ``docs/design/pipelines.md``.
"""

from assay.pipelines.definition import PipelineDefinition
from assay.pipelines.execution import PipelineStepError
from assay.pipelines.pipeline import Pipeline
from assay.pipelines.versions import PipelineVersion

__all__ = ["Pipeline", "PipelineDefinition", "PipelineStepError", "PipelineVersion"]
