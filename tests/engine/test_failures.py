"""A full disk fails a workflow with ``StorageFull`` and says where to free space; the final
status write is retried until it lands, under a claim kept alive meanwhile."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import evaluation_request, ready_dataset, service_request

from assay import errors
from assay.engine import WorkflowContext, WorkflowSpec
from assay.engine.failures import retryable, storage_full
from assay.local import LocalPlatform
from assay.schema.status import Reason, Status


def _no_space(path: str = "") -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), *([path] if path else []))


def _database_full() -> errors.PlatformError:
    """What the store raises when SQLite cannot grow its file: SQLAlchemy's error over
    sqlite3's, wrapped by the store."""
    orig = sqlite3.OperationalError("database or disk is full")
    wrapped = sa.exc.OperationalError("UPDATE entities ...", {}, orig)
    try:
        raise errors.PlatformError(f"the entity store failed: {orig}") from wrapped
    except errors.PlatformError as exc:
        return exc


def _wrapped(inner: BaseException) -> RuntimeError:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("writing part 3 failed") from exc
    except RuntimeError as outer:
        return outer
    raise AssertionError("unreachable")


def _context_only(inner: BaseException) -> RuntimeError:
    try:
        try:
            raise inner
        except BaseException:
            raise RuntimeError("cleaning up after a failed write failed")  # noqa: B904
    except RuntimeError as outer:
        return outer
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "make",
    [
        lambda: _no_space("/data/x.parquet"),
        lambda: OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)),
        lambda: _wrapped(_no_space()),
        lambda: _context_only(_no_space()),
        _database_full,
    ],
    ids=["ENOSPC", "EDQUOT", "cause", "context", "sqlite"],
)
def test_storage_full_is_found_anywhere_in_the_chain(make: Callable[[], BaseException]) -> None:
    exc = make()
    assert storage_full(exc) is not None
    assert retryable(exc)


def test_other_failures_are_not_storage_full() -> None:
    assert storage_full(OSError(errno.EACCES, "Permission denied")) is None
    assert storage_full(ValueError("no space left on the page")) is None
    assert retryable(errors.UnavailableError("busy"))
    assert not retryable(errors.PlatformError("the entity store is closed"))
    assert not retryable(KeyError("x"))


def _evaluation(platform: LocalPlatform, tmp_path: Path) -> dict[str, object]:
    dataset = ready_dataset(platform, tmp_path / "data")
    service = platform.inferenceservices.create(service_request())
    return evaluation_request(dataset, service.id)


@pytest.mark.parametrize("wrapped", [False, True], ids=["direct", "wrapped"])
def test_a_handler_that_hits_a_full_disk_fails_with_storage_full(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wrapped: bool
) -> None:
    storage = platform.core.storage
    request = _evaluation(platform, tmp_path)  # its Dataset written while the disk had room

    def put_bytes(entity_id: str, path: str, data: bytes) -> None:
        full = _no_space(str(platform.entity_path(entity_id) / path))
        if wrapped:
            raise RuntimeError("the part writer failed") from full
        raise full

    monkeypatch.setattr(storage, "put_bytes", put_bytes)

    def handler(ctx: WorkflowContext) -> None:
        ctx.storage.put_bytes(ctx.entity.id, "data/part-0.parquet", b"x" * 100)

    platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
    evaluation = platform.evaluations.create(request)
    assert (evaluation.status, evaluation.reason) == (Status.Failed, Reason.StorageFull)
    message = evaluation.message or ""
    assert message.startswith(f"Evaluation {evaluation.id} failed because the storage is full")
    assert f"{platform.entity_path(evaluation.id)}/data/part-0.parquet" in message
    assert "No space left on device, ENOSPC" in message
    assert f"free space in {platform.storage_root} (" in message and " free now)" in message
    assert "create the Evaluation again" in message
    assert platform.core.store.claim_owner(evaluation.id) is None  # released


def test_a_full_database_in_a_handler_names_the_store(
    platform: LocalPlatform, tmp_path: Path
) -> None:
    def handler(ctx: WorkflowContext) -> None:
        raise _database_full()

    platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
    evaluation = platform.evaluations.create(_evaluation(platform, tmp_path))
    assert (evaluation.status, evaluation.reason) == (Status.Failed, Reason.StorageFull)
    message = evaluation.message or ""
    assert "could not write to the entity store sqlite:///" in message
    assert "database or disk is full" in message
    assert f"free space in {platform.storage_root}" in message


@contextlib.contextmanager
def _failing_updates(
    platform: LocalPlatform, monkeypatch: pytest.MonkeyPatch, make: Callable[[], Exception]
) -> Iterator[dict[str, Any]]:
    """``store.update`` fails while ``state["left"] > 0`` (counted down per call)."""
    store = platform.core.store
    real = store.update
    state: dict[str, Any] = {"left": 0, "calls": 0, "stolen": []}

    def update(*args: Any, **kwargs: Any) -> Any:
        if state["left"] > 0:
            state["left"] -= 1
            state["calls"] += 1
            hook = state.get("each")
            if hook is not None:
                hook()
            raise make()
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "update", update)
    yield state


