"""Every page kind of the web UI in a real browser, over a real audit of two systems (made
through ``assay.client.Client``, as a user makes it): the dashboard, a list page per kind with
its filters and paging, an entity page per kind (spec, status, links to what it depends on
and what depends on it, artifacts, logs, labels, provenance), the safety-case viewer and its
sandbox, the comparison of the two systems. Each page: no console error, no failed request,
no request off the server, no serious accessibility problem (axe-core), a screenshot."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from tests.server.loopback import Served
from tests.ui.browser.browsing import ALICE, BOB, Visitor, needs_chromium
from tests.ui.browser.world import FAILURE, SCORE, Audit, build_audit, deploy_pipeline

from assay.client import Client
from assay.server.resources import RESOURCE_KINDS

pytestmark = [needs_chromium(), pytest.mark.slow]

#: Resource kinds whose entities cannot be made through the API (Reports are deprecated).
NOT_MADE = {"reports"}


@pytest.fixture(scope="module")
def alice_client(
    ui_server: Served, tokens: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Client]:
    with Client(
        ui_server.url,
        tokens(ALICE),
        progress=False,
        cache_dir=tmp_path_factory.mktemp("alice-cache"),
    ) as client:
        yield client


@pytest.fixture(scope="module")
def audit(alice_client: Client, tmp_path_factory: pytest.TempPathFactory) -> Audit:
    return build_audit(alice_client, ALICE, tmp_path_factory.mktemp("audit"))


@pytest.fixture(scope="module")
def pipeline(ui_server: Served, tokens: Callable[[str], str], alice_client: Client) -> str:
    return deploy_pipeline(alice_client, ui_server.url, tokens(ALICE), ALICE)


def links_to(visitor: Visitor, path: str) -> int:
    """How many links of the page lead to ``path``."""
    return int(visitor.page.locator(f'a[href="{path}"]').count())


def one_h1(visitor: Visitor) -> str:
    headings = visitor.page.locator("h1")
    assert headings.count() == 1, f"{visitor.page.url}: {headings.count()} h1 elements"
    return str(headings.inner_text())


def test_dashboard_counts_running_work_and_recent_failures(
    visit: Callable[..., Visitor], audit: Audit
) -> None:
    visitor = visit(ALICE)
    visitor.goto("/")
    one_h1(visitor)
    main = visitor.page.locator("main")
    text = main.inner_text()
    # counts by kind and status: alice's two evaluations, three measurements (one failed)
    assert re.search(r"evaluations\s+2\b", text, re.IGNORECASE), text
    assert re.search(r"measurements\s+3\b", text, re.IGNORECASE), text
    assert FAILURE in text, f"the recent failure's message is not on the dashboard:\n{text}"
    assert links_to(visitor, f"/measurements/{audit.failed}") >= 1
    visitor.check_accessibility("the dashboard")
    visitor.shot("dashboard")


@pytest.mark.parametrize("resource", [rk.resource for rk in RESOURCE_KINDS])
def test_list_page_of_each_kind(visit: Callable[..., Visitor], audit: Audit, resource: str) -> None:
    visitor = visit(ALICE)
    visitor.goto(f"/{resource}")
    one_h1(visitor)
    if resource in audit.by_resource:
        assert links_to(visitor, f"/{resource}/{audit.by_resource[resource]}") >= 1, (
            f"/{resource} does not link to alice's {resource} {audit.by_resource[resource]}"
        )
    visitor.check_accessibility(f"the list of {resource}")
    visitor.shot(resource)


def test_list_filters_and_paging(visit: Callable[..., Visitor], audit: Audit) -> None:
    visitor = visit(ALICE)
    page = visitor.page
    # paging: one evaluation a page, the "Next page" link leads to the other
    visitor.goto("/evaluations?limit=1")
    seen = {e for e in audit.evaluations if links_to(visitor, f"/evaluations/{e}")}
    assert len(seen) == 1, seen
    visitor.shot("page-1")
    page.get_by_role("link", name=re.compile("next", re.IGNORECASE)).click()
    page.wait_for_load_state()
    seen_next = {e for e in audit.evaluations if links_to(visitor, f"/evaluations/{e}")}
    assert len(seen_next) == 1 and seen_next != seen, (seen, seen_next)
    visitor.shot("page-2")
    # status: the failed measurement, not the complete ones
    visitor.goto("/measurements?status=Failed")
    assert links_to(visitor, f"/measurements/{audit.failed}") >= 1
    assert not any(links_to(visitor, f"/measurements/{m}") for m in audit.measurements)
    # name: one service of the two
    visitor.goto("/inferenceservices?name=system-2")
    assert links_to(visitor, f"/inferenceservices/{audit.services[1]}") >= 1
    assert not links_to(visitor, f"/inferenceservices/{audit.services[0]}")
    # account
    visitor.goto(f"/datasets?account={ALICE}")
    assert links_to(visitor, f"/datasets/{audit.dataset}") >= 1
    visitor.goto("/datasets?account=nobody")
    assert not links_to(visitor, f"/datasets/{audit.dataset}")
    visitor.check_accessibility("a filtered list")


@pytest.mark.parametrize(
    "resource", [rk.resource for rk in RESOURCE_KINDS if rk.resource not in NOT_MADE]
)
def test_entity_page_of_each_kind(
    visit: Callable[..., Visitor], audit: Audit, resource: str
) -> None:
    visitor = visit(ALICE)
    id = audit.by_resource[resource]
    visitor.goto(f"/{resource}/{id}")
    one_h1(visitor)
    text = visitor.page.locator("main").inner_text()
    assert id in text, f"/{resource}/{id} does not show its id"
    assert re.search(r"Complete|Ready", text), f"/{resource}/{id} does not show its status"
    visitor.check_accessibility(f"the page of a {resource} entity")
    visitor.shot(resource)


def test_entity_pages_link_dependencies_and_dependents(
    visit: Callable[..., Visitor], audit: Audit
) -> None:
    visitor = visit(ALICE)
    evaluation, measurement = audit.evaluations[0], audit.measurements[0]
    visitor.goto(f"/evaluations/{evaluation}")
    # what it depends on: its data set and service; what depends on it: its measurement
    assert links_to(visitor, f"/datasets/{audit.dataset}") >= 1
    assert links_to(visitor, f"/inferenceservices/{audit.services[0]}") >= 1
    assert links_to(visitor, f"/measurements/{measurement}") >= 1
    visitor.shot("evaluation")
    # follow the links down the audit: measurement, then its safety case
    visitor.page.locator(f'a[href="/measurements/{measurement}"]').first.click()
    visitor.page.wait_for_url(f"{visitor.base}/measurements/{measurement}")
    assert links_to(visitor, f"/evaluations/{evaluation}") >= 1
    assert links_to(visitor, f"/safetycases/{audit.safetycases[0]}") >= 1
    visitor.shot("measurement")


def test_entity_page_artifacts_logs_and_provenance(
    visit: Callable[..., Visitor], audit: Audit
) -> None:
    visitor = visit(ALICE)
    page = visitor.page
    visitor.goto(f"/datasets/{audit.dataset}")
    download = page.get_by_role("link", name=re.compile(r"part-0\.parquet"))
    assert download.count() >= 1, "the data set's file has no download link"
    href = download.first.get_attribute("href")
    assert href, "the download link has no href"
    got = page.request.get(visitor.url(href))
    assert got.status == 200, f"GET {href}: {got.status}"
    assert got.body()[:4] == b"PAR1", "the download is not the Parquet file"
    visitor.shot("dataset")

    visitor.goto(f"/measurements/{audit.measurements[0]}")
    # the workflow's log (live tail: loaded and refreshed by the page)
    page.get_by_text(re.compile("measured 20 rows")).first.wait_for()
    # provenance, once recorded: the digests of what it read
    assert re.search(r"[0-9a-f]{12}", page.locator("main").inner_text())
    assert page.get_by_text(re.compile("provenance", re.IGNORECASE)).count() >= 1
    visitor.shot("measurement-logs")

    visitor.goto(f"/measurements/{audit.failed}")
    assert FAILURE in page.locator("main").inner_text()
    visitor.shot("failed-measurement")


def test_labels_are_edited_through_the_form(visit: Callable[..., Visitor], audit: Audit) -> None:
    visitor = visit(ALICE)
    page = visitor.page
    visitor.goto(f"/datasets/{audit.dataset}")
    form = page.locator(f'form[action="/datasets/{audit.dataset}/labels"]')
    assert form.count() == 1, "the data set's page has no labels form"
    form.get_by_label(re.compile("key", re.IGNORECASE)).fill("suite")
    form.get_by_label(re.compile("value", re.IGNORECASE)).fill("browser")
    form.get_by_role("button").first.click()
    page.wait_for_url(re.compile(rf"{re.escape(visitor.base)}/datasets/{audit.dataset}(#.*)?$"))
    page.get_by_text(re.compile(r"suite")).first.wait_for()
    assert "browser" in page.locator("main").inner_text()
    visitor.shot("labelled")
    visitor.goto("/datasets?label=suite%3Dbrowser")
    assert links_to(visitor, f"/datasets/{audit.dataset}") >= 1
    visitor.goto("/datasets?label=suite%3Dother")
    assert not links_to(visitor, f"/datasets/{audit.dataset}")


def test_safety_case_viewer(visit: Callable[..., Visitor], audit: Audit) -> None:
    visitor = visit(ALICE)
    page = visitor.page
    case = audit.safetycases[0]
    visitor.goto(f"/safetycases/{case}")
    iframe = page.locator("iframe")
    assert iframe.count() == 1
    sandbox = iframe.get_attribute("sandbox")
    assert sandbox is not None, "the document's iframe is not sandboxed"
    assert "allow-same-origin" not in sandbox.split(), sandbox
    assert iframe.get_attribute("src") == f"/safetycases/{case}/document"
    # the document loaded in it, under its own strict policy
    frame = page.frame_locator("iframe")
    frame.get_by_text("Length audit").first.wait_for()
    document = page.request.get(visitor.url(f"/safetycases/{case}/document"))
    assert document.status == 200
    policy = document.headers.get("content-security-policy", "")
    assert "sandbox" in policy and "default-src 'none'" in policy, policy
    # its Score and Curve beside it
    text = page.locator("main").inner_text()
    assert SCORE in text or "Mean answer length" in text, text
    assert "share_below" in text or "Length distribution" in text, text
    visitor.check_accessibility("the safety-case viewer")
    visitor.shot("viewer")


def test_a_safety_case_document_cannot_reach_the_page(
    visit: Callable[..., Visitor], audit: Audit
) -> None:
    """The hostile document's script tries to mark the page around it and its own paragraph:
    the policy stops it from running at all, and even a script that did run there (here run by
    the test, with the frame's own rights) finds an opaque origin and no way into the page."""
    visitor = visit(ALICE)
    page = visitor.page
    # the browser reports the blocked script: expected here, and only here
    visitor.allow_console(
        r"^Blocked script execution in '[^']*/document' because the document's frame is sandboxed"
    )
    visitor.goto(f"/safetycases/{audit.hostile_case}")
    frame_element = page.locator("iframe").element_handle()
    assert frame_element is not None
    frame = frame_element.content_frame()
    assert frame is not None
    frame.wait_for_selector("#planted")
    assert frame.inner_text("#planted") == "planted", "the document's script ran"
    assert page.evaluate("() => document.body.getAttribute('data-pwned')") is None
    assert "pwned" not in page.title()
    reached = frame.evaluate(
        """() => {
            const tries = {};
            try { tries.parent = String(window.parent.document.title); }
            catch (e) { tries.parent = 'blocked: ' + e.name; }
            try { tries.cookie = document.cookie; } catch (e) { tries.cookie = 'blocked: ' + e.name; }
            tries.origin = window.origin;
            return tries;
        }"""
    )
    assert reached["parent"].startswith("blocked: SecurityError"), reached
    assert reached["origin"] == "null", reached
    assert reached["cookie"].startswith("blocked"), reached
    visitor.shot("hostile")


def test_compare_two_systems(visit: Callable[..., Visitor], audit: Audit) -> None:
    visitor = visit(ALICE)
    page = visitor.page
    visitor.goto(f"/compare?method={audit.case_method}")
    one_h1(visitor)
    main = page.locator("main")
    # the systems x scores table: both systems, the score
    for service in audit.services:
        assert links_to(visitor, f"/inferenceservices/{service}") >= 1 or service in (
            main.inner_text()
        ), f"system {service} is not in the comparison"
    tables = main.locator("table")
    assert tables.count() >= 1
    assert SCORE in main.inner_text() or "Mean answer length" in main.inner_text()
    # the chart with confidence intervals, inline SVG with a text alternative
    svg = main.locator("svg")
    assert svg.count() >= 1, "no chart"
    # the paired difference: the two systems answered the same 20 instances
    pairs = page.get_by_role("table", name=re.compile("paired differences", re.IGNORECASE))
    assert pairs.count() == 1, "no table of paired differences"
    (row,) = pairs.locator("tbody tr").all()
    cells = [c.strip() for c in row.locator("th, td").all_inner_texts()]
    assert "paired" in cells, cells  # not "not paired"
    assert "20" in cells, f"the pair's n is not the 20 shared instances: {cells}"
    visitor.check_accessibility("the comparison")
    visitor.shot("compare")
    # the CSV exports: the scores (a row per system) and the paired differences
    exports = main.locator('a[href^="/compare.csv"]')
    assert exports.count() >= 2, "no CSV export links"
    scores_href, differences_href = (exports.nth(i).get_attribute("href") or "" for i in range(2))
    scores = page.request.get(visitor.url(scores_href))
    assert scores.status == 200, scores.status
    assert scores.headers.get("content-type", "").startswith("text/csv")
    assert len(scores.text().strip().splitlines()) == 3, scores.text()  # a header, 2 systems
    assert all(s in scores.text() for s in audit.safetycases), scores.text()
    differences = page.request.get(visitor.url(differences_href))
    assert differences.status == 200, differences.status
    assert len(differences.text().strip().splitlines()) == 2, differences.text()  # one pair


def test_compare_without_a_method_offers_one(visit: Callable[..., Visitor], audit: Audit) -> None:
    visitor = visit(ALICE)
    visitor.goto("/compare")
    one_h1(visitor)
    visitor.check_accessibility("the comparison's start")
    visitor.shot("compare-start")


def test_pipelines_pages(visit: Callable[..., Visitor], pipeline: str) -> None:
    visitor = visit(ALICE)
    page = visitor.page
    visitor.goto("/pipelines")
    one_h1(visitor)
    link = page.get_by_role("link", name=pipeline, exact=True)
    assert link.count() == 1, "the pipeline is not listed"
    visitor.check_accessibility("the pipelines list")
    visitor.shot("pipelines")
    link.click()
    page.wait_for_url(re.compile(rf"{re.escape(visitor.base)}/pipelines/{pipeline}(\?.*)?$"))
    one_h1(visitor)
    main = page.locator("main")
    # its versions, and the log as a table: 20 + 8 records
    assert main.locator("table").count() >= 2, "no tables of versions and records"
    assert re.search(r"\b28 records\b", main.inner_text()), main.inner_text()[:2000]
    visitor.check_accessibility("a pipeline's page")
    visitor.shot("pipeline")
    # version 1: its traffic split between the two classifiers
    visitor.goto(f"/pipelines/{pipeline}?account={ALICE}&version=1")
    split = main.inner_text()
    assert re.search(r"traffic split", split, re.IGNORECASE), split[:2000]
    assert "classifier-1" in split and "classifier-2" in split, split[:2000]
    visitor.check_accessibility("a pipeline version's page")
    visitor.shot("pipeline-version-1")


def test_a_token_without_grants_sees_nothing_of_alices(
    visit: Callable[..., Visitor], audit: Audit, pipeline: str
) -> None:
    """bob's token has no grant on alice's account: no page shows him anything of hers, and
    her entities' pages are the same 404 as a missing entity's."""
    bob = visit(BOB)
    page = bob.page
    alices = [
        *audit.by_resource.values(),
        *audit.evaluations,
        *audit.measurements,
        *audit.safetycases,
        audit.failed,
        audit.hostile_case,
    ]

    def shows_nothing_of_alice(where: str, asked: str | None = None) -> None:
        """Nothing of alice's on the page but the id bob typed in (``asked``)."""
        content = page.content()
        leaked = [id for id in alices if id in content and id != asked]
        assert not leaked, f"{where} shows bob alice's {leaked}"
        assert FAILURE not in content, f"{where} shows bob alice's failure"

    bob.goto("/")
    shows_nothing_of_alice("the dashboard")
    bob.shot("dashboard")
    for rk in RESOURCE_KINDS:
        bob.goto(f"/{rk.resource}")
        shows_nothing_of_alice(f"/{rk.resource}")
        bob.goto(f"/{rk.resource}?account={ALICE}")
        shows_nothing_of_alice(f"/{rk.resource}?account={ALICE}")
    bob.shot("datasets")
    for path in ("/pipelines", f"/pipelines?account={ALICE}"):
        bob.goto(path)
        assert not page.get_by_role("link", name=pipeline, exact=True).count(), (
            f"{path} shows bob alice's pipeline"
        )
    bob.goto(f"/pipelines/{pipeline}?account={ALICE}", status=404)

    missing = "0" * 32
    for resource, id in audit.by_resource.items():
        bob.goto(f"/{resource}/{missing}", status=404)
        absent = page.locator("main").inner_text().replace(missing, "ID")
        bob.goto(f"/{resource}/{id}", status=404)
        assert page.locator("main").inner_text().replace(id, "ID") == absent, (
            f"bob can tell alice's {resource} {id} from a missing one"
        )
        shows_nothing_of_alice(f"/{resource}/{id}", asked=id)
    bob.shot("not-found")
    for path, asked in (
        (f"/safetycases/{audit.safetycases[0]}/document", audit.safetycases[0]),
        (f"/measurements/{audit.measurements[0]}/logs", audit.measurements[0]),
        (f"/compare?method={audit.case_method}", audit.case_method),
    ):
        bob.goto(path, status=404)
        shows_nothing_of_alice(path, asked)
