"""Terminating running work from the browser: an Evaluation of a slow mock service (one call
a second, hundreds of instances: minutes of work) shows on the dashboard with its progress and
a Terminate button; the button ends it, and its page says so. A second one is terminated from
its own page."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.server.loopback import Served
from tests.ui.browser.browsing import ALICE, Visitor, needs_chromium
from tests.ui.browser.world import write_prompts

from assay.client import Client
from assay.local import mocks

pytestmark = [needs_chromium(), pytest.mark.slow]

#: Instances of the slow evaluations: at one call a second, far longer than the test.
ROWS = 300


@pytest.fixture(scope="module")
def alice_client(
    ui_server: Served, tokens: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    with Client(
        ui_server.url, tokens(ALICE), progress=False, cache_dir=tmp_path_factory.mktemp("cache")
    ) as client:
        yield client


def _slow_evaluation(client: Client, directory: Path) -> str:
    """A running Evaluation of ``ROWS`` instances against ``Slow`` (one second per call),
    once it has answered at least one instance."""
    data = write_prompts(directory, rows=ROWS)
    dataset = client.datasets.upload_arrow_dataset(
        client.datasets.create_arrow_dataset(data, account=ALICE, name="many prompts"), data
    )
    assert dataset.status == "Ready", dataset.message
    service = client.inferenceservices.create_mock(
        mocks.Slow, account=ALICE, name="slow", kwargs={"latency": 1.0}
    )
    evaluation = client.evaluations.create(
        {
            "account": ALICE,
            "dataset": dataset.id,
            "inferenceSession": {"inferenceService": service.id},
        }
    ).id
    # a running evaluation is Admitted, its message its progress: "3 / 300 instances, ..."
    deadline = time.monotonic() + 120
    while not re.match(
        rf"[1-9]\d* / {ROWS} instances",
        (entity := client.evaluations.require(evaluation)).message or "",
    ):
        assert time.monotonic() < deadline, (
            f"the evaluation did not start: {entity.status} ({entity.reason}) {entity.message}"
        )
        time.sleep(0.1)
    return evaluation


def _wait_for_status(client: Client, id: str, status: str, timeout: float = 60) -> None:
    """Wait (with a timeout) until the evaluation ``id`` is ``status``."""
    deadline = time.monotonic() + timeout
    while (entity := client.evaluations.require(id)).status != status:
        assert time.monotonic() < deadline, f"{id} is {entity.status}, not {status}"
        time.sleep(0.1)


def _accept_confirmations(visitor: Visitor) -> None:
    """A Terminate button may ask "are you sure?": say yes (Playwright says no by default)."""
    visitor.page.on("dialog", lambda dialog: dialog.accept())


def test_terminate_a_running_evaluation_from_the_dashboard(
    visit: Callable[..., Visitor], alice_client: Client, tmp_path: Path
) -> None:
    evaluation = _slow_evaluation(alice_client, tmp_path / "data")
    visitor = visit(ALICE)
    page = visitor.page
    _accept_confirmations(visitor)
    visitor.goto("/")
    running = page.locator(f'a[href="/evaluations/{evaluation}"]')
    assert running.count() >= 1, "the running evaluation is not on the dashboard"
    # live progress: done/total of the ROWS instances, updated while the page stays open
    page.get_by_text(re.compile(rf"\d+ / {ROWS} instances")).first.wait_for()
    bar = page.locator(f'progress[max="{ROWS}"]').first
    done = int(bar.get_attribute("value") or 0)
    page.evaluate("() => { window.stillTheSamePage = true; }")
    page.wait_for_function(
        f"() => Number(document.querySelector('progress[max=\"{ROWS}\"]')?.value) > {done}"
    )
    assert page.evaluate("() => window.stillTheSamePage === true"), "the page was reloaded"
    visitor.check_accessibility("the dashboard with running work")
    visitor.shot("running")
    form = page.locator(f'form[action="/evaluations/{evaluation}/terminate"]')
    assert form.count() >= 1, "no Terminate button for the running evaluation"
    form.first.get_by_role("button", name=re.compile("terminate", re.IGNORECASE)).click()
    page.wait_for_load_state()
    _wait_for_status(alice_client, evaluation, "Terminated")
    visitor.shot("terminated")
    visitor.goto(f"/evaluations/{evaluation}")
    assert "Terminated" in page.locator("main").inner_text()
    assert not page.locator(f'form[action="/evaluations/{evaluation}/terminate"]').count(), (
        "an ended evaluation still offers a Terminate button"
    )
    visitor.shot("evaluation-page")


def test_terminate_a_running_evaluation_from_its_page(
    visit: Callable[..., Visitor], alice_client: Client, tmp_path: Path
) -> None:
    evaluation = _slow_evaluation(alice_client, tmp_path / "data")
    visitor = visit(ALICE)
    page = visitor.page
    _accept_confirmations(visitor)
    visitor.goto(f"/evaluations/{evaluation}")
    assert re.search(rf"\d+ / {ROWS}", page.locator("main").inner_text()), "no progress shown"
    visitor.check_accessibility("a running evaluation's page")
    visitor.shot("running")
    page.locator(f'form[action="/evaluations/{evaluation}/terminate"]').get_by_role(
        "button"
    ).click()
    page.wait_for_load_state()
    _wait_for_status(alice_client, evaluation, "Terminated")
    visitor.goto(f"/evaluations/{evaluation}")
    assert "Terminated" in page.locator("main").inner_text()
    visitor.shot("terminated")
