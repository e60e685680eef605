"""Sessions end to end on LocalPlatform: mocks, tokens, expiry, termination, adapters."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conftest import ACCOUNT

from assay import errors
from assay.local import LocalPlatform, mocks
from assay.schema.requests import InferenceSessionCreateRequest
from assay.schema.status import Reason, Status


def _session(platform: LocalPlatform, service_id: str, **kwargs: object) -> tuple[str, str]:
    created = platform.inferencesessions.create(
        InferenceSessionCreateRequest(account=ACCOUNT, inferenceService=service_id, **kwargs)  # type: ignore[arg-type]
    )
    return created.inferencesession.id, created.token


def test_mock_session_answers_through_the_interface(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 1}
    )
    assert (
        service.status == Status.Ready
        and service.runner is not None
        and service.runner.kind == "mock"
    )
    session_id, token = _session(platform, service.id, replicas=2)
    session = platform.inferencesessions.get(session_id)
    assert (session.status, session.message) == (Status.Ready, "2 replicas ready")
    assert platform.inferencesessions.ready(session_id)
    client = platform.inferencesessions.client(session_id, token)
    replies = client.infer({"text": "Open the pod bay doors, Hal!"})
    assert len(replies) == 2
    assert all(r["text"].startswith("Open the pod bay doors, Hal!") for r in replies)
    raw = platform.inferencesessions.infer(session_id, "generate", {"text": "x"})
    assert len(raw) == 2 and all(r["text"].startswith("x") for r in raw)


def test_unknown_endpoint_names_the_endpoints(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session_id, token = _session(platform, service.id)
    client = platform.inferencesessions.client(session_id, token, endpoint="summarise")
    with pytest.raises(errors.ValidationError) as info:
        client.infer({"text": "x"})
    assert "summarise" in str(info.value) and "generate" in str(info.value)


def test_tokens_are_checked(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    first, token = _session(platform, service.id)
    second, _ = _session(platform, service.id)
    with pytest.raises(errors.PermissionDeniedError) as info:
        platform.inferencesessions.client(second, token)
    assert second in str(info.value)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(errors.AuthenticationError):
        platform.inferencesessions.client(first, tampered)
    with pytest.raises(errors.AuthenticationError):
        platform.inferencesessions.client(first, "not-a-token")
    short = platform.inferencesessions.token(
        first, expires=datetime.now(UTC) + timedelta(seconds=3)
    )
    client = platform.inferencesessions.client(first, short)
    assert client.infer({"text": "x"})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.infer({"text": "x"})
        except errors.AuthenticationError as exc:
            assert "expired" in str(exc)
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the token never expired")


def test_tokens_from_another_platform_are_refused(tmp_path: Path, platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session_id, _ = _session(platform, service.id)
    with LocalPlatform(storage_root=tmp_path / "other") as other:
        other_service = other.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
        foreign_token = _session(other, other_service.id)[1]
    with pytest.raises(errors.AuthenticationError) as info:
        platform.inferencesessions.client(session_id, foreign_token)
    assert "signature" in str(info.value)


def test_terminate_and_expiry(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    session_id, token = _session(platform, service.id)
    client = platform.inferencesessions.client(session_id, token)
    terminated = platform.inferencesessions.terminate(session_id)
    assert (terminated.status, terminated.reason) == (Status.Terminated, Reason.TerminateCommand)
    assert not platform.inferencesessions.ready(session_id)
    # an ended session is a conflict (no retry makes it answer), not "unavailable"
    with pytest.raises(errors.ConflictError) as info:
        platform.inferencesessions.client(session_id, token).infer({"text": "x"})
    assert "Terminated" in str(info.value) and "start a new one" in str(info.value)
    del client

    expires = datetime.now(UTC) + timedelta(seconds=1)
    session_id, _ = _session(platform, service.id, expires=expires)
    assert platform.inferencesessions.get(session_id).status == Status.Ready
    deadline = time.monotonic() + 10
    while platform.inferencesessions.ready(session_id):
        assert time.monotonic() < deadline, "the session never expired"
        time.sleep(0.05)
    expired = platform.inferencesessions.get(session_id)
    assert (expired.status, expired.reason) == (Status.Terminated, Reason.Expired)


def test_token_never_outlives_its_session(platform: LocalPlatform) -> None:
    import base64
    import json

    service = platform.inferenceservices.create_mock(mocks.TextCompletion, account=ACCOUNT)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    session_id, token = _session(platform, service.id, expires=expires)
    body = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["exp"] <= expires.timestamp()
    assert claims["sub"] == f"InferenceSession/{session_id}"
    with pytest.raises(errors.ValidationError):
        platform.inferencesessions.token(session_id, expires=datetime.now() + timedelta(hours=1))


def test_reply_that_breaks_the_output_schema_names_the_field(platform: LocalPlatform) -> None:
    service = platform.inferenceservices.create_mock(
        mocks.Faulty, account=ACCOUNT, kwargs={"malformed_rate": 1.0, "seed": 3}
    )
    session_id, token = _session(platform, service.id)
    client = platform.inferencesessions.client(session_id, token)
    with pytest.raises(errors.ValidationError) as info:
        client.infer({"text": "x"})
    assert "response" in str(info.value)


def test_bad_runner_configurations_are_refused(platform: LocalPlatform) -> None:
    from tests.conftest import service_request

    request = service_request()
    request["runner"] = {"kind": "teleport"}
    with pytest.raises(errors.ValidationError) as info:
        platform.inferenceservices.create(request)
    assert "teleport" in str(info.value) and "http" in str(info.value)
    request["runner"] = {"kind": "http", "configuration": {}}
    with pytest.raises(errors.ValidationError) as info:
        platform.inferenceservices.create(request)
    assert "runner.configuration.url" in str(info.value)
    request["runner"] = {"kind": "mock", "configuration": {"mockType": "nowhere.Nothing"}}
    with pytest.raises(errors.ValidationError) as info:
        platform.inferenceservices.create(request)
    assert "nowhere" in str(info.value)
    assert platform.inferenceservices.query() == []


def test_run_evaluation_yields_output_batches(platform: LocalPlatform, tmp_path: Path) -> None:
    from tests.conftest import ready_dataset

    dataset_id = ready_dataset(platform, tmp_path / "data", rows=10)
    service = platform.inferenceservices.create_mock(
        mocks.TextCompletion, account=ACCOUNT, kwargs={"seed": 2}
    )
    session_id, token = _session(platform, service.id)
    client = platform.inferencesessions.client(session_id, token)
    batches = list(
        client.run_evaluation(platform.datasets.open(dataset_id), id="e" * 32, replications=2)
    )
    rows = [r for b in batches for r in b.to_pylist()]
    assert len(rows) == 20
    assert {r["_index_"] for r in rows} == set(range(10))
    assert len({r["_replication_"] for r in rows}) == 2
    assert all([x["_response_index_"] for x in r["responses"]] == [0, 1] for r in rows)
