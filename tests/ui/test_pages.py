"""The web UI's pages, in-process (a TestClient per browser over ``create_app``): signing in
and out, CSRF, access (the API's checks: another account's entity is a 404 like a missing
one), every page kind, the safety-case sandbox, the offline API docs, terminate and labels
forms, and HTML escaping. The same pages in real Chromium: ``tests/ui/browser/``."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient
from tests.server.helpers import RESOURCES, Caller, Server, build_world, model_request
from tests.ui.helpers import complete_audit, csrf_of, sign_in

from assay.schema import ids
from assay.server import ServerSettings, create_app
from assay.server.ui.sessions import SESSION_COOKIE

ALICE, BOB = "alice", "bob"


@pytest.fixture
def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path / "data", shutdown_timeout=20, executor="threads")


@pytest.fixture
def server(settings: ServerSettings) -> Iterator[Server]:
    with TestClient(create_app(settings)) as client:
        yield Server(client, settings)


@pytest.fixture
def alice(server: Server) -> Caller:
    return server.as_account(ALICE)


@pytest.fixture
def bob(server: Server) -> Caller:
    return server.as_account(BOB)


def browser(server: Server, token: str | None = None) -> TestClient:
    """A new browser (its own cookies) on the running app, signed in with ``token``."""
    client = TestClient(server.client.app, follow_redirects=False)
    if token is not None:
        answer = sign_in(client, token)
        assert answer.status_code == 303, answer.text
    return client


@pytest.fixture
def world(server: Server, alice: Caller) -> dict[str, str]:
    return build_world(server, alice, ALICE)


def _page(client: TestClient, path: str) -> httpx.Response:
    answer = client.get(path)
    assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[-1500:]}"
    return answer


# -- signing in ----------------------------------------------------------------------------------


def test_sign_in_sets_an_opaque_httponly_strict_cookie(server: Server, alice: Caller) -> None:
    client = browser(server)
    assert client.get("/").headers["location"] == "/signin"
    assert client.get("/evaluations?status=Failed").headers["location"] == (
        "/signin?next=%2Fevaluations%3Fstatus%3DFailed"
    )
    answer = sign_in(client, alice.token or "")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    session_id = client.cookies[SESSION_COOKIE]
    assert alice.token and alice.token not in cookie and session_id not in alice.token
    dashboard = _page(client, "/")
    assert "Account/alice" in dashboard.text and "<h1>Dashboard</h1>" in dashboard.text


def test_sign_in_goes_back_to_the_page_asked_for_and_never_off_site(
    server: Server, alice: Caller
) -> None:
    client = browser(server)
    form = client.get("/signin?next=/evaluations")
    answer = client.post(
        "/signin",
        data={"csrf_token": csrf_of(form), "token": alice.token, "next": "/evaluations"},
    )
    assert answer.headers["location"] == "/evaluations"
    client = browser(server)
    form = client.get("/signin")
    answer = client.post(
        "/signin",
        data={"csrf_token": csrf_of(form), "token": alice.token, "next": "//evil.example/x"},
    )
    assert answer.headers["location"] == "/"


def test_a_bad_token_is_refused_with_the_reason(server: Server) -> None:
    client = browser(server)
    answer = sign_in(client, "not-a-token")
    assert answer.status_code == 401
    assert "That token was refused" in answer.text
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/").status_code == 303


def test_an_expired_token_is_refused(server: Server) -> None:
    expired = server.core.signer.sign(
        subject=f"Account/{ALICE}", grants=[], expires=time.time() - 60
    )
    answer = sign_in(browser(server), expired)
    assert answer.status_code == 401 and "expired" in answer.text


def test_a_session_ends_no_later_than_its_token(server: Server) -> None:
    from datetime import timedelta

    short = server.core.signer  # noqa: F841 - the token below is signed with it
    from assay.server import issue_token

    token = issue_token(server.core, account=ALICE, expires=timedelta(seconds=90))
    client = browser(server)
    answer = sign_in(client, token)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    max_age = int(re.search(r"Max-Age=(\d+)", cookie).group(1))  # type: ignore[union-attr]
    assert 0 < max_age <= 90
    session = server.client.app.state.ui_sessions.get(client.cookies[SESSION_COOKIE])  # type: ignore[attr-defined]
    assert session is not None and session.expires <= time.time() + 90


def test_a_revoked_token_ends_its_session_at_once(server: Server, alice: Caller) -> None:
    client = browser(server, alice.token)
    _page(client, "/")
    principal = server.state.authenticator.authenticate(f"Bearer {alice.token}")
    revocations = server.state.authenticator.revocations
    assert revocations is not None
    revocations.revoke(principal.token_id)
    answer = client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
    assert client.get("/datasets").status_code == 303
    assert sign_in(browser(server), alice.token or "").status_code == 401


def test_sign_out_ends_the_session(server: Server, alice: Caller) -> None:
    client = browser(server, alice.token)
    old_session = client.cookies[SESSION_COOKIE]
    answer = client.post("/signout", data={"csrf_token": csrf_of(_page(client, "/"))})
    assert answer.status_code == 303 and answer.headers["location"] == "/signin"
    assert client.get("/").status_code == 303
    # the old cookie, replayed, is dead too
    replay = browser(server)
    replay.cookies.set(SESSION_COOKIE, old_session)
    assert replay.get("/").status_code == 303


# -- CSRF ----------------------------------------------------------------------------------------


def test_posts_without_the_csrf_token_are_refused(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    client = browser(server, alice.token)
    model = world["models"]
    good = csrf_of(_page(client, f"/models/{model}"))
    for data in ({}, {"csrf_token": ""}, {"csrf_token": good[:-2] + "xx"}):
        labels = client.post(f"/models/{model}/labels", data={**data, "key": "a", "value": "b"})
        assert labels.status_code == 403, labels.text
        assert "CSRF" in labels.text
        stop = client.post(f"/evaluations/{world['evaluations']}/terminate", data=data)
        assert stop.status_code == 403
        assert client.post("/signout", data=data).status_code == 403
    assert server.core.models.require(model).labels == {}
    assert server.core.evaluations.require(world["evaluations"]).status != "Terminated"
    _page(client, "/")  # still signed in
    # another session's token is not this session's
    other = browser(server, alice.token)
    theirs = csrf_of(_page(other, "/"))
    assert client.post("/signout", data={"csrf_token": theirs}).status_code == 403


def test_the_sign_in_form_is_csrf_protected(server: Server, alice: Caller) -> None:
    client = browser(server)
    client.get("/signin")
    answer = client.post("/signin", data={"csrf_token": "forged", "token": alice.token})
    assert answer.status_code == 403
    assert SESSION_COOKIE not in client.cookies
    bare = browser(server)  # never saw the form: no cookie to match
    assert bare.post("/signin", data={"csrf_token": "x", "token": alice.token}).status_code == 403


# -- pages ---------------------------------------------------------------------------------------


def test_every_page_kind_renders_for_its_owner(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    audit = complete_audit(server, alice, ALICE)
    client = browser(server, alice.token)
    dashboard = _page(client, "/").text
    for resource in RESOURCES:
        assert f'href="/{resource}"' in dashboard
    _page(client, "/dashboard/running")
    for resource in RESOURCES:
        listing = _page(client, f"/{resource}").text
        assert world[resource] in listing
        assert f"<h1>{resource}</h1>" in listing
        entity = _page(client, f"/{resource}/{world[resource]}").text
        assert world[resource] in entity and '<h2 id="h-spec">Spec</h2>' in entity
        assert 'id="log"' in _page(client, f"/{resource}/{world[resource]}/logs").text
    for resource, id in audit.items():
        assert id in _page(client, f"/{resource}/{id}").text
    evaluation = _page(client, f"/evaluations/{audit['evaluations']}").text
    assert f'href="/datasets/{audit["datasets"]}"' in evaluation  # a dependency, as a link
    assert "/v0/storage/evaluations/" in evaluation  # its outputs, to download
    assert "sha256:" in evaluation  # its provenance
    dataset = _page(client, f"/datasets/{audit['datasets']}").text
    assert f'href="/evaluations/{audit["evaluations"]}"' in dataset  # a dependent
    assert "<h1>Not found</h1>" in client.get("/datasets/" + "0" * 32).text


def test_a_link_to_a_download_fetches_the_file(server: Server, alice: Caller) -> None:
    audit = complete_audit(server, alice, ALICE)
    client = browser(server, alice.token)
    page = _page(client, f"/measurements/{audit['measurements']}").text
    (url,) = re.findall(r'href="(/v0/storage/[^"]+)"', page)
    download = client.get(url.replace("&amp;", "&"))
    assert download.status_code == 200 and download.content.startswith(b"PAR1")


def test_list_pages_filter_and_page(server: Server, alice: Caller) -> None:
    made = []
    for i in range(5):
        made.append(alice.create("models", {**model_request(ALICE), "name": f"model-{i}"})["id"])
        alice.ok(
            "PATCH",
            f"/models/{made[-1]}/labels",
            json={"labels": {"team": "red" if i % 2 else "blue"}},
        )
    client = browser(server, alice.token)
    first = _page(client, "/models?limit=2").text
    assert made[4] in first and made[3] in first and made[2] not in first  # newest first
    (next_url,) = re.findall(r'href="(/models\?[^"]*after=[^"]+)" rel="next"', first)
    second = _page(client, next_url.replace("&amp;", "&")).text
    assert made[2] in second and made[1] in second and made[4] not in second
    red = _page(client, "/models?label=team%3Dred").text
    assert made[1] in red and made[3] in red and made[0] not in red
    named = _page(client, "/models?name=model-0").text
    assert made[0] in named and made[1] not in named
    assert made[0] not in _page(client, "/models?account=bob").text
    assert made[0] not in _page(client, "/models?status=Failed").text
    bad = client.get("/models?label=%3Dx")
    assert bad.status_code == 422 and "label" in bad.text
    assert client.get("/models?limit=0").status_code == 422


# -- access --------------------------------------------------------------------------------------


def _without_ids(text: str, *ids_: str) -> str:
    for id in ids_:
        text = text.replace(id, "<ID>")
    return re.sub(r'name="csrf_token" value="[^"]+"', "", text)


def test_another_accounts_entity_is_a_404_like_a_missing_one(
    server: Server, alice: Caller, bob: Caller, world: dict[str, str]
) -> None:
    client = browser(server, bob.token)
    for resource in RESOURCES:
        theirs, missing = world[resource], ids.generate_entity_id()
        for suffix in ("", "/logs"):
            a = client.get(f"/{resource}/{theirs}{suffix}")
            b = client.get(f"/{resource}/{missing}{suffix}")
            assert a.status_code == b.status_code == 404, (resource, suffix, a.text)
            assert _without_ids(a.text, theirs) == _without_ids(b.text, missing)
        token = csrf_of(_page(client, "/"))
        a = client.post(
            f"/{resource}/{theirs}/labels", data={"csrf_token": token, "key": "x", "value": "y"}
        )
        b = client.post(
            f"/{resource}/{missing}/labels", data={"csrf_token": token, "key": "x", "value": "y"}
        )
        assert a.status_code == b.status_code == 404
        assert _without_ids(a.text, theirs) == _without_ids(b.text, missing)
    stop = client.post(
        f"/evaluations/{world['evaluations']}/terminate",
        data={"csrf_token": csrf_of(_page(client, "/"))},
    )
    assert stop.status_code == 404
    assert server.core.evaluations.require(world["evaluations"]).status != "Terminated"
    assert client.get(f"/safetycases/{world['safetycases']}/document").status_code == 404


def test_a_token_without_grants_on_an_account_sees_nothing_of_it(
    server: Server, alice: Caller, bob: Caller, world: dict[str, str]
) -> None:
    client = browser(server, bob.token)
    dashboard = _page(client, "/").text
    assert all(id not in dashboard for id in world.values())
    assert re.search(r'href="/datasets">datasets</a></th>\s*<td class="num">0</td>', dashboard)
    for resource in RESOURCES:
        listing = _page(client, f"/{resource}").text
        assert world[resource] not in listing
        assert world[resource] not in _page(client, f"/{resource}?account={ALICE}").text
    # a token with no grant at all: no lists, nothing counted
    empty = server.as_account(BOB, grants=[])
    nothing = browser(server, empty.token)
    assert "may not list any kind" in _page(nothing, "/").text
    refused = nothing.get("/datasets")
    assert refused.status_code == 403 and world["datasets"] not in refused.text


def test_a_grant_on_one_entity_shows_that_entity_only(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    grants = [
        {"resources": ["models"], "functions": ["get", "query"], "entities": [world["models"]]}
    ]
    carol = server.as_account("carol", grants=grants)
    client = browser(server, carol.token)
    assert world["models"] in _page(client, "/models").text
    assert world["models"] in _page(client, f"/models/{world['models']}").text
    assert client.get(f"/datasets/{world['datasets']}").status_code in (403, 404)
    dashboard = _page(client, "/").text
    assert re.search(r'href="/models">models</a></th>\s*<td class="num">1</td>', dashboard)
    assert "Save labels" not in _page(client, f"/models/{world['models']}").text  # no edit


# -- security headers, the safety-case sandbox, the API docs ------------------------------------

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_EVENT_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


def _check_page_policy(answer: httpx.Response) -> None:
    csp = answer.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp, (directive, csp)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    assert not _INLINE_SCRIPT.search(answer.text), "an inline <script>"
    assert not _EVENT_ATTRIBUTE.search(answer.text), "an on* attribute"


def test_safety_case_document_is_sandboxed(server: Server, alice: Caller) -> None:
    audit = complete_audit(server, alice, ALICE)
    client = browser(server, alice.token)
    case = audit["safetycases"]
    page = _page(client, f"/safetycases/{case}")
    _check_page_policy(page)
    (iframe,) = re.findall(r"<iframe[^>]*>", page.text)
    assert f'src="/safetycases/{case}/document"' in iframe
    assert re.search(r"\ssandbox(\s|>|=)", iframe) and "allow-same-origin" not in iframe
    assert "Mean answer length" in page.text and "<svg" in page.text  # its score and curve
    document = _page(client, f"/safetycases/{case}/document")
    csp = [d.strip() for d in document.headers["content-security-policy"].split(";")]
    assert csp[0] == "sandbox"  # no allow-* tokens: no scripts, same-origin, forms, popups
    assert "default-src 'none'" in csp and "img-src data:" in csp
    assert "style-src 'unsafe-inline'" in csp
    assert "UI audit" in document.text
    assert browser(server).get(f"/safetycases/{case}/document").status_code == 303


def test_every_page_sends_the_security_headers(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    client = browser(server, alice.token)
    paths = ["/", "/signin", "/dashboard/running", "/datasets" + "/" + "0" * 32]
    paths += [f"/{r}" for r in RESOURCES] + [f"/{r}/{world[r]}" for r in RESOURCES]
    for path in paths:
        answer = client.get(path)
        assert answer.status_code in (200, 404), path
        _check_page_policy(answer)
    assert client.get("/not-a-page").status_code == 404


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_only_local_assets(server: Server, path: str) -> None:
    answer = _page(browser(server), path)  # no sign-in needed, like /openapi.json
    html = answer.text
    assert not re.findall(r"https?://", html), "a URL of another host"
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', html)
    assert any(a.startswith("/static/vendor/") and a.endswith(".js") for a in assets)
    for asset in assets:
        assert browser(server).get(asset).status_code == 200, asset
    csp = answer.headers["content-security-policy"]
    assert (
        "script-src 'self'" in csp
        and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "/openapi.json" in html
    schema = server.client.get("/openapi.json").json()
    assert not [p for p in schema["paths"] if not p.startswith("/v0")], "UI routes in the schema"


# -- forms ---------------------------------------------------------------------------------------


def test_terminate_from_the_entity_page(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    client = browser(server, alice.token)
    evaluation = world["evaluations"]  # waits for its data set, which is never uploaded
    page = _page(client, f"/evaluations/{evaluation}").text
    assert f'action="/evaluations/{evaluation}/terminate"' in page
    answer = client.post(
        f"/evaluations/{evaluation}/terminate", data={"csrf_token": csrf_of(_page(client, "/"))}
    )
    assert answer.status_code == 303 and answer.headers["location"] == f"/evaluations/{evaluation}"
    assert server.core.evaluations.require(evaluation).status == "Terminated"
    after = _page(client, f"/evaluations/{evaluation}").text
    assert "Terminated" in after and "/terminate" not in after
    again = client.post(
        f"/evaluations/{evaluation}/terminate", data={"csrf_token": csrf_of(_page(client, "/"))}
    )
    assert again.status_code == 409


def test_terminate_from_the_dashboard(server: Server, alice: Caller, world: dict[str, str]) -> None:
    session = world["inferencesessions"]
    client = browser(server, alice.token)
    status = server.core.inferencesessions.require(session).status
    assert status in ("Admitted", "Ready")
    token = csrf_of(_page(client, "/"))
    answer = client.post(
        f"/inferencesessions/{session}/terminate", data={"csrf_token": token, "next": "/"}
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert server.core.inferencesessions.require(session).status == "Terminated"


def test_labels_are_set_changed_and_removed(
    server: Server, alice: Caller, world: dict[str, str]
) -> None:
    client = browser(server, alice.token)
    model = world["models"]

    def save(data: dict[str, Any]) -> httpx.Response:
        token = csrf_of(_page(client, f"/models/{model}"))
        return client.post(f"/models/{model}/labels", data={"csrf_token": token, **data})

    assert save({"key": "team", "value": "red"}).status_code == 303
    assert server.core.models.require(model).labels == {"team": "red"}
    page = _page(client, f"/models/{model}").text
    assert 'value="team" readonly' in page and 'value="red"' in page
    assert save({"key": ["team", "stage"], "value": ["blue", "test"]}).status_code == 303
    assert server.core.models.require(model).labels == {"team": "blue", "stage": "test"}
    answer = save({"key": ["team", "stage", ""], "value": ["blue", "test", ""], "remove": "team"})
    assert answer.status_code == 303
    assert server.core.models.require(model).labels == {"stage": "test"}
    bad = save({"key": "bad key!", "value": "x"})
    assert bad.status_code == 422 and "bad key!" in bad.text
    assert server.core.models.require(model).labels == {"stage": "test"}


# -- escaping ------------------------------------------------------------------------------------

HOSTILE = "<script>alert(1)</script>"


def test_hostile_names_and_values_are_escaped(server: Server, alice: Caller) -> None:
    made = alice.ok("POST", "/models", json={**model_request(ALICE), "name": HOSTILE})
    client = browser(server, alice.token)
    for path in (
        "/models",
        f"/models/{made['id']}",
        f"/models?name={HOSTILE}",
        f"/models?label={HOSTILE}",
    ):
        page = _page(client, path)
        assert HOSTILE not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    probe = "<img src=x onerror=alert(1)>"
    refused = client.get(f"/models/{probe}")
    assert refused.status_code == 404 and probe not in refused.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in refused.text
