"""Composition: ``Pipeline`` and ``Map``, and making adapters from ``{kind, configuration}``
specs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol, Self

from pydantic import Field

from assay import errors
from assay.schema.adapters._base import (
    Adapter,
    BaseAdapter,
    Configuration,
    JSONObject,
    config_error,
    data_error,
    describe_keys,
    parse_configuration,
)
from assay.schema.adapters._collections import EmbedIndex, ExplodeCollections
from assay.schema.adapters._fields import Drop, FlattenHierarchy, Rename, Select
from assay.schema.adapters._transform import TransformJSON
from assay.schema.adapters._upload import FileUpload

__all__ = [
    "AdapterSpec",
    "Map",
    "Pipeline",
    "create_adapter",
    "create_pipeline",
    "known_adapters",
]


class _HasKindAndConfiguration(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def configuration(self) -> dict[str, Any] | None: ...


#: An adapter spec: ``{"kind": ..., "configuration": ...}``, or an object with those attributes
#: (``assay.schema.platform.SchemaAdapter``).
AdapterSpec = Mapping[str, Any] | _HasKindAndConfiguration


def _contains_upload(adapter: Adapter) -> bool:
    if isinstance(adapter, FileUpload):
        return True
    return isinstance(adapter, Pipeline) and any(_contains_upload(a) for a in adapter.adapters)


class _PipelineConfiguration(Configuration):
    adapters: list[dict[str, Any]]
    """The adapter specs (``{"kind", "configuration"}``) to apply, in order."""


class Pipeline(BaseAdapter):
    """Apply adapters one after the other: each consumes the stream the one before produces.

    Made from adapters, ``Pipeline([Drop(...), Rename(...)])``, or from specs with
    :func:`create_pipeline`; as a spec its configuration is ``{"adapters": [spec, ...]}``.
    A ``FileUpload`` may only come last.
    """

    def __init__(self, adapters: Iterable[Adapter] = ()) -> None:
        self.configuration = None
        self.adapters: list[Adapter] = list(adapters)
        for position, adapter in enumerate(self.adapters):
            if not callable(adapter):
                raise errors.ValidationError(
                    f"Pipeline: adapter [{position}] is a {type(adapter).__name__}, not an "
                    "adapter; make adapters from specs with create_adapter()",
                    entity=self.kind,
                )
            if position < len(self.adapters) - 1 and _contains_upload(adapter):
                raise errors.ValidationError(
                    f"Pipeline: adapter [{position}] of {len(self.adapters)} is a FileUpload, but "
                    "FileUpload must be the last adapter: it turns each item into a multipart "
                    "upload that no later adapter can read; move it to the end of the input "
                    "pipeline",
                    entity=FileUpload.kind,
                    field=f"[{position}]",
                )

    @classmethod
    def from_configuration(cls, configuration: Mapping[str, Any] | None) -> Self:
        config = parse_configuration(cls.kind, _PipelineConfiguration, configuration)
        try:
            return cls(create_pipeline(config.adapters).adapters)
        except errors.ValidationError as exc:
            raise config_error(cls.kind, "adapters", exc.message) from None

    def to_spec(self) -> dict[str, Any]:
        specs = []
        for adapter in self.adapters:
            if not isinstance(adapter, BaseAdapter):
                raise errors.ValidationError(
                    f"Pipeline.to_spec(): {adapter!r} is not one of Assay's adapter kinds, so it "
                    "has no spec"
                )
            specs.append(adapter.to_spec())
        return {"kind": self.kind, "configuration": {"adapters": specs}}

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        result: Iterator[JSONObject] = iter(stream)
        for adapter in self.adapters:
            result = iter(adapter(result))
        return result

    def __repr__(self) -> str:
        return f"Pipeline({self.adapters!r})"


class _MapConfiguration(Configuration):
    collections: list[str] = Field(min_length=1)
    """The top-level list fields (of objects) to transform."""
    adapter: dict[str, Any] | list[dict[str, Any]]
    """The adapter spec to apply to each list, or a list of specs (a pipeline)."""


class Map(BaseAdapter):
    """Apply an adapter (or a pipeline) to the elements of nested lists of objects.

    Configuration: ``{"collections": [name, ...], "adapter": spec | [spec, ...]}``. For each
    object, each named list is replaced by what the adapter makes of its elements (which may be
    more or fewer elements). ``FileUpload`` cannot be used inside ``Map``.
    """

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        super().__init__(configuration)
        config = parse_configuration(self.kind, _MapConfiguration, configuration)
        self.collections = config.collections
        try:
            if isinstance(config.adapter, list):
                self.adapter: Adapter = create_pipeline(config.adapter)
            else:
                self.adapter = create_adapter(config.adapter)
        except errors.ValidationError as exc:
            raise config_error(self.kind, "adapter", exc.message) from None
        if _contains_upload(self.adapter):
            raise config_error(
                self.kind,
                "adapter",
                "FileUpload cannot be applied inside Map: its uploads are not JSON objects; "
                "use it as the last adapter of the input pipeline",
            )

    def __call__(self, stream: Iterable[JSONObject]) -> Iterator[JSONObject]:
        adapter = self.adapter
        for item in stream:
            out = dict(item)
            for name in self.collections:
                elements = item.get(name)
                if not isinstance(elements, list) or not all(
                    isinstance(element, dict) for element in elements
                ):
                    problem = (
                        f"the field {name!r} must be a list of objects, got {elements!r:.80}"
                        if name in item
                        else f"the item has no field {name!r}; {describe_keys(item)}"
                    )
                    raise data_error(self.kind, problem, field=name)
                out[name] = list(adapter(elements))
            yield out


_KINDS: dict[str, type[BaseAdapter]] = {
    kind.kind: kind
    for kind in (
        Drop,
        EmbedIndex,
        ExplodeCollections,
        FileUpload,
        FlattenHierarchy,
        Map,
        Pipeline,
        Rename,
        Select,
        TransformJSON,
    )
}


def known_adapters() -> dict[str, type[BaseAdapter]]:
    """The adapter kinds, by name."""
    return dict(_KINDS)


def _spec_parts(spec: Any) -> tuple[Any, Any]:
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"kind", "configuration"})
        if unknown or "kind" not in spec:
            raise errors.ValidationError(
                f"an adapter spec is {{'kind': ..., 'configuration': ...}}, got the keys "
                f"{sorted(spec)}",
                field="kind",
            )
        return spec["kind"], spec.get("configuration")
    if hasattr(spec, "kind"):
        return spec.kind, getattr(spec, "configuration", None)
    raise errors.ValidationError(
        f"an adapter spec is {{'kind': ..., 'configuration': ...}} or a SchemaAdapter, got {spec!r}"
    )


def create_adapter(spec: AdapterSpec) -> Adapter:
    """The adapter a ``{kind, configuration}`` spec describes."""
    kind, configuration = _spec_parts(spec)
    adapter_type = _KINDS.get(kind) if isinstance(kind, str) else None
    if adapter_type is None:
        raise errors.ValidationError(
            f"unknown adapter kind {kind!r}; the known kinds are {sorted(_KINDS)}",
            field="kind",
            value=kind,
        )
    return adapter_type.from_configuration(configuration)


def create_pipeline(
    specs: Iterable[AdapterSpec] | None, *, allow_file_upload: bool = True
) -> Pipeline:
    """The pipeline of the adapters that ``specs`` describe (``None`` gives an empty one).

    Errors name the position of the bad spec. ``FileUpload`` may only come last; pass
    ``allow_file_upload=False`` for output pipelines, where it may not come at all.
    """
    adapters: list[Adapter] = []
    for position, spec in enumerate(specs or ()):
        try:
            adapters.append(create_adapter(spec))
        except errors.ValidationError as exc:
            raise errors.ValidationError(
                f"adapter [{position}]: {exc.message}",
                field=f"[{position}].{exc.field}" if exc.field else f"[{position}]",
                value=exc.value,
                entity=exc.entity,
                errors=exc.errors,
            ) from None
    pipeline = Pipeline(adapters)
    if not allow_file_upload and _contains_upload(pipeline):
        raise errors.ValidationError(
            "FileUpload can only be used in an input pipeline: it makes multipart uploads, "
            "not JSON objects; remove it from this pipeline",
            entity=FileUpload.kind,
        )
    return pipeline
