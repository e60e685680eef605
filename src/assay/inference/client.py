"""The session client: calls a session's replicas through the interface's adapters.

``infer(body)`` returns one element per item the output pipeline yields — the same for a mock,
a local replica process or a remote service: a reply that is a JSON array is a stream of its
items, a reply that is an object is a stream of one, and nothing else is flattened. Calls are
spread over the replicas in turn.

Replies are checked against the shape of what the output pipeline yields: the interface's
``outputSchema`` describes the items its own ``outputPipeline`` makes, so it is the check when
that pipeline is used. An ``output_adapter`` given to ``inferencesessions.client(...)``
overrides the pipeline, and the items it makes are not described by ``outputSchema``; then
each item is only checked to be a JSON object (see :meth:`InferenceSessionClient.for_interface`).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from assay import errors
from assay.inference.runners.base import ReplicaHandle
from assay.schema import ids

if TYPE_CHECKING:
    import httpx
    import pyarrow
    import pyarrow.dataset

    from assay.schema.adapters import Adapter
    from assay.schema.platform import InferenceInterface

__all__ = [
    "InferenceSessionClient",
    "ReplicaCaller",
    "StatusCheck",
    "check_objects",
    "check_reply",
]

JSONObject = dict[str, Any]


def _stream(reply: Any) -> Iterator[Any]:
    if isinstance(reply, list):
        yield from reply
    else:
        yield reply


class StatusCheck(Protocol):
    """Raises when a session may no longer be used (it ended); cheap unless ``force``d to
    look now (a call failed: was it because the session ended?)."""

    def __call__(self, *, force: bool = False) -> None: ...


class ReplicaCaller:
    """Sends one request to the next replica in turn (thread-safe). ``check``, where given,
    runs before every call, and again (forced) when a replica cannot be reached: it raises
    when the session has ended (:meth:`assay.inference.sessions.SessionManager.status_check`)."""

    def __init__(
        self,
        handles: list[ReplicaHandle],
        *,
        timeout: float = 30.0,
        what: str = "session",
        check: StatusCheck | None = None,
    ) -> None:
        if not handles:
            raise errors.UnavailableError(f"{what} has no replicas running", retry_after=1)
        self._handles = handles
        self._cycle = itertools.cycle(range(len(handles)))
        self._lock = threading.Lock()
        self._timeout = timeout
        self._http: httpx.Client | None = None
        self._what = what
        self._check = check

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            with self._lock:  # two threads' first calls must not make two clients
                if self._http is None:
                    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
                    self._http = httpx.Client(timeout=self._timeout, limits=limits)
        return self._http

    def next(self) -> ReplicaHandle:
        with self._lock:
            return self._handles[next(self._cycle)]

    def call(self, endpoint: str, request: JSONObject) -> Any:
        """The service's reply (decoded JSON) to one request."""
        if self._check is None:
            return self._call(endpoint, request)
        self._check()
        try:
            return self._call(endpoint, request)
        except errors.UnavailableError:
            self._check(force=True)  # the session ended (its replicas were stopped)?
            raise

    def _call(self, endpoint: str, request: JSONObject) -> Any:
        handle = self.next()
        if handle.style == "inprocess":
            return handle.service.infer(endpoint, request)
        path = f"/infer/{endpoint}" if handle.style == "replica" else f"/{endpoint.lstrip('/')}"
        return self._post(handle, path, request)

    def call_batch(self, endpoint: str, requests: list[JSONObject]) -> list[Any]:
        """One reply per request, in order; batched where the replica accepts batches."""
        if self._check is None:
            return self._call_batch(endpoint, requests)
        self._check()
        try:
            return self._call_batch(endpoint, requests)
        except errors.UnavailableError:
            self._check(force=True)
            raise

    def _call_batch(self, endpoint: str, requests: list[JSONObject]) -> list[Any]:
        handle = self.next()
        if handle.style == "inprocess":
            batch = getattr(handle.service, "infer_batch", None)
            if callable(batch):
                return list(batch(endpoint, requests))
            return [handle.service.infer(endpoint, r) for r in requests]
        if handle.style == "replica" and handle.batching:
            replies = self._post(handle, f"/batch/{endpoint}", requests)
            if not isinstance(replies, list) or len(replies) != len(requests):
                raise errors.PlatformError(
                    f"{self._what}: replica {handle.index} answered a batch of {len(requests)} with "
                    f"{len(replies) if isinstance(replies, list) else type(replies).__name__}"
                )
            return replies
        return [self._call(endpoint, r) for r in requests]

    def _post(self, handle: ReplicaHandle, path: str, body: Any) -> Any:
        import httpx

        url = f"{handle.url}{path}"
        try:
            reply = self._client().post(
                url,
                content=json.dumps(body),
                headers={
                    "Content-Type": "application/json",
                    **handle.headers,
                },
            )
        except httpx.TimeoutException:
            raise errors.UnavailableError(
                f"{self._what}: replica {handle.index} did not answer within {self._timeout:g} s",
                retry_after=1,
            ) from None
        except httpx.HTTPError as exc:
            raise errors.UnavailableError(
                f"{self._what}: replica {handle.index} at {handle.url} cannot be reached ({exc})",
                retry_after=1,
            ) from None
        if reply.status_code >= 400:
            detail = _detail(reply)
            if reply.status_code == 404:
                raise errors.ValidationError(f"{self._what}: {detail}", field="endpoint")
            if reply.status_code in (400, 422):
                raise errors.ValidationError(
                    f"{self._what}: the service refused the request: {detail}"
                )
            if reply.status_code in (401, 403):
                raise errors.AuthenticationError(
                    f"{self._what}: the service refused the credentials: {detail}"
                )
            if reply.status_code in (408, 429, 502, 503, 504):
                after = reply.headers.get("Retry-After")
                raise errors.UnavailableError(
                    f"{self._what}: the service is unavailable ({reply.status_code}): {detail}",
                    retry_after=float(after)
                    if after and after.replace(".", "", 1).isdigit()
                    else None,
                )
            raise errors.PlatformError(
                f"{self._what}: the service failed ({reply.status_code}): {detail}"
            )
        try:
            return reply.json()
        except ValueError:
            raise errors.ValidationError(
                f"{self._what}: the service's reply is not JSON: {reply.text[:200]!r}"
            ) from None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:300] or reply.reason_phrase
    if isinstance(body, dict):
        if "detail" in body:
            return str(body["detail"])
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:
            return str(error["message"])
    return json.dumps(body)[:300]


