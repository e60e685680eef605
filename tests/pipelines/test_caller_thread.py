"""Where a pipeline's steps run: on the caller's thread when every service of the version
answers at once (Assay's own mocks that never wait), else on a step thread, so that the
timeout can give up on a call that does not return."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from tests.conftest import ACCOUNT

from assay.local import LocalPlatform, mocks


class Subclassed(mocks.TextCompletion):
    """A user's mock: it may wait, whatever its base class says of itself."""


def test_only_mocks_that_say_so_themselves_count_as_never_waiting() -> None:
    for kind in (mocks.TextCompletion, mocks.Classifier, mocks.Regressor, mocks.ChatModel):
        assert kind.nonblocking, kind
    assert not mocks.Faulty.nonblocking
    assert not Subclassed.nonblocking  # not inherited: a subclass may override with a sleep


@pytest.mark.parametrize(("kind", "on_caller"), [(mocks.TextCompletion, True), (Subclassed, False)])
def test_the_steps_run_on_the_caller_s_thread_only_over_services_that_never_wait(
    platform: LocalPlatform,
    monkeypatch: pytest.MonkeyPatch,
    kind: type[mocks.TextCompletion],
    on_caller: bool,
) -> None:
    seen: list[threading.Thread] = []
    real = mocks.TextCompletion.answer

    def answer(self: Any, request: dict[str, Any]) -> list[dict[str, Any]]:
        seen.append(threading.current_thread())
        return real(self, request)

    monkeypatch.setattr(mocks.TextCompletion, "answer", answer)
    service = platform.inferenceservices.create_mock(
        kind, account=ACCOUNT, name="writer", kwargs={"seed": 1}
    )
    pipeline = platform.pipelines.create("where")
    pipeline.add_model_step(service).deploy()
    record = pipeline.infer({"text": "hello"})
    assert record["in.text"] == "hello" and record["out.text"]
    assert seen and all((t is threading.current_thread()) is on_caller for t in seen)
