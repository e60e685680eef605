"""Serving pipelines: ordered steps over InferenceServices (models, splits, shadows,
validations), deployed as immutable versions and run in-process.

```python
pipeline = platform.pipelines.create("sentiment")       # with its inference log
pipeline.add_model_step(classifier).add_validations(unsure="out.scores is None")
pipeline.deploy()
pipeline.infer({"text": "great"})
pipeline.logs()                                           # the newest 100 logged inferences
```

``Pipeline(platform, name)`` alone runs without a log (records go to its ``on_record`` hook).

Design notes: ``docs/design/pipelines.md``.
"""

from assay.pipelines.definition import PipelineDefinition
from assay.pipelines.execution import PipelineStepError
from assay.pipelines.group import LoggedPipeline, MoreLogRecordsWarning, Pipelines
from assay.pipelines.log import ExportResult, InferenceLog
from assay.pipelines.pipeline import Pipeline
from assay.pipelines.versions import PipelineVersion

__all__ = [
    "ExportResult",
    "InferenceLog",
    "LoggedPipeline",
    "MoreLogRecordsWarning",
    "Pipeline",
    "PipelineDefinition",
    "PipelineStepError",
    "PipelineVersion",
    "Pipelines",
]
