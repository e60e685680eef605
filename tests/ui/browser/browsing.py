"""What the browser tests share: Chromium's location and flags, axe-core, and
:class:`Visitor` — one account's browser context, watched for problems.

A visitor's pages are watched: a console error, an uncaught page error, a failed request or
an answer of 400 or more that the test did not ask for is recorded (the ``visit`` fixture
fails the test with them), and so is any request to another host than the server's, which is
aborted: the tests run with the network cut, so every asset must come from the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, Response, Route
from tests.postgres import in_ci

CHROMIUM = Path("/usr/bin/chromium")
#: Chromium's flags: headless on a machine without a display, a GPU, a sandbox-capable user
#: (root) or a network — without the last four it keeps trying to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: axe-core, vendored for these tests only (tests/ui/vendor/README.md).
AXE = Path(__file__).parents[1] / "vendor" / "axe.min.js"
#: Where the pages load axe-core from: a path of the server's origin that the test's router
#: answers with the vendored file (the server never serves it), so the pages' own
#: Content-Security-Policy (``script-src 'self'``, no inline script) stays fully enforced.
AXE_PATH = "/__browser-tests__/axe.min.js"
#: axe's rule tags the pages are checked against: WCAG 2.x A and AA, and axe's best
#: practices (one main landmark, one h1, ...). A violation of impact ``serious`` or
#: ``critical`` fails the test.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
FAILING_IMPACTS = ("serious", "critical")
#: How long a step waits for the page (ms): generous, for a loaded 2-core machine.
TIMEOUT_MS = 30_000

ALICE = "alice"
BOB = "bob"


def needs_chromium() -> pytest.MarkDecorator:
    """Skip where Chromium is missing, except under CI, where the test fails instead (``make
    test`` installs it)."""
    return pytest.mark.skipif(
        not CHROMIUM.exists() and not in_ci(),
        reason=f"{CHROMIUM} is not installed (bash scripts/ensure-chromium.sh installs it)",
    )


@dataclass
class Visitor:
    """One account's browser context and page, watched for problems."""

    base: str
    """The server's URL (``http://127.0.0.1:PORT``)."""
    account: str
    context: BrowserContext
    page: Page
    shots: Path
    """Where this test's screenshots go."""
    prefix: str
    """This test's name, the start of its screenshots' names."""
    problems: list[str] = field(default_factory=list)
    """Console errors, page errors, failed requests and unexpected error answers."""
    expected_failures: set[str] = field(default_factory=set)
    """URLs whose error answer a test asked for (``goto(..., status=404)``)."""
    allowed_console: list[re.Pattern[str]] = field(default_factory=list)
    """Console errors a test expects (see :meth:`allow_console`)."""

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base + path

    def goto(self, path: str, *, status: int = 200) -> Response:
        """Open ``path`` and check its status (after redirects); returns the response."""
        url = self.url(path)
        if status >= 400:
            self.expected_failures.add(url)
        response = self.page.goto(url, wait_until="load")
        assert response is not None, f"GET {path}: no response"
        assert response.status == status, (
            f"GET {path} as {self.account}: {response.status}, expected {status}\n"
            f"{self.page.content()[:2000]}"
        )
        return response

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        """A screenshot named ``<test>-<name>.png`` (of the whole page, or of the viewport:
        a very long page takes seconds to capture whole)."""
        path = self.shots / f"{self.prefix}-{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def allow_console(self, pattern: str) -> None:
        """Let console errors matching ``pattern`` (a regular expression) pass: a test that
        provokes them on purpose says so."""
        self.allowed_console.append(re.compile(pattern))

    def axe(self, *, exclude: list[str] | None = None) -> list[dict[str, Any]]:
        """axe-core's serious and critical violations on the current page (see
        :data:`AXE_TAGS`); ``exclude``: CSS selectors of parts not to check. Frames are
        checked as elements of the page (a title, ...), not inside: a safety case's document
        is sandboxed away from the page, and from axe."""
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.add_script_tag(url=self.url(AXE_PATH))
        results = self.page.evaluate(
            """async ([tags, exclude]) => {
                const context = exclude.length ? {exclude: exclude.map((s) => [s])} : document;
                return await axe.run(context, {runOnly: {type: 'tag', values: tags}, iframes: false});
            }""",
            [AXE_TAGS, exclude or []],
        )
        return [v for v in results["violations"] if v.get("impact") in FAILING_IMPACTS]

    def check_accessibility(self, what: str, *, exclude: list[str] | None = None) -> None:
        """Fail with a readable list if the current page has serious accessibility problems."""
        violations = self.axe(exclude=exclude)
        assert not violations, f"{what} ({self.page.url}): axe-core found\n" + "\n".join(
            _describe_violation(v) for v in violations
        )

    def sign_in(self, token: str) -> None:
        """Sign in through the form, as a person does; lands on the dashboard."""
        self.goto("/signin")
        self.page.get_by_label("API token").fill(token)
        self.page.get_by_role("button", name=re.compile("sign in", re.IGNORECASE)).click()
        self.page.wait_for_url(self.base + "/", timeout=TIMEOUT_MS)


def _describe_violation(violation: dict[str, Any]) -> str:
    nodes = violation.get("nodes", [])
    where = "; ".join(
        f"{' '.join(map(str, n.get('target', [])))}: {n.get('failureSummary', '')!s}"[:300]
        for n in nodes[:5]
    )
    return (
        f"- {violation['id']} ({violation['impact']}): {violation['help']} "
        f"[{len(nodes)} element(s)] {where}"
    )


def watch(visitor: Visitor) -> None:
    """Record what goes wrong on the visitor's pages, and cut the network: a request to any
    host but the server's is aborted and recorded."""
    host = urlsplit(visitor.base).netloc
    page, problems = visitor.page, visitor.problems

    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = message.location.get("url", "") if message.location else ""
        text = message.text
        if where in visitor.expected_failures and text.startswith("Failed to load resource"):
            return
        if any(p.search(text) for p in visitor.allowed_console):
            return
        problems.append(f"console error at {where or page.url}: {text}")

    def on_response(response: Response) -> None:
        if response.status >= 400 and response.url not in visitor.expected_failures:
            problems.append(f"{response.status} for {response.request.method} {response.url}")

    def on_request_failed(request: Request) -> None:
        if request.failure == "net::ERR_ABORTED":
            return  # cancelled by the browser: the page moved on (a click, a navigation)
        problems.append(f"request failed: {request.method} {request.url}: {request.failure}")

    def route(route: Route) -> None:
        target = urlsplit(route.request.url)
        if target.netloc == host and target.path == AXE_PATH:
            route.fulfill(path=AXE, content_type="text/javascript")
        elif target.scheme in ("http", "https", "ws", "wss") and target.netloc != host:
            problems.append(f"request to another host (no network here): {route.request.url}")
            route.abort("blockedbyclient")
        else:
            route.continue_()

    visitor.context.route("**/*", route)
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error at {page.url}: {error}"))
    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