def check_objects(items: list[Any], what: str) -> None:
    """Refuse output items that are not JSON objects (the check of an ``output_adapter``
    override, whose items no schema describes)."""
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.ValidationError(
                f"{what}: response {i} is {type(item).__name__} ({json.dumps(item, default=repr)[:60]}), "
                "but the output adapter must yield JSON objects",
                field=f"responses[{i}]",
            )


def check_reply(items: list[Any], item_schema: pyarrow.Schema | None, what: str) -> None:
    """Refuse output items that do not fit the interface's output schema, naming the field."""
    if item_schema is None:
        return
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise errors.ValidationError(
                f"{what}: response {i} is {type(item).__name__}, expected a JSON object with fields "
                f"{', '.join(item_schema.names)}",
                field=f"responses[{i}]",
            )
        for field in item_schema:
            value = item.get(field.name)
            if value is None:
                if not field.nullable:
                    raise errors.ValidationError(
                        f"{what}: response {i} has no field {field.name!r}, which the output schema "
                        f"requires (got fields {', '.join(sorted(item)) or 'none'})",
                        field=f"responses[{i}].{field.name}",
                    )
                continue
            expected = _python_types(field.type)
            ok = expected is None or (
                isinstance(value, expected)
                and not (isinstance(value, bool) and bool not in expected)
            )
            if not ok:
                raise errors.ValidationError(
                    f"{what}: response {i} field {field.name!r} is {type(value).__name__} "
                    f"({json.dumps(value)[:60]}), but the output schema says {field.type}",
                    field=f"responses[{i}].{field.name}",
                )


