"""The pipeline pages over a real server in-process: ``/pipelines`` and ``/pipelines/{name}``
(versions, steps, traffic split, shadow results side by side, anomaly counts, the log with
time filters), signed in through the sign-in form, each showing only what the token's grants
allow. The pipelines are deployed and called through the API, as a user would."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import pytest
from markupsafe import escape
from starlette.testclient import TestClient

from assay.core.kinds import mock_service_request
from assay.local import mocks
from assay.server import ServerSettings, create_app, issue_token
from assay.server.state import ServerState

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
#: The challenger that always fails, with markup in its name.
FAULTY = "faulty <b>x</b>"


class Site:
    """The app, alice's pipeline ``shop`` and bob's ``private``."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def state(self) -> ServerState:
        state: ServerState = self.client.app.state.assay  # type: ignore[attr-defined]
        return state

    def token(self, account: str, grants: list[dict[str, object]] | None = None) -> str:
        return issue_token(self.state.core, account=account, grants=grants)

    def api(self, token: str, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.client.request(
            method, "/v0" + path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return (
            answer.json() if answer.headers["content-type"].startswith("application/json") else None
        )

    def browser(self, token: str) -> TestClient:
        """A new client (its own cookies) signed in through the form."""
        client = TestClient(self.client.app, follow_redirects=False)
        match = CSRF.search(client.get("/signin").text)
        assert match
        answer = client.post("/signin", data={"token": token, "csrf_token": match.group(1)})
        assert answer.status_code == 303, answer.text
        return client

    def records(self, **filters: Any) -> Any:
        """alice's ``shop`` log, read on the server's platform (for the expected values)."""
        pipeline = self.state.pipelines.group.get("shop", account="alice")
        table, _ = pipeline.log.read(limit=None, dataset=["*", "metadata"], **filters)
        return table


def _service(site: Site, token: str, account: str, mock: type, name: str, **kwargs: Any) -> str:
    request = mock_service_request(mock, account=account, name=name, kwargs=kwargs)
    return str(site.api(token, "POST", "/inferenceservices", json=request)["id"])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("pipeline-ui")
    settings = ServerSettings(data_dir=root / "data", shutdown_timeout=20, executor="threads")
    with TestClient(create_app(settings)) as client:
        site = Site(client)
        alice = site.token("alice")
        a = _service(site, alice, "alice", mocks.Classifier, "clf-a", seed=1)
        b = _service(site, alice, "alice", mocks.Classifier, "clf-b", seed=2)
        faulty = _service(site, alice, "alice", mocks.Faulty, FAULTY, error_rate=1.0, seed=1)
        split = {"kind": "random_split", "weighted": [[3, a], [1, b]], "hash_key": "k"}
        site.api(alice, "POST", "/pipelines/shop/deploy", json={"definition": {"steps": [split]}})
        rows = [{"text": f"t{i}", "k": i / 20} for i in range(20)]  # 15 to clf-a, 5 to clf-b
        site.api(alice, "POST", "/pipelines/shop/infer", json={"rows": rows})
        shadow = [
            {"kind": "multi_model", "services": [a, b, faulty], "shadow": True},
            {"kind": "audit", "start": 1, "unit": "service"},
            {"kind": "select", "index": 0, "unit": "service"},
            {"kind": "validations", "checks": {"negative": "out.label == 'negative'"}},
        ]
        site.api(alice, "POST", "/pipelines/shop/deploy", json={"definition": {"steps": shadow}})
        rows = [{"text": f"s{i}"} for i in range(8)]
        site.api(alice, "POST", "/pipelines/shop/infer", json={"rows": rows})
        bob = site.token("bob")
        mine = _service(site, bob, "bob", mocks.Classifier, "bob-clf", seed=3)
        steps = {"steps": [{"kind": "model", "service": mine}]}
        site.api(bob, "POST", "/pipelines/private/deploy", json={"definition": steps})
        yield site


@pytest.fixture(scope="module")
def alice(site: Site) -> TestClient:
    return site.browser(site.token("alice"))


def _text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _table(page: str, caption: str) -> str:
    """The table whose caption starts with ``caption``."""
    tables: list[str] = re.findall(r"<table.*?</table>", page, re.S)
    for table in tables:
        found = re.search(r"<caption>(.*?)</caption>", table, re.S)
        if found and _text(found.group(1)).startswith(caption):
            return table
    raise AssertionError(f"no table {caption!r}")


def _rows(table: str) -> list[list[str]]:
    body = table[table.index("<tbody>") :]
    return [
        [_text(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_list(site: Site, alice: TestClient) -> None:
    page = alice.get("/pipelines")
    assert page.status_code == 200, page.text
    rows = _rows(_table(page.text, "Pipelines of account alice"))
    assert [r[:3] for r in rows] == [["shop", "2", "2"]]
    assert "private" not in page.text
    theirs = alice.get("/pipelines?account=bob")
    assert theirs.status_code == 200 and "private" not in theirs.text
    assert "has no pipeline that this token may see" in _text(theirs.text)
    signed_out = TestClient(site.client.app, follow_redirects=False).get("/pipelines")
    assert signed_out.status_code == 303


def test_versions_steps_and_shadow_results(site: Site, alice: TestClient) -> None:
    page = alice.get("/pipelines/shop")
    assert page.status_code == 200, page.text
    text = page.text
    versions = _rows(_table(text, "Versions of pipeline shop"))
    assert [(r[0], r[3]) for r in versions] == [("1", "stored"), ("2 (shown)", "deployed")]
    steps = re.findall(r"<li>(.*?)</li>", text[text.index('<ol class="steps"') :], re.S)
    assert len(steps) == 4 and "shadow deploy" in html.unescape(steps[0])
    assert "clf-a, clf-b" in html.unescape(steps[0]) and str(escape(FAULTY)) in steps[0]
    assert FAULTY not in text  # escaped everywhere
    # the shadow deploy: each challenger against the champion, over the 8 records of v2
    records = site.records().filter(
        [v == 2 for v in site.records().column("metadata.pipeline_version").to_pylist()]
    )
    champion = records.column("out.label").to_pylist()
    challenger = records.column("out_clf_b.label").to_pylist()
    agree = sum(x == y for x, y in zip(champion, challenger, strict=True))
    summary = _rows(_table(text, "Challengers of champion clf-a"))
    assert summary[0][:3] == ["clf-b out_clf_b.*", "8", "0"]
    assert f"label : {agree} of 8" in summary[0][3]  # (tags become spaces)
    assert summary[1][1:3] == ["8", "8"]  # the faulty one failed every time
    side = _rows(_table(text, "The newest 8 records of version 2"))
    assert len(side) == 8
    assert all(any(c.startswith("error: TransientServiceError") for c in r) for r in side)
    newest = records.column("in.text").to_pylist()[0]
    assert newest in side[0][1]
    # the anomalies: the validation flagged the records the champion called negative
    flagged = sum(label == "negative" for label in champion)
    words = _text(text)
    assert f"{flagged} flagged by a validation" in words and "0 failed inferences" in words
    assert _rows(_table(text, "Records flagged by each validation")) == [
        ["negative", str(flagged), f"{100 * flagged / 28:.0f}%"]
    ]
    assert "Over 28 records read" in words


def test_traffic_split_of_an_earlier_version(alice: TestClient) -> None:
    page = alice.get("/pipelines/shop?account=alice&version=1")
    assert page.status_code == 200, page.text
    split = _rows(_table(page.text, "Step 0: random split"))
    assert split == [["clf-a", "3", "75.0%", "15", "75%"], ["clf-b", "1", "25.0%", "5", "25%"]]
    assert "Version 1 has no shadow deploy." in page.text
    missing = alice.get("/pipelines/shop?version=9")
    assert missing.status_code == 404 and "has no version 9" in html.unescape(missing.text)


def test_the_log_with_time_filters(site: Site, alice: TestClient) -> None:
    times = sorted(set(site.records().column("time").to_pylist()))
    first, second = times[0], times[-1]
    assert second > first
    page = alice.get("/pipelines/shop")
    log = _rows(_table(page.text, "28 records of pipeline shop, newest first"))
    assert len(log) == 28
    # [second, ...): the records of the second call only, oldest first
    since = second.astimezone(UTC).replace(tzinfo=None).isoformat()
    page = alice.get("/pipelines/shop", params={"start": since})
    assert page.status_code == 200, page.text
    log = _rows(_table(page.text, "8 records of pipeline shop, oldest first"))
    assert {r[1] for r in log} == {f"s{i}" for i in range(8)}
    assert f'value="{since}"' in page.text  # the form keeps the filter
    # [..., second): the first call's (a time with its zone)
    until = second.astimezone(UTC).isoformat()
    page = alice.get("/pipelines/shop", params={"end": until, "limit": 5})
    table = _table(page.text, "5 records of pipeline shop, oldest first; more match")
    assert [r[1] for r in _rows(table)] == ["t0", "t1", "t2", "t3", "t4"]
    later = (second + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    assert "No record matches." in alice.get("/pipelines/shop", params={"start": later}).text
    flagged = alice.get("/pipelines/shop", params={"valid": "anomalies"})
    expected = sum(v == "negative" for v in site.records().column("out.label").to_pylist()[:8])
    rows = _rows(_table(flagged.text, f"{expected} records of pipeline shop"))
    assert len(rows) == expected
    wrong = alice.get("/pipelines/shop", params={"start": "yesterday"})
    assert wrong.status_code == 422 and "is not a date and time" in html.unescape(wrong.text)
    assert alice.get("/pipelines/shop", params={"limit": 0}).status_code == 422


def test_what_other_tokens_see(site: Site) -> None:
    bob = site.browser(site.token("bob"))
    theirs = bob.get("/pipelines/shop?account=alice")
    missing = bob.get("/pipelines/nothing?account=alice")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text.replace("shop", "NAME") == missing.text.replace("nothing", "NAME")
    own = bob.get("/pipelines")
    assert "private" in own.text and "shop" not in own.text
    # get without consume: the pipeline, not its log
    reader = site.browser(
        site.token(
            "carol",
            [{"resources": ["pipelines"], "functions": ["get", "query"], "accounts": ["alice"]}],
        )
    )
    page = reader.get("/pipelines/shop?account=alice")
    assert page.status_code == 200, page.text
    assert "may not read the pipeline's log" in html.unescape(page.text)
    assert "records of pipeline shop" not in page.text and "s0" not in page.text
    assert "Challengers of champion" not in page.text
    # no grant on pipelines at all: 403, as the API answers
    nothing = site.browser(
        site.token("carol", [{"resources": ["datasets"], "functions": ["*"], "accounts": ["*"]}])
    )
    assert nothing.get("/pipelines?account=alice").status_code == 403
    assert nothing.get("/pipelines/shop?account=alice").status_code == 403
