"""Assay's schema: pure data, no I/O.

- :mod:`assay.schema.platform`: the entity kinds and their supporting types;
- :mod:`assay.schema.requests`: create, edit and query requests;
- :mod:`assay.schema.dataset`: canonical data components and Arrow helpers;
- :mod:`assay.schema.adapters`: the schema adapters of inference interfaces.
"""
