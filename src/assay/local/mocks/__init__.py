"""Mock inference services: simulated systems to develop and test audits without a model.

```python
from assay.local import LocalPlatform, mocks

service = platform.inferenceservices.create_mock(mocks.TextCompletion, account="me")
```

Each mock implements :class:`assay.inference.protocol.ServiceProtocol` (``infer(endpoint,
request) -> list[dict]``, and ``infer_batch``), declares its :attr:`~InferenceServiceMock.
interface` and output :attr:`~InferenceServiceMock.schema`, can be constructed with no
arguments, and takes keyword-only options, among them ``seed``:

- :class:`TextCompletion`: ``generate``, ``{"text": str}`` → two ``{"text": str}``;
- :class:`Classifier`: ``classify``, ``{"text": str}`` → ``{"label": str, "scores": [...]}``;
- :class:`Embedder`: ``embed``, ``{"text": str}`` → ``{"embedding": [float] * dim}``;
- :class:`ChatModel`: ``chat``, ``{"messages": [...]}`` → ``{"role": "assistant",
  "content": str}``;
- :class:`Regressor`: ``predict``, ``{feature: number, ...}`` → ``{"score": float}``, a
  known linear function of the features (for tabular audits, e.g. explainability);
- :class:`Faulty`: the endpoints of the mock it wraps, with injected latency, errors
  (:class:`TransientServiceError`), hangs and malformed replies, an admission limit
  (``max_concurrent``: calls beyond it are refused with ``retry_after``) and a process that
  dies (``exit_after``: the Nth call does ``os._exit``; for replica processes);
- :class:`Slow`: the mock it wraps, one call at a time, ``latency`` seconds each, with
  ``infer`` only (no ``infer_batch``): a model that generates one reply at a time.

With a ``seed``, a mock's reply depends on the seed and the request alone, whatever the order
of the calls, their concurrency or the number of replicas (:class:`Faulty` draws its faults
from one seeded sequence instead). Without one, replies vary from call to call. Write your own
mock by subclassing :class:`InferenceServiceMock`.

:class:`InferenceSessionClientMock` calls a mock directly, with no platform or session
(``InferenceSessionClientMock(mocks.TextCompletion(), inference_endpoint="generate")``); it has
the methods of the client that ``inferencesessions.client(...)`` returns.
"""

from __future__ import annotations

from assay.local.mocks._base import InferenceServiceMock
from assay.local.mocks._chat import ChatMessage, ChatModel
from assay.local.mocks._classifier import Classifier, ClassifierOutput, LabelScore
from assay.local.mocks._client import InferenceSessionClientMock
from assay.local.mocks._embedder import Embedder
from assay.local.mocks._faulty import Faulty, TransientServiceError
from assay.local.mocks._slow import Slow
from assay.local.mocks._tabular import Regressor, RegressorOutput
from assay.local.mocks._text import TextCompletion

__all__ = [
    "ChatMessage",
    "ChatModel",
    "Classifier",
    "ClassifierOutput",
    "Embedder",
    "Faulty",
    "InferenceServiceMock",
    "InferenceSessionClientMock",
    "LabelScore",
    "Regressor",
    "RegressorOutput",
    "Slow",
    "TextCompletion",
    "TransientServiceError",
]

# The public names live here: ``assay.local.mocks.TextCompletion`` is the class path that
# services record (``f"{cls.__module__}.{cls.__qualname__}"``), whatever private module
# defines the class.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
