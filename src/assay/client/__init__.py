"""The Assay platform on a server: ``from assay.client import Client``.

```python
from assay.client import Client

with Client("http://127.0.0.1:8000", api_token) as platform:   # or ASSAY_API_ENDPOINT/TOKEN
    dataset = platform.datasets.create_arrow_dataset("data/", account="alice", name="digits")
    platform.datasets.upload_arrow_dataset(dataset, "data/")
    table = platform.datasets.open(dataset.id).to_table()
```

``Client`` has the API groups and method names of ``LocalPlatform`` (``datasets``,
``evaluations``, ``families``, ``inferenceservices``, ``inferencesessions``,
``measurements``, ``methods``, ``models``, ``modules``, ``reports``, ``safetycases``,
``scores``), returns the same :mod:`assay.schema.platform` entities and raises the same
:mod:`assay.errors`, so an audit script runs against either. What differs is listed in
``docs/design/client.md``: workflows run on the server, so ``create`` answers at once and
``wait(id)`` waits for them; data is downloaded (``download(id, dest)``, or ``open(id)``
through a cache directory).

``import assay.client`` imports httpx and nothing heavy (no FastAPI, uvicorn, Jupyter, pyarrow
or SQLAlchemy): those load when a call needs them.
"""

from assay.client._client import Client
from assay.client._progress import ProgressCallback, TerminalProgress, TransferProgress
from assay.client._retries import Retries, RetryMode

__all__ = [
    "Client",
    "ProgressCallback",
    "Retries",
    "RetryMode",
    "TerminalProgress",
    "TransferProgress",
]
