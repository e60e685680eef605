"""``FileUpload``: turn each object into a ``multipart/form-data`` upload of one of its fields."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, NamedTuple

from pydantic import Field

from assay import errors
from assay.schema.adapters._base import (
    BaseAdapter,
    Configuration,
    JSONObject,
    data_error,
    parse_configuration,
)
from assay.schema.adapters._expressions import TemplateCompiler

__all__ = ["FILE_UPLOAD_KEY", "FileUpload", "FileUploadSpec", "as_file_upload"]

#: The only key of the envelope objects that :class:`FileUpload` emits.
FILE_UPLOAD_KEY = "$fileUpload"
_SPEC_KEYS = ("name", "filename", "contentType", "content", "formFields")


class FileUploadSpec(NamedTuple):
    """A ``multipart/form-data`` request, read from a :class:`FileUpload` envelope by
    :func:`as_file_upload`."""

    name: str
    """The name of the part that holds the file (for FastAPI, the ``UploadFile`` parameter)."""
    filename: str
    """The file name reported for the file."""
    content_type: str
    """The media type reported for the file."""
    content: bytes
    """The file's contents."""
    form_fields: dict[str, str]
    """Further (non-file) parts to send with the file."""


def as_file_upload(item: Any) -> FileUploadSpec | None:
    """The upload described by a :class:`FileUpload` envelope, or ``None`` for an ordinary
    JSON object (which is sent as a JSON body)."""
    if not isinstance(item, dict) or FILE_UPLOAD_KEY not in item:
        return None

    def bad(problem: str) -> errors.ValidationError:
        return errors.ValidationError(
            f"malformed {FILE_UPLOAD_KEY!r} envelope: {problem}; build it with the FileUpload "
            "adapter, the last adapter of the input pipeline",
            field=FILE_UPLOAD_KEY,
        )

    if len(item) != 1:
        raise bad(f"it must be the only key of the object, found {sorted(item)}")
    spec = item[FILE_UPLOAD_KEY]
    if not isinstance(spec, dict) or sorted(spec) != sorted(_SPEC_KEYS):
        keys = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
        raise bad(f"expected an object with the keys {sorted(_SPEC_KEYS)}, got {keys}")
    for key in ("name", "filename", "contentType"):
        if not isinstance(spec[key], str):
            raise bad(f"{key!r} must be a string, got {type(spec[key]).__name__}")
    if not isinstance(spec["content"], bytes):
        raise bad(f"'content' must be bytes, got {type(spec['content']).__name__}")
    form = spec["formFields"]
    if not isinstance(form, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in form.items()
    ):
        raise bad("'formFields' must map strings to strings")
    return FileUploadSpec(
        spec["name"], spec["filename"], spec["contentType"], spec["content"], dict(form)
    )


class _UploadConfiguration(Configuration):
    field: str
    """A JSONPath query for the value to upload, e.g. ``$.image.data``."""
    encoding: Literal["base64", "binary", "utf-8", "json"] = "base64"
    """How the value is held: ``base64`` text (or bytes), ``binary`` bytes, ``utf-8`` text, or
    any JSON value to upload as a JSON document."""
    name: str = "file"
    """The name of the multipart part holding the file."""
    filename: Any = "file"
    """The file name to report: a value expression (a literal, or a ``$`` query)."""
    contentType: Any = "application/octet-stream"
    """The media type to report: a value expression."""
    formFields: dict[str, Any] = Field(default_factory=dict)
    """Further parts to send, by name: value expressions giving strings or numbers."""


class FileUpload(BaseAdapter):
    """Turn each object into a ``multipart/form-data`` upload of one of its fields.

    Configuration: ``{"field": "$.query", "encoding": "base64" | "binary" | "utf-8" | "json",
    "name": part name, "filename": expr, "contentType": expr, "formFields": {name: expr}}``;
    only ``field`` is required. ``filename``, ``contentType`` and the ``formFields`` values are
    value expressions as in :class:`TransformJSON` (``$`` queries, ``$$`` escapes,
    ``$compute``). Fields not named in ``formFields`` are not sent.

    The result is an envelope ``{"$fileUpload": {...}}`` that senders turn into the request
    with :func:`as_file_upload`. It is not a JSON object that other adapters can read, so
    ``FileUpload`` must be the last adapter of an input pipeline.
    """

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        config = parse_configuration(self.kind, _UploadConfiguration, configuration)
        compiler = TemplateCompiler(self.kind)
        self.name = config.name
        self.encoding = config.encoding
        self._content = compiler.scalar(compiler.query(config.field, "field"), "field")
        self._filename = compiler.template(config.filename, "filename")
        self._content_type = compiler.template(config.contentType, "contentType")
        self._form = [
            (key, compiler.template(value, f"formFields.{key}"))
            for key, value in config.formFields.items()
        ]

    def _bytes(self, value: Any) -> bytes:
        encoding = self.encoding
        if encoding == "json":
            return json.dumps(value).encode("utf-8")
        if isinstance(value, bytes | bytearray | memoryview):
            if encoding == "utf-8":
                raise data_error(
                    self.kind,
                    "encoding 'utf-8' expects text, but the field holds bytes; use 'binary' "
                    "or 'base64'",
                    field="field",
                )
            return bytes(value)
        if isinstance(value, str):
            if encoding == "utf-8":
                return value.encode("utf-8")
            if encoding == "base64":
                try:
                    return base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise data_error(
                        self.kind, f"the field is not valid base64 ({exc})", field="field"
                    ) from None
            raise data_error(
                self.kind,
                "encoding 'binary' expects bytes, but the field holds text; binary data set "
                "fields reach the input pipeline base64-encoded, so use 'base64'",
                field="field",
            )
        raise data_error(
            self.kind,
            f"cannot upload a {type(value).__name__} with encoding {encoding!r}; "
            "use 'json' to upload a JSON value",
            field="field",
        )

    def _text(self, value: Any, key: str) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            return str(value)
        raise data_error(
            self.kind,
            f"{key} must be a string or a number, got {type(value).__name__}",
            field=key,
        )

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        for item in stream:
            yield {
                FILE_UPLOAD_KEY: {
                    "name": self.name,
                    "filename": self._text(self._filename(item), "filename"),
                    "contentType": self._text(self._content_type(item), "contentType"),
                    "content": self._bytes(self._content(item)),
                    "formFields": {
                        key: self._text(evaluate(item), f"formFields.{key}")
                        for key, evaluate in self._form
                    },
                }
            }