def _python_types(t: pyarrow.DataType) -> tuple[type, ...] | None:
    """The JSON (Python) types a value of Arrow type ``t`` may have; None: not checked."""
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return (str,)
    if pa.types.is_integer(t):
        return (int,)
    if pa.types.is_floating(t):
        return (int, float)
    if pa.types.is_boolean(t):
        return (bool,)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return (list,)
    if pa.types.is_struct(t):
        return (dict,)
    return None


class InferenceSessionClient:
    """Makes inference calls to one session. Create it with
    ``inferencesessions.client(session_id, token, ...)``.

    ``output_schema`` is the schema of the items that ``output_adapter`` yields (an output
    schema with ``responses``, or the fields of one item); each item is checked against it.
    Without one, items are not checked, unless ``objects_only``: then each must be a JSON
    object."""

    def __init__(
        self,
        caller: ReplicaCaller,
        *,
        endpoint: str,
        input_adapter: Adapter | None = None,
        output_adapter: Adapter | None = None,
        output_schema: pyarrow.Schema | None = None,
        objects_only: bool = False,
        authorize: Callable[[], None] | None = None,
        what: str = "session",
    ) -> None:
        self._caller = caller
        self._endpoint = endpoint.strip("/")
        self._input = input_adapter
        self._output = output_adapter
        self._schema = output_schema
        self._item_schema = _item_schema(output_schema)
        self._objects_only = objects_only and output_schema is None
        self._authorize = authorize
        self._what = what

    @classmethod
    def for_interface(
        cls,
        caller: ReplicaCaller,
        interface: InferenceInterface,
        *,
        endpoint: str | None = None,
        input_adapter: Adapter | None = None,
        output_adapter: Adapter | None = None,
        authorize: Callable[[], None] | None = None,
        what: str = "session",
    ) -> InferenceSessionClient:
        """The client of ``inferencesessions.client(...)``: ``interface``'s endpoint and
        pipelines, each overridden by ``endpoint``, ``input_adapter`` and ``output_adapter``
        where given.

        Replies are checked as what the output pipeline in use yields. Without an
        ``output_adapter`` (or with one that is the interface's own ``outputPipeline``, spec
        for spec), that is ``interface.outputSchema``: a reply that does not fit it is an
        :class:`~assay.errors.ValidationError` naming the field. An ``output_adapter``
        override reshapes the replies into items that ``outputSchema`` does not describe, and
        an adapter does not declare the schema of what it yields; so the override's items are
        *not* checked against ``outputSchema`` (which would refuse a legitimate reshaping),
        only that each is a JSON object (a ``ValidationError`` otherwise). Check the fields
        you rely on yourself, or give ``interface=`` an ``outputSchema`` and
        ``outputPipeline`` that describe the override instead of passing ``output_adapter``.
        """
        from assay.schema.adapters import create_pipeline

        own_output = (
            create_pipeline([a.model_dump() for a in interface.outputPipeline])
            if interface.outputPipeline
            else None
        )
        if input_adapter is None and interface.inputPipeline:
            input_adapter = create_pipeline([a.model_dump() for a in interface.inputPipeline])
        schema = interface.outputSchema.arrow_schema() if interface.outputSchema else None
        overridden = output_adapter is not None and not _same_pipeline(output_adapter, own_output)
        if output_adapter is None:
            output_adapter = own_output
        return cls(
            caller,
            endpoint=endpoint or interface.endpoint,
            input_adapter=input_adapter,
            output_adapter=output_adapter,
            output_schema=None if overridden else schema,
            objects_only=overridden,
            authorize=authorize,
            what=what,
        )

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def _request(self, body: JSONObject) -> JSONObject:
        if not isinstance(body, dict):
            raise errors.ValidationError(
                f"{self._what}: an inference input must be a JSON object, got {type(body).__name__}"
            )
        if self._input is None:
            return body
        adapted = list(itertools.islice(self._input(iter([body])), 2))
        if len(adapted) != 1:
            raise errors.ValidationError(
                f"{self._what}: the input pipeline made {len(adapted)} requests from one input, expected one"
            )
        from assay.schema.adapters import as_file_upload

        if as_file_upload(adapted[0]) is not None:
            raise errors.ValidationError(
                f"{self._what}: file-upload input pipelines are not supported by this client yet"
            )
        request: JSONObject = adapted[0]
        return request

    def _responses(self, reply: Any) -> list[JSONObject]:
        stream: Iterable[Any] = _stream(reply)
        if self._output is not None:
            stream = self._output(iter(stream))
        items = list(stream)
        if self._objects_only:
            check_objects(items, self._what)
        else:
            check_reply(items, self._item_schema, self._what)
        return items

    def infer(self, body: JSONObject) -> list[JSONObject]:
        """One inference: ``body`` through the input pipeline to a replica, its reply through
        the output pipeline; one element per resulting item."""
        if self._authorize is not None:
            self._authorize()
        return self._responses(self._caller.call(self._endpoint, self._request(body)))

    def infer_many(self, bodies: list[JSONObject]) -> list[list[JSONObject]]:
        """Several inferences, batched where the replicas accept batches."""
        if self._authorize is not None:
            self._authorize()
        replies = self._caller.call_batch(self._endpoint, [self._request(b) for b in bodies])
        return [self._responses(r) for r in replies]

    def run_evaluation(
        self,
        input_dataset: pyarrow.dataset.Dataset,
        *,
        id: str,
        replications: int = 1,
        batch_size: int = 32,
    ) -> Iterator[pyarrow.RecordBatch]:
        """Infer every instance of ``input_dataset`` ``replications`` times, yielding output
        batches (``_index_``, ``_replication_``, ``responses``). A simple in-process loop for
        developing audits; evaluations at scale use the evaluation engine."""
        import pyarrow as pa

        schema = _output_schema(self._schema)
        replication_ids = [ids.replication_id(id, i) for i in range(replications)]
        for batch in input_dataset.to_batches(batch_size=batch_size):
            rows = batch.to_pylist()
            records: list[JSONObject] = []
            for replication in replication_ids:
                for row, responses in zip(rows, self.infer_many(rows), strict=True):
                    records.append(
                        {
                            "_index_": row["_index_"],
                            "_replication_": replication,
                            "responses": [
                                {**r, "_response_index_": i} for i, r in enumerate(responses)
                            ],
                        }
                    )
            yield pa.RecordBatch.from_pylist(records, schema=schema)

    def close(self) -> None:
        self._caller.close()

    def __enter__(self) -> InferenceSessionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _specs(adapter: Any) -> list[dict[str, Any]] | None:
    """The specs of the adapters ``adapter`` applies, pipelines flattened; None when one of
    them is not one of Assay's adapter kinds (its output cannot be compared)."""
    from assay.schema.adapters import BaseAdapter, Pipeline

    if isinstance(adapter, Pipeline):
        specs: list[dict[str, Any]] = []
        for inner in adapter.adapters:
            more = _specs(inner)
            if more is None:
                return None
            specs.extend(more)
        return specs
    if isinstance(adapter, BaseAdapter):
        try:
            return [adapter.to_spec()]
        except errors.ValidationError:
            return None
    return None


def _same_pipeline(adapter: Any, own: Any) -> bool:
    """True when ``adapter`` applies just the adapters of the interface's pipeline ``own``, so
    the interface's output schema describes what it yields."""
    if adapter is own:
        return True
    specs = _specs(adapter)
    return specs is not None and specs == (_specs(own) if own is not None else [])


def _item_schema(schema: pyarrow.Schema | None) -> pyarrow.Schema | None:
    """The fields of one response: the struct inside ``responses``, or the schema itself."""
    if schema is None:
        return None
    import pyarrow as pa

    if "responses" in schema.names:
        item = schema.field("responses").type.value_type
        return pa.schema([f for f in item if f.name != "_response_index_"])
    return pa.schema([f for f in schema if not f.name.startswith("_")])


def _output_schema(schema: pyarrow.Schema | None) -> pyarrow.Schema | None:
    if schema is None or "responses" in schema.names:
        return schema
    from assay.schema.dataset import make_output_schema

    return make_output_schema(schema).arrow_schema()
