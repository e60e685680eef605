"""Signing in and out in a real browser: the token goes in through the form, the session
lives in an HttpOnly, SameSite=Strict cookie that page scripts cannot read and that is not the
token; a refused token says why; signing out ends the session."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from tests.ui.browser.browsing import ALICE, Visitor, needs_chromium

pytestmark = [needs_chromium(), pytest.mark.slow]

SESSION_COOKIE = "assay_session"


def test_sign_in_with_a_token_and_out_again(
    visit: Callable[..., Visitor], tokens: Callable[[str], str]
) -> None:
    visitor = visit(ALICE, signed_in=False)
    page = visitor.page
    # a page asked for before signing in leads to the form, then back to that page
    visitor.goto("/datasets")
    assert page.url.startswith(visitor.base + "/signin")
    visitor.check_accessibility("the sign-in page")
    visitor.shot("signin-form")
    token = tokens(ALICE)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(visitor.base + "/datasets")
    visitor.shot("signed-in")

    (cookie,) = [c for c in visitor.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert token not in cookie["value"] and cookie["value"] not in token
    assert SESSION_COOKIE not in page.evaluate("() => document.cookie")
    assert token not in page.content()

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r".*/signin.*"))
    assert not [c for c in visitor.context.cookies() if c["name"] == SESSION_COOKIE]
    visitor.goto("/")
    assert page.url.startswith(visitor.base + "/signin"), "signed out, the dashboard still shows"
    visitor.shot("signed-out")


def test_a_refused_token_says_why_and_opens_no_session(visit: Callable[..., Visitor]) -> None:
    visitor = visit(ALICE, signed_in=False)
    page = visitor.page
    visitor.goto("/signin")
    visitor.expected_failures.add(visitor.base + "/signin")  # the form answers 401
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "refused" in alert.inner_text()
    assert not [c for c in visitor.context.cookies() if c["name"] == SESSION_COOKIE]
    visitor.check_accessibility("the sign-in page with its error")
    visitor.shot("refused")
