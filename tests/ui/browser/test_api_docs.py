"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) render the API's reference with the network
cut: every request to another host is aborted (and fails the test), so their scripts, styles
and fonts must all come from the server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.ui.browser.browsing import ALICE, Visitor, needs_chromium

pytestmark = [needs_chromium(), pytest.mark.slow]


def test_swagger_ui_renders_offline(visit: Callable[..., Visitor]) -> None:
    visitor = visit(ALICE, signed_in=False)
    page = visitor.page
    visitor.goto("/docs")
    # Swagger UI's own markup, drawn by its script from /openapi.json
    page.locator(".swagger-ui .info .title").wait_for()
    page.locator(".swagger-ui .opblock").first.wait_for()
    visitor.shot("swagger-ui", full_page=False)
    # Swagger UI draws the operations near the viewport only: scroll down to the datasets'
    datasets = page.locator('.swagger-ui [data-path="/v0/datasets"]')
    for _ in range(60):
        if datasets.count():
            break
        page.mouse.wheel(0, 600)
        page.wait_for_timeout(50)
    assert datasets.count(), "Swagger UI does not list GET /v0/datasets"
    visitor.shot("swagger-ui-datasets", full_page=False)


def test_redoc_renders_offline(visit: Callable[..., Visitor]) -> None:
    visitor = visit(ALICE, signed_in=False)
    page = visitor.page
    visitor.goto("/redoc")
    # ReDoc's menu of operations, drawn by its script from /openapi.json
    page.locator("[role=menuitem], .menu-content").first.wait_for()
    page.get_by_text("/v0/datasets").first.wait_for(state="attached")
    visitor.shot("redoc", full_page=False)
