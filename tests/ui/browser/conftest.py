"""Fixtures of the browser tests: a real ``assay serve`` per test module, one headless
Chromium per module (Debian's ``/usr/bin/chromium`` driven by Playwright; no browser download,
``make test`` installs it with ``scripts/ensure-chromium.sh``), and ``visit(account)``: a
browser context signed in through the sign-in form, watched for problems
(:class:`~tests.ui.browser.browsing.Visitor`). Screenshots of each test's key steps go to a
``screenshots`` folder under pytest's temporary directory (or ``$ASSAY_TEST_SCREENSHOTS``),
named after the test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from tests.server.loopback import Served, serve
from tests.ui.browser.browsing import ALICE, CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, Visitor, watch

#: A folder to keep the screenshots in (pytest's temporary folders are removed after a few
#: runs, and others' runs count).
SCREENSHOTS_VARIABLE = "ASSAY_TEST_SCREENSHOTS"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of every test's screenshots: ``$ASSAY_TEST_SCREENSHOTS`` if set, else
    ``screenshots`` in pytest's temporary folder."""
    chosen = os.environ.get(SCREENSHOTS_VARIABLE)
    if chosen:
        Path(chosen).mkdir(parents=True, exist_ok=True)
        return Path(chosen)
    return tmp_path_factory.mktemp("screenshots", numbered=False)


@pytest.fixture(scope="module")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real ``assay serve`` (multi-user defaults, SQLite, worker processes) for the module."""
    with serve(tmp_path_factory.mktemp("ui-server")) as served:
        yield served


@pytest.fixture(scope="module")
def tokens(ui_server: Served) -> Callable[[str], str]:
    """An API token per account (made once per module: ``assay token create`` is a process)."""
    made: dict[str, str] = {}

    def token(account: str) -> str:
        if account not in made:
            made[account] = ui_server.token(account)
        return made[account]

    return token


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module. Playwright gives it a fresh, empty profile (a
    new temporary user-data-dir) and each :class:`Visitor` a context of its own (cookies,
    storage)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed: run bash scripts/ensure-chromium.sh")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def visit(
    browser: Browser,
    ui_server: Served,
    tokens: Callable[[str], str],
    screenshots: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., Visitor]]:
    """``visit(account)``: a new browser context for ``account``, signed in through the form
    (``signed_in=False``: not signed in). The test fails if any of its pages had a problem."""
    visitors: list[Visitor] = []
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def make(account: str = ALICE, *, signed_in: bool = True) -> Visitor:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        visitor = Visitor(
            base=ui_server.url,
            account=account,
            context=context,
            page=context.new_page(),
            shots=screenshots,
            prefix=f"{prefix}-{account}",
        )
        watch(visitor)
        visitors.append(visitor)
        if signed_in:
            visitor.sign_in(tokens(account))
        return visitor

    yield make
    problems = []
    for visitor in visitors:
        problems += [f"[{visitor.account}] {p}" for p in visitor.problems]
        visitor.context.close()
    if problems:
        pytest.fail(
            "the pages had problems (screenshots in "
            f"{screenshots}):\n" + "\n".join(f"- {p}" for p in problems),
            pytrace=False,
        )
