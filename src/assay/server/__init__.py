"""The Assay server: the platform core behind a REST API (``assay serve``).

```python
from assay.server import ServerSettings, create_app, issue_token

app = create_app(ServerSettings(data_dir="assay-data"))      # an ASGI app for uvicorn
```

See ``docs/design/server.md`` for the routes, the access model (API tokens, grants, session
tokens, signed URLs, revocation) and the limits. This package imports FastAPI; ``import
assay`` and ``import assay.local`` never import it.
"""

from assay.server.access import Principal
from assay.server.app import create_app
from assay.server.auth import RevocationList, issue_token, parse_grant
from assay.server.executor import WorkflowThreadExecutor
from assay.server.settings import ServerSettings
from assay.server.state import build_core

__all__ = [
    "Principal",
    "RevocationList",
    "ServerSettings",
    "WorkflowThreadExecutor",
    "build_core",
    "create_app",
    "issue_token",
    "parse_grant",
]
