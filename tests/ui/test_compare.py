"""The comparison pages over a real server in-process: ``/compare`` (systems x scores, the
SVG chart, paired differences) and ``/compare.csv``, signed in through the sign-in form, each
showing only what the token's grants allow."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator

import pytest
from markupsafe import escape
from starlette.testclient import TestClient
from tests.analysis.comparison_world import GAMMA, World, build

from assay import comparison
from assay.schema import ids
from assay.server import ServerSettings, create_app, issue_token
from assay.server.state import ServerState

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Site:
    """The app with the audit in its store."""

    def __init__(self, client: TestClient, world: World) -> None:
        self.client = client
        self.world = world

    @property
    def state(self) -> ServerState:
        state: ServerState = self.client.app.state.assay  # type: ignore[attr-defined]
        return state

    def token(self, account: str, grants: list[dict[str, object]] | None = None) -> str:
        return issue_token(self.state.core, account=account, grants=grants)

    def browser(self, token: str) -> TestClient:
        """A new client (its own cookies) signed in through the form."""
        client = TestClient(self.client.app, follow_redirects=False)
        form = client.get("/signin")
        assert form.status_code == 200
        match = CSRF.search(form.text)
        assert match, form.text
        answer = client.post("/signin", data={"token": token, "csrf_token": match.group(1)})
        assert answer.status_code == 303, answer.text
        return client


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("compare-ui")
    settings = ServerSettings(data_dir=root / "data", shutdown_timeout=20, executor="threads")
    with TestClient(create_app(settings)) as client:
        state: ServerState = client.app.state.assay  # type: ignore[attr-defined]
        yield Site(client, build(state.core, root / "files"))


@pytest.fixture(scope="module")
def alice(site: Site) -> TestClient:
    return site.browser(site.token("alice"))


def _text(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def test_signed_out_goes_to_sign_in(site: Site) -> None:
    client = TestClient(site.client.app, follow_redirects=False)
    for path in ("/compare", f"/compare.csv?method={site.world.method}"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")


def test_pick_a_method(site: Site, alice: TestClient) -> None:
    page = alice.get("/compare")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert f'<option value="{site.world.method}">length audit' in page.text
    assert site.world.measure_method not in page.text  # a Method without scores is no choice
    assert '<label for="method">' in page.text


def test_systems_scores_chart_and_paired_differences(site: Site, alice: TestClient) -> None:
    world = site.world
    page = alice.get(f"/compare?method={world.method}")
    assert page.status_code == 200, page.text
    text = page.text
    table = comparison.compare_method(site.state.core, world.method)
    # the table: alice's three systems and their scores, never bob's
    for name in ("alpha", "beta"):
        assert f">{name}</a>" in text
    assert str(escape(GAMMA)) in text and GAMMA not in text  # escaped, never markup
    assert "<b>gamma</b>" not in text
    assert world.systems["delta"].case not in text and ">delta<" not in text
    for row in table.rows:
        if row.analysis == world.systems["delta"].case:
            continue
        assert str(escape(row.scores["mean_length"].value_string())) in text
        assert f'value="{row.analysis}" checked' in text
    # the chart: an accessible inline SVG with intervals, no script, no style attribute
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert 'role="img"' in svg and "<title id=" in svg and "<desc id=" in svg
    assert svg.count("<circle") == 3 and "style=" not in svg and "<script" not in svg
    assert not re.search(r"<script(?![^>]*\bsrc=)", text)  # no inline script on the page
    assert "alpha: " in svg and "interval" in svg
    # the pairs: alpha - beta paired with its statistics; gamma not, saying why
    alpha, beta = world.systems["alpha"], world.systems["beta"]
    pair = next(p for p in table.pairs if {p.a, p.b} == {alpha.case, beta.case})
    assert pair.statistics is not None
    words = _text(text)
    assert "paired: identical data and methods; 30 instances compared on 'length'" in words
    assert f"{pair.statistics.p_value:.3g}" in words
    assert "not paired: the data differ" in words
    assert words.count("not paired: the data differ") == 2  # gamma with alpha, with beta
    spec = table.spec("mean_length")
    assert spec is not None
    assert spec.format_quantity(pair.statistics.difference) in words


def test_choose_the_score_and_the_pairs(site: Site, alice: TestClient) -> None:
    world = site.world
    alpha, gamma = world.systems["alpha"], world.systems[GAMMA]
    page = alice.get(
        f"/compare?method={world.method}&score=max_length&pair={alpha.case}&pair={gamma.case}"
    )
    assert page.status_code == 200, page.text
    assert '<option value="max_length" selected>' in page.text
    assert page.text.count(" checked>") == 2
    words = _text(page.text)
    assert words.count("not paired: the data differ") == 1 and "instances compared" not in words
    unknown = alice.get(f"/compare?method={world.method}&score=median")
    assert unknown.status_code == 422
    assert "no score &#39;median&#39;" in unknown.text and "mean_length" in unknown.text
    bad = alice.get("/compare?method=not-an-id")
    assert bad.status_code == 422 and "is not an entity id" in bad.text


def test_csv_exports(site: Site, alice: TestClient) -> None:
    world = site.world
    answer = alice.get(f"/compare.csv?method={world.method}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == 6  # three systems x two scores
    assert {r["system"] for r in rows} == {"alpha", "beta", "'" + GAMMA}
    pairs = alice.get(f"/compare.csv?method={world.method}&part=differences")
    lines = list(csv.DictReader(io.StringIO(pairs.text)))
    assert len(lines) == 3 and sum(line["paired"] == "true" for line in lines) == 1
    # the page's export links are these
    page = alice.get(f"/compare?method={world.method}")
    link = html.unescape(re.findall(r'href="(/compare\.csv\?[^"]+)"', page.text)[0])
    assert alice.get(link).text == answer.text
    wrong = alice.get(f"/compare.csv?method={world.method}&part=everything")
    assert wrong.status_code == 422


def test_another_accounts_method_is_not_found(site: Site) -> None:
    world = site.world
    bob = site.browser(site.token("bob"))
    page = bob.get("/compare")
    assert world.method not in page.text  # alice's Method is not offered
    theirs = bob.get(f"/compare?method={world.method}")
    missing = bob.get(f"/compare?method={'0' * 32}")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.text.replace(world.method, "ID") == missing.text.replace("0" * 32, "ID")
    assert bob.get(f"/compare.csv?method={world.method}").status_code == 404
    for system in world.systems.values():
        assert system.case not in theirs.text


def test_grants_limit_what_is_compared(site: Site) -> None:
    """A token that may get alice's Method but only query the scores of alice's safety case
    ``alpha`` sees that one row, no other system's score, and no per-instance data."""
    world = site.world
    alpha = world.systems["alpha"]
    score_ids = [ids.score_id(alpha.case, name) for name in ("mean_length", "max_length")]
    grants: list[dict[str, object]] = [
        {"resources": ["methods"], "functions": ["get"], "entities": [world.method]},
        {"resources": ["scores"], "functions": ["query"], "entities": score_ids},
    ]
    carol = site.browser(site.token("carol", grants))
    page = carol.get(f"/compare?method={world.method}")
    assert page.status_code == 200, page.text
    assert page.text.count('name="pair"') == 1
    for name, system in world.systems.items():
        if name != "alpha":
            assert system.case not in page.text and system.service not in page.text
    # the service's name is not carol's to see: its id is shown instead
    assert f"InferenceService {alpha.service[:8]}" in page.text
    nothing = site.browser(
        site.token(
            "carol",
            [{"resources": ["methods"], "functions": ["get"], "entities": [world.method]}],
        )
    )
    refused = nothing.get(f"/compare?method={world.method}")
    assert refused.status_code == 403 and "does not allow" in refused.text


def test_paired_needs_the_measurements_data(site: Site) -> None:
    """Without ``download`` on the Measurements, a pair says the data is not readable."""
    world = site.world
    grants: list[dict[str, object]] = [
        {"resources": ["*"], "functions": ["get", "query"], "accounts": ["alice"]},
    ]
    reader = site.browser(site.token("alice", grants))
    page = reader.get(f"/compare?method={world.method}")
    assert page.status_code == 200, page.text
    assert "is not readable with this token" in _text(page.text)
    assert "30 instances compared" not in _text(page.text)
