"""Assay: an open platform for auditing AI systems.

``import assay`` is kept light: it imports nothing heavy (no Jupyter, Ray, torch,
transformers or FastAPI). Import the parts you use::

    from assay.local import LocalPlatform
    from assay.schema.requests import DatasetCreateRequest
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