def test_the_final_status_write_is_retried_until_it_lands_under_a_live_claim(
    platform: LocalPlatform,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = platform.core.engine
    engine.record_retry = (0.02, 0.05)
    engine.claim_ttl = 0.3  # the heartbeat renews it every 0.1 s
    request = _evaluation(platform, tmp_path)
    with _failing_updates(platform, monkeypatch, _database_full) as state:

        def other_engine_tries_to_take_it() -> None:
            entity_id = state["id"]
            state["stolen"].append(platform.core.store.claim(entity_id, "elsewhere:1:x", 0.3))

        def handler(ctx: WorkflowContext) -> None:
            state["id"] = ctx.entity.id
            state["left"] = 25  # ~1 s of failures: three times the claim's TTL
            state["each"] = other_engine_tries_to_take_it
            raise _no_space()

        platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
        with caplog.at_level(logging.WARNING, logger="assay.engine"):
            evaluation = platform.evaluations.create(request)
    assert (evaluation.status, evaluation.reason) == (Status.Failed, Reason.StorageFull)
    assert state["calls"] == 25 and state["left"] == 0
    assert state["stolen"] and not any(state["stolen"])  # the claim stayed ours throughout
    assert any("trying again every 0.05 s until it lands" in r.message for r in caplog.records)
    assert any("after 26 tries" in r.message for r in caplog.records)
    assert platform.core.store.claim_owner(evaluation.id) is None


def test_a_success_is_recorded_after_the_store_comes_back(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    platform.core.engine.record_retry = (0.01, 0.01)
    request = _evaluation(platform, tmp_path)
    with _failing_updates(
        platform, monkeypatch, lambda: errors.UnavailableError("the entity store is busy")
    ) as state:

        def handler(ctx: WorkflowContext) -> None:
            state["left"] = 3

        platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
        evaluation = platform.evaluations.create(request)
    assert evaluation.status == Status.Complete
    assert state["calls"] == 3


def test_a_final_write_that_cannot_pass_is_not_retried_forever(
    platform: LocalPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = _evaluation(platform, tmp_path)
    with _failing_updates(platform, monkeypatch, lambda: KeyError("a bug")) as state:

        def handler(ctx: WorkflowContext) -> None:
            state["left"] = 1

        platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
        with pytest.raises(KeyError):
            platform.evaluations.create(request)
    (doc,) = platform.core.store.query(kind="Evaluation")
    # left for resume(): Admitted, and no claim (a new process takes it over at once)
    assert doc["status"] == Status.Admitted
    assert platform.core.store.claim_owner(doc["id"]) is None


# -- a real full filesystem ------------------------------------------------------------------


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs the privilege to mount: root in CI; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_fails_the_workflow_and_the_status_lands_once_space_is_freed(
    tiny_filesystem: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ballast = tiny_filesystem / "ballast"
    with LocalPlatform(tiny_filesystem / "platform", account="tester") as platform:
        platform.core.engine.record_retry = (0.05, 0.2)
        request = _evaluation(platform, tmp_path)
        freed = threading.Event()

        def free_space_once_the_engine_waits() -> None:
            deadline = time.monotonic() + 60
            while not any("until it lands" in r.message for r in caplog.records):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            ballast.unlink()
            freed.set()

        def handler(ctx: WorkflowContext) -> None:
            # Fill the disk to the last byte, then write an output: ENOSPC. The status
            # write (SQLite on the same disk) then fails too, until the ballast is gone.
            # (unbuffered: a buffered file would raise ENOSPC again when it is closed)
            with open(ballast, "wb", buffering=0) as fill, contextlib.suppress(OSError):
                while True:
                    fill.write(b"\0" * 4096)
            threading.Thread(target=free_space_once_the_engine_waits, daemon=True).start()
            ctx.storage.put_bytes(ctx.entity.id, "data/part-0.parquet", b"x" * 1_000_000)

        platform.core.register_workflow(WorkflowSpec("Evaluation", handler))
        with caplog.at_level(logging.WARNING, logger="assay.engine"):
            evaluation = platform.evaluations.create(request)
        assert (evaluation.status, evaluation.reason) == (Status.Failed, Reason.StorageFull)
        assert f"could not write its outputs under {platform.entity_path(evaluation.id)}" in (
            evaluation.message or ""
        )
        assert "No space left on device" in (evaluation.message or "")
        assert f"free space in {platform.storage_root}" in (evaluation.message or "")
        assert freed.is_set()  # the status landed only after space was freed
