"""Retries of transient failures (408/429/502/503/504 and lost connections) honouring
``Retry-After`` within a total budget, only where a retry is safe; downloads that are
interrupted or corrupt."""

from __future__ import annotations

import hashlib
import socket
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from tests.client.scripted import Answer, Script, scripted_server

from assay import errors
from assay.client import Client, Retries
from assay.client._retries import parse_retry_after

ID = "a" * 32


def _client(script: Script, tmp_path: Path, **kwargs: object) -> Client:
    kwargs.setdefault("progress", False)
    return Client(script.url, "token", cache_dir=tmp_path / "cache", **kwargs)  # type: ignore[arg-type]


def test_503_with_retry_after_twice_then_200(tmp_path: Path) -> None:
    with scripted_server() as script:
        busy = Answer(503, {"detail": "starting"}, {"Retry-After": "0.2"})
        script.on("GET", "/v0/datasets", busy, busy, Answer(200, []))
        with _client(script, tmp_path) as client:
            started = time.monotonic()
            assert client.datasets.query(name="x") == []
            elapsed = time.monotonic() - started
        assert script.count("GET", "/v0/datasets") == 3
        assert elapsed >= 0.4  # waited what the server asked for, twice
        _, path, headers, _ = script.requests[-1]
        assert path == "/v0/datasets?name=x" and headers["Authorization"] == "Bearer token"


def test_post_is_retried_only_when_the_server_did_nothing(tmp_path: Path) -> None:
    path = f"/v0/inferencesessions/{ID}/token"
    with scripted_server() as script, _client(script, tmp_path) as client:
        script.on(
            "POST", path, Answer(503, {"detail": "busy"}, {"Retry-After": "0"}), Answer(200, "tok")
        )
        assert client.inferencesessions.token(ID) == "tok"
        assert script.count("POST", path) == 2
        script.requests.clear()
        script.on("POST", path, Answer(502, b"<html>bad gateway</html>"), Answer(200, "tok"))
        with pytest.raises(
            errors.UnavailableError, match="HTTP 502 Bad Gateway: <html>bad gateway"
        ):
            client.inferencesessions.token(ID)
        assert script.count("POST", path) == 1  # the proxy may have passed it on: not again
        script.requests.clear()
        script.on(
            "GET",
            f"/v0/inferencesessions/{ID}",
            Answer(504, {"detail": "slow"}),
            Answer(404, {"detail": "gone"}),
        )
        with pytest.raises(errors.NotFoundError, match="gone"):
            client.inferencesessions.require(ID)  # a GET is retried after 504 too
        assert script.count("GET", f"/v0/inferencesessions/{ID}") == 2


def test_retries_are_bounded_by_the_total(tmp_path: Path) -> None:
    with scripted_server() as script:
        script.on("GET", "/v0/models", Answer(429, {"detail": "slow down"}, {"Retry-After": "0.1"}))
        with _client(script, tmp_path, retries=Retries(attempts=100, total=0.5)) as client:
            started = time.monotonic()
            with pytest.raises(
                errors.UnavailableError, match=r"slow down \(tried \d+ times"
            ) as info:
                client.models.query()
            assert time.monotonic() - started < 1.5
        assert 3 <= script.count("GET", "/v0/models") <= 6
        assert info.value.retry_after == pytest.approx(0.1)
        # a Retry-After beyond the budget is not waited for at all
        script.requests.clear()
        script.on("GET", "/v0/models", Answer(503, {"detail": "later"}, {"Retry-After": "30"}))
        with _client(script, tmp_path, retries=Retries(total=5)) as client:
            started = time.monotonic()
            with pytest.raises(errors.UnavailableError, match="later") as info:
                client.models.query()
            assert time.monotonic() - started < 1
        assert info.value.retry_after == 30 and script.count("GET", "/v0/models") == 1
        with _client(script, tmp_path, retries=0) as client, pytest.raises(errors.UnavailableError):
            client.models.query()


def test_connection_failures_name_the_endpoint(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    retries = Retries(attempts=3, backoff=0.01)
    with Client(f"http://127.0.0.1:{port}/", "token", retries=retries) as client:
        assert client.endpoint == f"http://127.0.0.1:{port}/v0"
        with pytest.raises(errors.UnavailableError) as info:
            client.datasets.get(ID)
        message = str(info.value)
        assert f"cannot reach the Assay server at http://127.0.0.1:{port}/v0" in message
        assert "tried 3 times" in message and "ASSAY_API_ENDPOINT" in message
        with pytest.raises(errors.UnavailableError, match="tried 3 times"):
            client.families.create({"account": "alice", "memberKind": "Dataset"})


def test_downloads_are_retried_verified_and_atomic(tmp_path: Path) -> None:
    data = b"0123456789" * 1000
    digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
    with scripted_server() as script, _client(script, tmp_path) as client:
        link = {
            "artifact": {
                "kind": "parquet",
                "path": "dir/part-0.parquet",
                "digest": {"md5": digest},
            },
            "signedURL": {
                "url": f"{script.url}/v0/storage/x?signature=secret",
                "method": "GET",
                "headers": {},
            },
        }
        script.on("GET", f"/v0/datasets/{ID}/downlinks", Answer(200, [link]))
        script.on("GET", "/v0/storage/x", Answer(200, data, send_only=100), Answer(200, data))
        (path,) = client.datasets.download(ID, tmp_path / "out")
        assert path == tmp_path / "out" / "dir" / "part-0.parquet" and path.read_bytes() == data
        assert script.count("GET", "/v0/storage/x") == 2  # the cut-off transfer was tried again
        storage = [r for r in script.requests if r[1].startswith("/v0/storage/")]
        assert all("Authorization" not in headers for _, _, headers, _ in storage)

        script.on("GET", "/v0/storage/x", Answer(200, b"something else"))
        with pytest.raises(errors.DataIntegrityError, match=f"declared {digest}"):
            client.datasets.download(ID, tmp_path / "bad")
        assert not [p for p in (tmp_path / "bad").rglob("*") if p.is_file()]

        link["artifact"]["path"] = "../escape"
        with pytest.raises(errors.PlatformError, match="unsafe artifact path"):
            client.datasets.download(ID, tmp_path / "escape")
        script.on("GET", "/v0/storage/x", Answer(200, data, send_only=10))
        link["artifact"]["path"] = "ok"
        impatient = _client(script, tmp_path, retries=Retries(attempts=2, backoff=0))
        with (
            impatient,
            pytest.raises(errors.UnavailableError, match=r"'ok'.*tried 2 times") as info,
        ):
            impatient.datasets.download(ID, tmp_path / "cut")
        assert "secret" not in str(info.value)  # signatures stay out of messages


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-1") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (parse_retry_after(when) or 0) <= 30


def test_retries_settings() -> None:
    assert Retries.of(None) == Retries()
    assert Retries.of(0).attempts == 1 and Retries.of(3).attempts == 4
    with pytest.raises(errors.ValidationError, match="at least 1"):
        Retries(attempts=0)
    with pytest.raises(errors.ValidationError, match="total"):
        Retries(total=-1)
    with pytest.raises(errors.ValidationError, match="retries must be"):
        Retries.of("many")  # type: ignore[arg-type]
