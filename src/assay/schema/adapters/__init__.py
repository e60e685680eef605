"""Schema adapters: the input and output pipelines of inference interfaces.

An adapter maps a stream of JSON objects to a stream of JSON objects, lazily (a generator: an
item is read when the next output is asked for). An interface's ``inputPipeline`` runs on each
instance before it is sent to the service; its ``outputPipeline`` runs on the service's
replies, each resulting object becoming one element of ``responses``.

Adapters are described on the wire as ``{"kind": ..., "configuration": {...}}`` and made with
:func:`create_adapter` / :func:`create_pipeline`. The kinds:

=====================  =====================================================================
``TransformJSON``      build each object from a template (JSONPath queries, ``$compute``)
``ExplodeCollections`` one row per element of equal-length list fields, optional index fields
``EmbedIndex``         add index fields to the elements of list fields
``FlattenHierarchy``   nested objects to ``a.b.c`` keys
``Rename``             rename top-level fields
``Drop``               remove top-level fields
``Select``             keep only the named top-level fields
``Map``                apply an adapter (or a pipeline) inside nested lists of objects
``FileUpload``         turn each object into a multipart upload; last in an input pipeline
``Pipeline``           apply adapters in sequence
=====================  =====================================================================

For example, an OpenAI-style completion ``{"choices": [{"text": "a"}, {"text": "b"}]}`` becomes
the items ``{"text": "a"}`` and ``{"text": "b"}`` through::

    create_pipeline([
        {"kind": "TransformJSON",
         "configuration": {"text": {"$compute": {"$list": "$.choices[*].text"}}}},
        {"kind": "ExplodeCollections", "configuration": {"collections": ["text"]}},
    ])

A bad configuration is an :class:`assay.errors.ValidationError` naming the kind and the key,
raised when the adapter is made; an item that an adapter cannot transform is one naming the
kind and the field, raised when the item is reached. This module does not import ``pyarrow``;
``jsonpath_ng`` is imported when the first query is compiled.
"""

from assay.schema.adapters._base import Adapter, BaseAdapter, JSONObject
from assay.schema.adapters._collections import EmbedIndex, ExplodeCollections
from assay.schema.adapters._expressions import JSONPath
from assay.schema.adapters._fields import Drop, FlattenHierarchy, Rename, Select
from assay.schema.adapters._json import flatten_object, map_structure
from assay.schema.adapters._pipeline import (
    AdapterSpec,
    Map,
    Pipeline,
    create_adapter,
    create_pipeline,
    known_adapters,
)
from assay.schema.adapters._transform import TransformJSON
from assay.schema.adapters._upload import (
    FILE_UPLOAD_KEY,
    FileUpload,
    FileUploadSpec,
    as_file_upload,
)

__all__ = [
    "FILE_UPLOAD_KEY",
    "Adapter",
    "AdapterSpec",
    "BaseAdapter",
    "Drop",
    "EmbedIndex",
    "ExplodeCollections",
    "FileUpload",
    "FileUploadSpec",
    "FlattenHierarchy",
    "JSONObject",
    "JSONPath",
    "Map",
    "Pipeline",
    "Rename",
    "Select",
    "TransformJSON",
    "as_file_upload",
    "create_adapter",
    "create_pipeline",
    "flatten_object",
    "known_adapters",
    "map_structure",
]
