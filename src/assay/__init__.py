"""Assay: an open platform for auditing AI systems.

``import assay`` is kept light: it imports nothing heavy (no Jupyter, Ray, torch,
transformers or FastAPI). Import the parts you use::

    from assay.local import LocalPlatform
    from assay.schema.requests import DatasetCreateRequest
"""

import logging as _logging

__version__ = "0.1.0"

# A library does not print: what Assay logs reaches the application's handlers, if any.
_logging.getLogger("assay").addHandler(_logging.NullHandler())

__all__ = ["__version__"]
