"""``Pipeline``: an ordered list of steps over InferenceServices, deployed as immutable
versions and run in-process. Design notes: ``docs/design/pipelines.md``."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from assay import errors
from assay.pipelines.definition import (
    AuditStep,
    KeySplitStep,
    ModelStep,
    MultiModelStep,
    PipelineDefinition,
    RandomSplitStep,
    SelectStep,
    ShadowStep,
    Step,
    ValidationsStep,
    column_prefix,
    parse_slice,
)
from assay.pipelines.execution import PipelineStepError, Runtime
from assay.pipelines.inputs import as_kind, read_file, rows_of
from assay.pipelines.validations import Check, parse_check
from assay.pipelines.versions import PipelineVersion, VersionStore

__all__ = ["Pipeline"]

_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_EXTRA_OUTPUT = re.compile(r"^out\.\d+\.")
#: The kinds of step whose outputs become ``out.*``.
_ANSWERING = (ModelStep, MultiModelStep, KeySplitStep, RandomSplitStep, ShadowStep)

#: A hook that receives a table of records.
RecordHook = Callable[[pa.Table], None]


class Pipeline:
    """A serving pipeline over the InferenceServices of ``platform``.

    >>> pipeline = Pipeline(platform, "sentiment", account="me")       # doctest: +SKIP
    >>> pipeline.add_model_step(classifier).add_validations(low="out.scores is None")
    >>> pipeline.deploy()
    >>> pipeline.infer({"text": "great"})

    Opening a pipeline that has versions starts from the definition of its latest version.
    ``on_record(table)`` receives the records of every inference that passed, and
    ``on_failure(table)`` the records of those that failed (with ``error.*`` columns).
    """

    def __init__(
        self,
        platform: Any,
        name: str,
        *,
        account: str | None = None,
        on_record: RecordHook | None = None,
        on_failure: RecordHook | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise errors.ValidationError(
                f"pipeline name {name!r} is not valid: use up to 63 ASCII letters, digits and "
                "'-', starting and ending with a letter or digit",
                field="name",
                value=name,
            )
        self._platform = platform
        self.name = name
        self.account: str = account or platform.account
        self.on_record = on_record
        self.on_failure = on_failure
        self._versions = VersionStore(platform.core.store, pipeline=name, account=self.account)
        self._names: dict[str, str] = {}
        existing = self._versions.list()
        self._steps: list[Step] = list(existing[-1].definition.steps) if existing else []
        self._runtime: Runtime | None = None
        self._deployed: PipelineVersion | None = None
        self._sessions: list[str] = []

    # -- steps -----------------------------------------------------------------------------

    def add_model_step(self, service: Any) -> Pipeline:
        """Run ``service`` (an id or an InferenceService) on the current input."""
        return self._add(self._model_step(service))

    def add_multi_model_step(self, services: Sequence[Any]) -> Pipeline:
        """Run every service on the same input; the outputs are theirs, in order."""
        return self._add(self._multi_model_step(services))

    def add_audit(self, slice: str) -> Pipeline:
        """Keep (and log) the slice ``"start:end"`` of the previous step's outputs."""
        return self._add(self._audit_step(slice))

    def add_select(self, index: int) -> Pipeline:
        """Keep output ``index`` of the previous step."""
        return self._add(self._select_step(index))

    def add_key_split(self, default: Any, meta_key: str, options: dict[Any, Any]) -> Pipeline:
        """Route on input field ``meta_key``: ``options[value]``, else ``default``."""
        return self._add(self._key_split_step(default, meta_key, options))

    def add_random_split(
        self, weighted: Sequence[tuple[float, Any]], hash_key: str | None = None
    ) -> Pipeline:
        """Route to one service with probability proportional to its weight; with
        ``hash_key``, the same value of that input field always takes the same route."""
        return self._add(self._random_split_step(weighted, hash_key))

    def add_shadow_deploy(self, champion: Any, challengers: Sequence[Any]) -> Pipeline:
        """Run ``champion`` and every challenger; the champion answers, the challengers'
        outputs are recorded as ``out_<name>.*``."""
        return self._add(self._shadow_step(champion, challengers))

    def add_validations(self, **checks: str) -> Pipeline:
        """Named checks over the record (``anomaly.<name>`` is true where one holds)."""
        return self._add(self._validations_step(checks, replacing=None))

    def replace_with_model_step(self, index: int, service: Any) -> Pipeline:
        return self._replace(index, self._model_step(service))

    def replace_with_multi_model_step(self, index: int, services: Sequence[Any]) -> Pipeline:
        return self._replace(index, self._multi_model_step(services))

    def replace_with_audit(self, index: int, slice: str) -> Pipeline:
        return self._replace(index, self._audit_step(slice))

    def replace_with_select(self, index: int, select_index: int) -> Pipeline:
        return self._replace(index, self._select_step(select_index))

    def replace_with_key_split(
        self, index: int, default: Any, meta_key: str, options: dict[Any, Any]
    ) -> Pipeline:
        return self._replace(index, self._key_split_step(default, meta_key, options))

    def replace_with_random_split(
        self, index: int, weighted: Sequence[tuple[float, Any]], hash_key: str | None = None
    ) -> Pipeline:
        return self._replace(index, self._random_split_step(weighted, hash_key))

    def replace_with_shadow_deploy(
        self, index: int, champion: Any, challengers: Sequence[Any]
    ) -> Pipeline:
        return self._replace(index, self._shadow_step(champion, challengers))

    def replace_with_validations(self, index: int, **checks: str) -> Pipeline:
        self._index(index)
        return self._replace(index, self._validations_step(checks, replacing=index))

    def remove_step(self, index: int) -> Pipeline:
        """Remove the step at ``index``."""
        del self._steps[self._index(index)]
        return self

    def clear(self) -> Pipeline:
        """Remove every step (the deployed version keeps running until the next deploy)."""
        self._steps.clear()
        return self

    def steps(self) -> list[str]:
        """One readable line per step of the current (undeployed) definition."""
        return self.definition.describe(self._name_of)

    @property
    def definition(self) -> PipelineDefinition:
        """The current definition (what the next ``deploy()`` stores)."""
        return PipelineDefinition(steps=list(self._steps))

    # -- versions ----------------------------------------------------------------------------

    def deploy(self, replicas: int = 1, *, version: int | None = None) -> PipelineVersion:
        """Store the current definition as a new immutable version and start it (a session
        with ``replicas`` replicas per service); with ``version``, start that stored version
        again, whole, and make its definition the current one."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise errors.ValidationError(
                f"replicas must be an integer of at least 1, got {replicas!r}",
                field="replicas",
                value=replicas,
            )
        if version is not None:
            chosen = self._versions.get(version)
            checks = self._prepare(chosen.definition)
        else:
            checks = self._prepare(self.definition)
            chosen = self._versions.add(self.definition)
        self._start(chosen, checks, replicas)
        self._steps = list(chosen.definition.steps)
        return chosen

    def undeploy(self) -> None:
        """Stop the sessions of the deployed version (its record stays)."""
        for session in self._sessions:
            with contextlib.suppress(errors.AssayError):  # already gone: nothing to stop
                self._platform.inferencesessions.terminate(session)
        self._sessions = []
        self._runtime = None
        self._deployed = None

    def versions(self) -> list[PipelineVersion]:
        """Every stored version, oldest first."""
        return self._versions.list()

    @property
    def deployed_version(self) -> PipelineVersion | None:
        """The version running now (None: not deployed)."""
        return self._deployed

    # -- inference -----------------------------------------------------------------------------

    def infer(self, data: Any, timeout: float = 15, *, metadata: bool = False) -> Any:
        """Run ``data`` (a dict, a list of dicts, a pandas DataFrame or a pyarrow Table: one
        row each) through the deployed version; the records come back as the same kind."""
        return self._infer(data, timeout=timeout, metadata=metadata, concurrency=1)

    def parallel_infer(
        self, data: Any, concurrency: int = 8, timeout: float = 15, *, metadata: bool = False
    ) -> Any:
        """As :meth:`infer`, with up to ``concurrency`` rows in flight at once."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise errors.ValidationError(
                f"concurrency must be an integer of at least 1, got {concurrency!r}",
                field="concurrency",
                value=concurrency,
            )
        return self._infer(data, timeout=timeout, metadata=metadata, concurrency=concurrency)

    def infer_from_file(
        self, path: str | os.PathLike[str], timeout: float = 15, *, metadata: bool = False
    ) -> Any:
        """Infer the rows of a file: Arrow IPC (``.arrow``, ``.feather``, ``.ipc``) or Parquet
        (a pyarrow Table back), or JSON records (``.json``: a list of objects; ``.jsonl``: one
        per line; a list of dicts back)."""
        data = read_file(path)
        return self.infer(data, timeout=timeout, metadata=metadata)

    def _infer(self, data: Any, *, timeout: float, metadata: bool, concurrency: int) -> Any:
        runtime = self._runtime
        if runtime is None:
            raise errors.ConflictError(
                f"pipeline {self.name!r} is not deployed; call deploy() first"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise errors.ValidationError(
                f"timeout must be a positive number of seconds, got {timeout!r}",
                field="timeout",
                value=timeout,
            )
        rows, kind = rows_of(data)
        table, failures, first = runtime.run(rows, timeout=float(timeout), concurrency=concurrency)
        if failures is not None and self.on_failure is not None:
            self.on_failure(failures)
        if table is not None and self.on_record is not None:
            self.on_record(table)
        if first is not None:
            step = runtime.definition.describe(self._name_of)
            where = step[first.step] if first.step < len(step) else f"{first.step}: {first.kind}"
            raise PipelineStepError(
                f"pipeline {self.name!r} version {runtime.version}: step {where} failed for "
                f"{failures.num_rows if failures is not None else 1} of {len(rows)} input(s): "
                f"{first.message}",
                step=first.step,
                failures=failures,
            )
        if table is None:
            table = pa.table({})
        if not metadata:
            table = table.select([c for c in table.column_names if not c.startswith("metadata.")])
        return as_kind(table, kind)

    # -- internals -----------------------------------------------------------------------------

    def _prepare(self, definition: PipelineDefinition) -> list[Check]:
        if not any(isinstance(s, _ANSWERING) for s in definition.steps):
            raise errors.ValidationError(
                f"pipeline {self.name!r} has no step that calls a service; add one "
                "(add_model_step, add_key_split, ...) before deploying",
                field="steps",
            )
        for service in definition.services():
            self._service(service)
        checks = [parse_check(k, v) for k, v in definition.checks().items()]
        known = self._known_columns(definition.steps)
        for check in checks:
            self._check_columns(check, known)
        return checks

    def _start(self, version: PipelineVersion, checks: list[Check], replicas: int) -> None:
        from assay.schema.requests import InferenceSessionCreateRequest

        self.undeploy()
        sessions = self._platform.inferencesessions
        callers = {}
        try:
            for service in version.definition.services():
                created = sessions.create(
                    InferenceSessionCreateRequest(
                        account=self.account, inferenceService=service, replicas=replicas
                    )
                )
                self._sessions.append(created.inferencesession.id)
                client = sessions.client(created.inferencesession.id, created.token)
                callers[service] = client.infer
        except BaseException:
            self.undeploy()
            raise
        self._runtime = Runtime(
            pipeline=self.name,
            version=version.version,
            definition=version.definition,
            callers=callers,
            names={s: self._name_of(s) for s in version.definition.services()},
            checks=checks,
            nullable=frozenset(self._known_columns(version.definition.steps) or ()),
        )
        self._deployed = version

    def _add(self, step: Step) -> Pipeline:
        self._steps.append(step)
        return self

    def _replace(self, index: int, step: Step) -> Pipeline:
        self._steps[self._index(index)] = step
        return self

    def _index(self, index: int) -> int:
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not 0 <= index < len(self._steps)
        ):
            raise errors.ValidationError(
                f"pipeline {self.name!r} has no step {index!r}; its steps are numbered 0 to "
                f"{len(self._steps) - 1}"
                if self._steps
                else f"pipeline {self.name!r} has no steps",
                field="index",
                value=index,
            )
        return index

    def _service(self, service: Any, field: str = "service") -> str:
        """The id of ``service`` (an id or an entity), checked to exist and be Ready."""
        from assay.schema.status import Status

        id = service if isinstance(service, str) else getattr(service, "id", None)
        if not isinstance(id, str):
            raise errors.ValidationError(
                f"{field} must be an InferenceService or its id, got {type(service).__name__}",
                field=field,
            )
        try:
            entity = self._platform.inferenceservices.get(id)
        except errors.NotFoundError:
            raise errors.NotFoundError(
                f"pipeline {self.name!r}: {field} {id!r} is not an InferenceService of this "
                "platform; create it first (e.g. inferenceservices.create_mock(...))"
            ) from None
        if entity.status != Status.Ready:
            raise errors.ValidationError(
                f"pipeline {self.name!r}: InferenceService {entity.name!r} ({id}) is not ready "
                f"(status {entity.status}); wait for it or fix it before adding it",
                field=field,
                value=id,
            )
        self._names[id] = entity.name
        return id

    def _name_of(self, id: str) -> str:
        if id not in self._names:
            try:
                self._names[id] = self._platform.inferenceservices.get(id).name
            except errors.NotFoundError:
                return id
        return self._names[id]

    def _model_step(self, service: Any) -> ModelStep:
        return ModelStep(service=self._service(service))

    def _multi_model_step(self, services: Sequence[Any]) -> MultiModelStep:
        if isinstance(services, str) or not services:
            raise errors.ValidationError(
                "services must be a non-empty list of InferenceServices or ids", field="services"
            )
        return MultiModelStep(services=[self._service(s, "services") for s in services])

    def _audit_step(self, slice: str) -> AuditStep:
        start, stop = parse_slice(slice)
        return AuditStep(start=start, stop=stop)

    def _select_step(self, index: int) -> SelectStep:
        if isinstance(index, bool) or not isinstance(index, int):
            raise errors.ValidationError(
                f"select index must be an integer, got {index!r}", field="index", value=index
            )
        return SelectStep(index=index)

    def _key_split_step(self, default: Any, meta_key: str, options: dict[Any, Any]) -> KeySplitStep:
        if not isinstance(meta_key, str) or not meta_key:
            raise errors.ValidationError(
                f"meta_key must name an input field, got {meta_key!r}", field="meta_key"
            )
        if not isinstance(options, dict):
            raise errors.ValidationError(
                f"options must be a dict of input value → service, got {type(options).__name__}",
                field="options",
            )
        return KeySplitStep(
            default=self._service(default, "default"),
            meta_key=meta_key,
            options=[
                (value, self._service(s, f"options[{value!r}]")) for value, s in options.items()
            ],
        )

    def _random_split_step(
        self, weighted: Sequence[tuple[float, Any]], hash_key: str | None
    ) -> RandomSplitStep:
        if isinstance(weighted, str) or not weighted:
            raise errors.ValidationError(
                "weighted must be a non-empty list of (weight, service) pairs", field="weighted"
            )
        pairs: list[tuple[float, str]] = []
        for i, pair in enumerate(weighted):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise errors.ValidationError(
                    f"weighted[{i}] must be a (weight, service) pair, got {pair!r}",
                    field="weighted",
                )
            weight, service = pair
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not weight > 0
                or weight == float("inf")
            ):
                raise errors.ValidationError(
                    f"weighted[{i}]: weight {weight!r} is not a positive finite number; weights "
                    "are relative (1 and 2 send about a third and two thirds)",
                    field="weighted",
                    value=weight,
                )
            pairs.append((float(weight), self._service(service, f"weighted[{i}]")))
        if hash_key is not None and (not isinstance(hash_key, str) or not hash_key):
            raise errors.ValidationError(
                f"hash_key must name an input field or be None, got {hash_key!r}", field="hash_key"
            )
        return RandomSplitStep(weighted=pairs, hash_key=hash_key)

    def _shadow_step(self, champion: Any, challengers: Sequence[Any]) -> ShadowStep:
        if isinstance(challengers, str) or not challengers:
            raise errors.ValidationError(
                "challengers must be a non-empty list of InferenceServices or ids",
                field="challengers",
            )
        ids = [self._service(c, "challengers") for c in challengers]
        prefixes = [column_prefix(self._name_of(c)) for c in ids]
        clash = sorted({p for p in prefixes if prefixes.count(p) > 1})
        if clash:
            raise errors.ValidationError(
                f"challengers {clash} would share the output columns {clash}: their services "
                "have the same name; give them distinct names",
                field="challengers",
            )
        return ShadowStep(champion=self._service(champion, "champion"), challengers=ids)

    def _validations_step(
        self, checks: dict[str, str], *, replacing: int | None
    ) -> ValidationsStep:
        if not checks:
            raise errors.ValidationError(
                "add_validations needs at least one named check, e.g. "
                "add_validations(high='out.score > 0.9')",
                field="validations",
            )
        parsed = [parse_check(k, v) for k, v in checks.items()]
        taken = {
            name
            for i, step in enumerate(self._steps)
            if isinstance(step, ValidationsStep) and i != replacing
            for name in step.checks
        }
        for check in parsed:
            if check.name in taken:
                raise errors.ValidationError(
                    f"a validation named {check.name!r} exists already; choose another name or "
                    "replace its step with replace_with_validations",
                    field="validations",
                    value=check.name,
                )
        known = self._known_columns(self._steps)
        for check in parsed:
            self._check_columns(check, known)
        return ValidationsStep(checks=dict(checks))

    def _known_columns(self, steps: Sequence[Step]) -> set[str] | None:
        """The ``out.*`` and ``out_<name>.*`` columns the services declare (None: no step
        answers yet, or a service's schema is unknown)."""
        answering = [s for s in steps if isinstance(s, _ANSWERING)]
        if not answering:
            return None
        last = answering[-1]
        known: set[str] = set()
        services = [last.champion] if isinstance(last, ShadowStep) else last.services()
        for service in services:
            fields = self._output_fields(service)
            if fields is None:
                return None
            known |= {f"out.{f}" for f in fields}
        for step in steps:
            if isinstance(step, ShadowStep):
                for challenger in step.challengers:
                    fields = self._output_fields(challenger)
                    if fields is None:
                        return None
                    prefix = column_prefix(self._name_of(challenger))
                    known |= {f"{prefix}.{f}" for f in fields} | {f"{prefix}.error"}
        return known

    def _output_fields(self, service: str) -> list[str] | None:
        try:
            schema = self._platform.inferenceservices.get(
                service
            ).interface.outputSchema.arrow_schema()
            item = schema.field("responses").type.value_type
        except Exception:  # a schema we cannot read: the columns are checked at inference
            return None
        return [
            name
            for field in item
            for name in _field_names(field.name, field.type)
            if field.name != "_response_index_"
        ]

    def _check_columns(self, check: Check, known: set[str] | None) -> None:
        for column in sorted(check.columns):
            if column.startswith(("in.", "metadata.")):
                continue
            if not column.startswith(("out.", "out_")):
                raise errors.ValidationError(
                    f"validation {check.name!r} ({check.source!r}) refers to {column!r}; columns "
                    "start with in., out., out_<challenger>. or metadata.",
                    field=f"validations.{check.name}",
                    value=check.source,
                )
            if known is not None and _EXTRA_OUTPUT.sub("out.", column) not in known:
                raise errors.ValidationError(
                    f"validation {check.name!r} ({check.source!r}) refers to unknown column "
                    f"{column!r}; the services' output columns are: {', '.join(sorted(known))}",
                    field=f"validations.{check.name}",
                    value=check.source,
                )

    def __repr__(self) -> str:
        deployed = self._deployed.version if self._deployed else None
        return (
            f"Pipeline(name={self.name!r}, steps={len(self._steps)}, deployed_version={deployed})"
        )


def _field_names(name: str, type: pa.DataType) -> list[str]:
    if pa.types.is_struct(type) and type.num_fields:
        return [f"{name}.{sub}" for child in type for sub in _field_names(child.name, child.type)]
    return [name]
