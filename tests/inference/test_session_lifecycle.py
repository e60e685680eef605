"""A session's end, whoever ends it: clients made before refuse inference once it is
terminated, deleted or expired; every Ready session past its ``expires`` is Terminated
(Expired), whatever its runner; a create with ``expires`` in the past writes nothing; and the
session's workflow log tells what happened to its replicas."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.conftest import ACCOUNT, evaluation_request, ready_dataset, until

from assay import errors
from assay.engine.logs import read_workflow_log
from assay.inference.sessions import STATUS_CHECK_INTERVAL
from assay.local import LocalPlatform, mocks
from assay.schema.dataschema import DataSchema
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Reason, Status

ECHO = """
import os

class Echo:
    endpoints = ["echo"]

    def infer(self, endpoint, request):
        return [{"text": request["text"].upper(), "pid": os.getpid()}]
"""


def _session(platform: LocalPlatform, service_id: str, **kwargs: Any) -> tuple[str, str]:
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service_id, **kwargs)
    )
    return created.inferencesession.id, created.token


def _refusal(call: Callable[[], Any]) -> str | None:
    """The message of the ConflictError ``call`` raises; None while it answers."""
    try:
        call()
    except errors.ConflictError as exc:
        return str(exc)
    return None


def _log(platform: LocalPlatform, session_id: str) -> list[str]:
    return [line["message"] for line in read_workflow_log(platform.core.storage, session_id)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("end", ["terminate", "delete"])
def test_a_client_made_before_refuses_an_ended_session(platform: LocalPlatform, end: str) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session_id, token = _session(platform, service.id)
    client = platform.inferencesessions.client(session_id, token)
    assert client.infer({"text": "x"})
    getattr(platform.inferencesessions, end)(session_id)
    message = until(
        lambda: _refusal(lambda: client.infer({"text": "x"})),
        STATUS_CHECK_INTERVAL * 4,
        "the old client still answers",
    )
    state = "Terminated (TerminateCommand)" if end == "terminate" else "Deleted (DeleteCommand)"
    assert message == f"InferenceSession {session_id} is {state}; start a new one"
    # refused for good, on every way in
    assert _refusal(lambda: client.infer_many([{"text": "x"}])) == message
    raw = _refusal(lambda: platform.inferencesessions.infer(session_id, "generate", {"text": "x"}))
    assert raw is not None and state.split()[0] in raw


def test_every_ready_session_past_its_expiry_is_terminated(platform: LocalPlatform) -> None:
    """A mock session (no process of ours serves it) expires too, without anyone reading it."""
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    session_id, token = _session(platform, service.id, expires=expires)
    client = platform.inferencesessions.client(session_id, token)
    store = platform.core.store

    def stored_status() -> Any:
        record = store.get(session_id)
        return record is not None and record.doc["status"] == Status.Terminated and record.doc

    doc = until(stored_status, 5, "the expired session was not terminated")
    assert doc["reason"] == Reason.Expired and "expired at" in doc["message"]
    until(  # written just after the status
        lambda: any(line.startswith("expired at") for line in _log(platform, session_id)),
        5,
        "the expiry was not logged",
    )
    message = _refusal(lambda: client.infer({"text": "x"}))
    assert message == f"InferenceSession {session_id} is Terminated (Expired); start a new one"


def test_get_shows_an_expired_session_terminated_at_once(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session_id, _ = _session(platform, service.id)
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")

    def set_expired(doc: dict[str, Any]) -> dict[str, Any]:
        doc["expires"] = past
        return doc

    platform.core.store.update(session_id, set_expired)
    session = platform.inferencesessions.get(session_id)
    assert (session.status, session.reason) == (Status.Terminated, Reason.Expired)
    assert [s.status for s in platform.inferencesessions.query(id=session_id)] == ["Terminated"]


def test_a_create_with_expires_in_the_past_writes_nothing(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    past = datetime.now(UTC) - timedelta(minutes=5)
    with pytest.raises(errors.ValidationError) as info:
        _session(platform, service.id, expires=past)
    assert info.value.field == "expires"
    message = str(info.value)
    assert "InferenceSession create request" in message and "in the past" in message
    assert "timedelta(hours=1)" in message  # the fix
    assert platform.inferencesessions.query() == []
    assert list(platform.core.store.iter_query(kind="InferenceSession")) == []

    dataset = ready_dataset(platform, tmp_path / "data", rows=3)
    request: dict[str, Any] = evaluation_request(dataset, service.id)
    request["inferenceSession"]["expires"] = past
    with pytest.raises(errors.ValidationError) as info:
        platform.evaluations.create(request)
    assert info.value.field == "inferenceSession.expires"
    assert platform.evaluations.query() == []


@pytest.fixture
def echo_service(platform: LocalPlatform, tmp_path: Path) -> str:
    package = tmp_path / "pkg"
    (package / "lifecycleecho").mkdir(parents=True)
    (package / "lifecycleecho" / "__init__.py").write_text(ECHO)
    module = platform.modules.upload_package(
        platform.modules.create_package(package, account=ACCOUNT, name="echo"), package
    )
    schema = DataSchema.make_output_schema(pa.schema([pa.field("text", pa.string())]))
    return platform.inferenceservices.create(
        {
            "account": ACCOUNT,
            "name": "echo",
            "runner": {
                "kind": "python",
                "configuration": {"module": module.id, "target": "lifecycleecho:Echo"},
            },
            "interface": {"endpoint": "echo", "outputSchema": schema.model_dump(by_alias=True)},
        }
    ).id


def test_the_workflow_log_tells_what_happened_to_the_replicas(
    platform: LocalPlatform, echo_service: str
) -> None:
    session_id, _token = _session(platform, echo_service, replicas=2)
    lines = _log(platform, session_id)
    assert lines[:2] == [
        "replica 0 starting (python, target lifecycleecho:Echo)",
        "replica 1 starting (python, target lifecycleecho:Echo)",
    ]
    ready = [
        re.fullmatch(r"replica (\d) ready at http://127\.0\.0\.1:\d+ \(pid (\d+)\)", x)
        for x in lines[2:]
    ]
    assert all(ready) and [m.group(1) for m in ready if m] == ["0", "1"], lines
    pid = int(ready[1].group(2)) if ready[1] else 0
    os.kill(pid, signal.SIGKILL)
    until(
        lambda: any(
            x.startswith("replica 1 exited with code -9") for x in _log(platform, session_id)
        ),
        10,
        "the replica's exit was not logged",
    )
    assert platform.inferencesessions.get(session_id).reason == Reason.ReplicaFailed

    other, _ = _session(platform, echo_service)
    platform.inferencesessions.terminate(other)
    assert _log(platform, other)[-1] == "terminated: TerminateCommand"


def test_deleting_a_session_stops_its_replicas(platform: LocalPlatform, echo_service: str) -> None:
    session_id, token = _session(platform, echo_service)
    client = platform.inferencesessions.client(session_id, token)
    pid = client.infer({"text": "hi"})[0]["pid"]
    platform.inferencesessions.delete(session_id)
    until(lambda: not _alive(pid), 10, "the replica still runs after the delete")
    assert platform.inferencesessions.get(session_id).status == Status.Deleted
    assert _refusal(lambda: client.infer({"text": "x"})) == (
        f"InferenceSession {session_id} is Deleted (DeleteCommand); start a new one"
    )
    assert _log(platform, session_id)[-1] == "deleted: replicas stopped"


def test_resume_ends_the_sessions_that_expired_meanwhile(tmp_path: Path) -> None:
    root = tmp_path / "platform"
    with LocalPlatform(storage_root=root, account=ACCOUNT) as first:
        service = first.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
        session_id, _ = _session(first, service.id, expires=datetime.now(UTC) + timedelta(hours=1))
    with LocalPlatform(storage_root=root, account=ACCOUNT) as second:
        store = second.core.store
        assert store.require(session_id).doc["status"] == Status.Ready  # mocks: left Ready
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
        store.update(session_id, lambda doc: {**doc, "expires": past})
        second.resume()
        doc = store.require(session_id).doc
        assert (doc["status"], doc["reason"]) == (Status.Terminated, Reason.Expired)
