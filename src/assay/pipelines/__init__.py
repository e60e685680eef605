"""Serving pipelines: ordered steps over InferenceServices (models, splits, shadows,
validations), deployed as immutable versions; a deployed version is an InferenceService of
runner kind ``pipeline`` (evaluate it like any other system), and every inference it answers
is appended to the pipeline's inference log.

```python
pipeline = platform.pipelines.create("sentiment")       # with its inference log
pipeline.add_model_step(classifier).add_validations(unsure="out.scores is None")
pipeline.deploy()
pipeline.infer({"text": "great"})
pipeline.logs()                                           # the newest 100 logged inferences
```

``Pipeline(platform, name)`` is the same pipeline without the reading side of the log (its
``on_record`` / ``on_failure`` hooks get the records of the calls made through it).

Design notes: ``docs/design/pipelines.md``.
"""

from assay.pipelines.definition import PipelineDefinition
from assay.pipelines.execution import PipelineStepError
from assay.pipelines.explain import ExplainabilityConfig, ExplainabilityResult
from assay.pipelines.group import LoggedPipeline, MoreLogRecordsWarning, Pipelines
from assay.pipelines.log import ExportResult, InferenceLog
from assay.pipelines.pipeline import Pipeline
from assay.pipelines.versions import PipelineVersion

__all__ = [
    "ExplainabilityConfig",
    "ExplainabilityResult",
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
