"""The entity store: documents, versions, queries, paging and claims (one process).

Every test runs on SQLite and on PostgreSQL, each test in a schema of its own, in the
session's server (``tests/postgres.py``: a throwaway cluster, or ``ASSAY_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.postgres import postgres_schema

import assay.store
from assay import errors
from assay.schema.ids import generate_entity_id
from assay.store import EntityStore, Record

BASE_TIME = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DATABASES = ["sqlite", "postgresql"]


@contextmanager
def fresh_database(kind: str, directory: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'assay.db'}"
        return
    with postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def make_doc(
    *,
    kind: str = "Dataset",
    account: str = "alice",
    status: str | None = "Created",
    reason: str | None = None,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    created: datetime | str = BASE_TIME,
    id: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": id or generate_entity_id(),
        "kind": kind,
        "account": account,
        "status": status,
        "reason": reason,
        "creationTime": created if isinstance(created, str) else created.isoformat(),
        "labels": labels or {},
        "annotations": [{"key": "note", "value": "anything else is kept as it is"}],
    }
    if name is not None:
        doc["name"] = name
    return doc


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path, request) as fresh:
        yield fresh


@pytest.fixture
def store(url: str) -> Iterator[EntityStore]:
    with EntityStore(url) as opened:
        yield opened


def test_public_names_are_sorted_and_exist() -> None:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions
    def key(name: str) -> tuple[bool, bool, str]:
        return (not name.isupper(), not name[:1].isupper(), name)

    assert assay.store.__all__ == sorted(assay.store.__all__, key=key)
    for name in assay.store.__all__:
        assert hasattr(assay.store, name), name


# -- documents -------------------------------------------------------------------------------


def test_round_trip(store: EntityStore) -> None:
    doc = make_doc(labels={"team": "red"}, name="squad")
    assert store.create(doc) == 1
    assert store.get(doc["id"]) == Record(doc, 1)
    assert store.get(doc["id"], kind="Dataset") == Record(doc, 1)
    assert store.require(doc["id"], kind="Dataset").doc == doc
    assert store.get(generate_entity_id()) is None


def test_wrong_kind_is_not_found(store: EntityStore) -> None:
    doc = make_doc(kind="Dataset")
    store.create(doc)
    assert store.get(doc["id"], kind="Model") is None
    with pytest.raises(errors.NotFoundError, match=rf"Model '{doc['id']}' does not exist"):
        store.require(doc["id"], kind="Model")
    with pytest.raises(errors.NotFoundError, match=r"Entity 'f+' does not exist"):
        store.require("f" * 32)


def test_records_survive_reopening(url: str) -> None:
    doc = make_doc(labels={"team": "red"})
    with EntityStore(url) as first:
        first.create(doc, refs={"dataset": [doc["id"]]})
    with EntityStore(url) as second:
        assert second.require(doc["id"]) == Record(doc, 1)
        assert second.query(labels={"team": "red"}, refs={"dataset": doc["id"]}) == [doc]


def test_sqlite_file_and_its_directory_are_created(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "assay.db"
    doc = make_doc(labels={"team": "red"})
    with EntityStore.sqlite(path) as first:
        first.create(doc, refs={"dataset": [doc["id"]]})
    with EntityStore.sqlite(path) as second:
        assert second.require(doc["id"]) == Record(doc, 1)
        assert second.query(labels={"team": "red"}, refs={"dataset": doc["id"]}) == [doc]


def test_a_second_store_on_the_same_database_sees_every_write(url: str) -> None:
    with EntityStore(url) as one, EntityStore(url) as two:
        doc = make_doc()
        one.create(doc)
        assert two.require(doc["id"]).version == 1
        two.update(doc["id"], lambda d: {**d, "status": "Admitted"})
        assert one.require(doc["id"]) == Record({**doc, "status": "Admitted"}, 2)


def test_in_memory_store_is_shared_by_threads() -> None:
    with EntityStore("sqlite://") as memory:
        docs = [make_doc() for _ in range(40)]
        threads = [threading.Thread(target=memory.create, args=(doc,)) for doc in docs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert memory.count() == 40


@pytest.mark.parametrize("key", ["id", "kind", "account"])
def test_document_without_a_required_key_is_refused(store: EntityStore, key: str) -> None:
    doc = make_doc()
    del doc[key]
    with pytest.raises(errors.ValidationError, match=f"no '{key}'") as caught:
        store.create(doc)
    assert caught.value.field == key
    assert store.count() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "not-an-id"}, "id"),
        ({"account": 7}, "account"),
        ({"status": ["Created"]}, "status"),
        ({"labels": {"team": 1}}, "labels"),
        ({"labels": ["team"]}, "labels"),
        ({"creationTime": "yesterday"}, "creationTime"),
        ({"lastTransitionTime": 12}, "lastTransitionTime"),
    ],
)
def test_malformed_indexed_fields_are_refused(
    store: EntityStore, change: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.ValidationError, match=field) as caught:
        store.create({**make_doc(), **change})
    assert caught.value.field == field


def test_malformed_refs_are_refused(store: EntityStore) -> None:
    with pytest.raises(errors.ValidationError, match="refs"):
        store.create(make_doc(), refs={"dataset": ["not-an-id"]})


def test_documents_that_are_not_json_are_refused(store: EntityStore) -> None:
    with pytest.raises(errors.ValidationError, match="JSON"):
        store.create({**make_doc(), "when": datetime.now(UTC)})
    with pytest.raises(errors.ValidationError, match="JSON"):
        store.create({**make_doc(), "score": float("nan")})
    assert store.count() == 0


def test_duplicate_id_is_a_conflict_naming_the_id(store: EntityStore) -> None:
    doc = make_doc()
    store.create(doc)
    with pytest.raises(errors.ConflictError, match=doc["id"]):
        store.create(make_doc(id=doc["id"], kind="Model"))
    assert store.require(doc["id"]).doc == doc


def test_create_many_is_all_or_nothing(store: EntityStore) -> None:
    existing = make_doc()
    store.create(existing)
    batch = [make_doc() for _ in range(3)] + [make_doc(id=existing["id"])]
    with pytest.raises(errors.ConflictError, match=existing["id"]):
        store.create_many(batch)
    with pytest.raises(errors.ConflictError, match="twice"):
        store.create_many([batch[0], batch[0]])
    assert store.count() == 1
    store.create_many(batch[:3], refs=[{"dataset": existing["id"]}, None, {}])
    assert store.count() == 4
    assert [d["id"] for d in store.query(refs={"dataset": existing["id"]})] == [batch[0]["id"]]
    with pytest.raises(errors.ValidationError, match="one refs mapping"):
        store.create_many([make_doc()], refs=[])


def test_missing_creation_time_comes_from_the_clock(url: str) -> None:
    clock = FakeClock(BASE_TIME.timestamp())
    with EntityStore(url, clock=clock) as timed:
        early = make_doc(created=BASE_TIME + timedelta(seconds=1))
        undated = make_doc()
        del undated["creationTime"]
        late = make_doc(created=BASE_TIME - timedelta(seconds=1))
        for doc in (early, undated, late):
            timed.create(doc)
        assert [d["id"] for d in timed.query()] == [late["id"], undated["id"], early["id"]]
        assert "creationTime" not in timed.require(undated["id"]).doc


# -- replace, update, delete -------------------------------------------------------------------


def test_replace_is_compare_and_set(store: EntityStore) -> None:
    doc = make_doc()
    store.create(doc)
    assert store.replace(doc["id"], {**doc, "status": "Admitted"}, expected_version=1) == 2
    with pytest.raises(errors.ConflictError, match="modified concurrently") as caught:
        store.replace(doc["id"], {**doc, "status": "Failed"}, expected_version=1)
    assert doc["id"] in str(caught.value)
    assert store.require(doc["id"]) == Record({**doc, "status": "Admitted"}, 2)
    assert store.query(status="Admitted") == [{**doc, "status": "Admitted"}]
    assert store.query(status="Created") == []


def test_replace_refuses_missing_entities_and_identity_changes(store: EntityStore) -> None:
    doc = make_doc()
    with pytest.raises(errors.NotFoundError, match=doc["id"]):
        store.replace(doc["id"], doc, expected_version=1)
    store.create(doc)
    with pytest.raises(errors.ValidationError, match="id cannot change"):
        store.replace(doc["id"], make_doc(), expected_version=1)
    with pytest.raises(errors.ValidationError, match="kind cannot change"):
        store.replace(doc["id"], {**doc, "kind": "Model"}, expected_version=1)
    assert store.require(doc["id"]).version == 1


def test_replace_rewrites_labels_and_keeps_refs_unless_given(store: EntityStore) -> None:
    target, other = generate_entity_id(), generate_entity_id()
    doc = make_doc(labels={"team": "red", "tier": "gold"})
    store.create(doc, refs={"dataset": [target]})
    changed = {**doc, "labels": {"team": "blue"}}
    store.replace(doc["id"], changed, expected_version=1)
    assert store.query(labels={"team": "red"}) == []
    assert store.query(labels={"tier": None}) == []
    assert store.query(labels={"team": "blue"}) == [changed]
    assert store.query(refs={"dataset": target}) == [changed]
    store.replace(doc["id"], changed, expected_version=2, refs={"model": [other]})
    assert store.query(refs={"dataset": target}) == []
    assert store.query(refs={"model": other}) == [changed]


def test_update_applies_the_change(store: EntityStore) -> None:
    doc = make_doc(labels={"a": "1"})
    store.create(doc)

    def add_label(current: dict[str, Any]) -> dict[str, Any]:
        current["labels"]["b"] = "2"
        return current

    record = store.update(doc["id"], add_label, kind="Dataset")
    assert record.version == 2
    assert record.doc["labels"] == {"a": "1", "b": "2"}
    assert store.require(doc["id"]) == record
    assert store.count(labels={"b": "2"}) == 1


def test_update_returning_none_writes_nothing(store: EntityStore) -> None:
    doc = make_doc()
    store.create(doc)

    def meddle(current: dict[str, Any]) -> None:
        current["status"] = "Failed"  # changed in place but "no change" returned: ignored

    assert store.update(doc["id"], meddle) == Record(doc, 1)
    assert store.require(doc["id"]) == Record(doc, 1)


def test_update_sets_refs_and_checks_the_kind(store: EntityStore) -> None:
    doc, dependency = make_doc(), generate_entity_id()
    store.create(doc)
    store.update(doc["id"], lambda d: d, refs={"dependency": [dependency]})
    assert store.count(refs={"dependency": dependency}) == 1
    with pytest.raises(errors.NotFoundError, match=f"Model '{doc['id']}'"):
        store.update(doc["id"], lambda d: d, kind="Model")
    with pytest.raises(errors.NotFoundError):
        store.update(generate_entity_id(), lambda d: d)
    with pytest.raises(errors.ValidationError, match="id cannot change"):
        store.update(doc["id"], lambda d: {**d, "id": generate_entity_id()})


def test_update_can_derive_the_refs_from_the_new_document(store: EntityStore) -> None:
    doc, first, second = make_doc(), generate_entity_id(), generate_entity_id()
    store.create({**doc, "members": [first]}, refs={"members": [first]})

    def refs_of(new: dict[str, Any]) -> dict[str, list[str]]:
        return {"members": list(new["members"])}

    store.update(doc["id"], lambda d: {**d, "members": [second]}, refs=refs_of)
    assert (store.count(refs={"members": first}), store.count(refs={"members": second})) == (0, 1)


def test_query_by_a_nested_field(store: EntityStore) -> None:
    docs = [
        {**make_doc(kind="Method"), "output": {"kind": kind}}
        for kind in ("Measurement", "SafetyCase")
    ]
    for doc in docs:
        store.create(doc)
    store.create(make_doc(kind="Method"))  # no such field: never matches

    def found(**filters: Any) -> set[str]:
        return {d["id"] for d in store.query(kind="Method", **filters)}

    assert found(fields={"output.kind": "SafetyCase"}) == {docs[1]["id"]}
    assert found(fields={"output.kind": ["SafetyCase", "Measurement"]}) == {d["id"] for d in docs}
    assert found(fields={"output.kind": "Report"}) == set()
    assert store.count(kind="Method", fields={"output.kind": "Measurement"}) == 1
    with pytest.raises(errors.ValidationError, match="dotted document path"):
        found(fields={"output..kind": "x"})


def test_delete_purges_everything(store: EntityStore) -> None:
    doc, target = make_doc(labels={"team": "red"}), generate_entity_id()
    store.create(doc, refs={"dataset": [target]})
    assert store.claim(doc["id"], "worker-1", ttl=60)
    assert store.delete(doc["id"]) is True
    assert store.get(doc["id"]) is None
    assert store.count(labels={"team": None}) == 0
    assert store.count(refs={"dataset": target}) == 0
    assert store.claim_owner(doc["id"]) is None
    assert store.delete(doc["id"]) is False
    store.create(doc)  # the id can be used again
    assert store.require(doc["id"]).version == 1


def test_closed_store_refuses_calls(url: str) -> None:
    closed = EntityStore(url)
    closed.close()
    with pytest.raises(errors.PlatformError, match="closed"):
        closed.get(generate_entity_id())


# -- queries -----------------------------------------------------------------------------------

KINDS = ("Dataset", "Model", "Evaluation")
ACCOUNTS = ("alice", "bob", "carol")
STATUSES = ("Created", "Admitted", "Complete", "Failed")
REASONS = (None, "FailedDependency", "UnsatisfiedDependency")
NAMES = (None, "alpha", "beta")
TEAMS = ("red", "blue", "green")
TIERS = (None, "gold", "silver")


@pytest.fixture(scope="module", params=DATABASES)
def population(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EntityStore, list[Any]]]:
    """90 varied entities (some sharing a creation time), with their refs, in a store."""
    rng = random.Random(7)
    targets = [generate_entity_id() for _ in range(4)]
    docs: list[dict[str, Any]] = []
    refs: list[dict[str, list[str]]] = []
    for i in range(90):
        labels = {"team": rng.choice(TEAMS)}
        tier = rng.choice(TIERS)
        if tier is not None:
            labels["tier"] = tier
        docs.append(
            make_doc(
                kind=rng.choice(KINDS),
                account=rng.choice(ACCOUNTS),
                status=rng.choice(STATUSES),
                reason=rng.choice(REASONS),
                name=rng.choice(NAMES),
                labels=labels,
                # every third entity shares its creation time with the one before
                created=BASE_TIME + timedelta(seconds=(i - i % 3 // 2)),
            )
        )
        refs.append(
            {
                "dataset": [rng.choice(targets)],
                "dependency": rng.sample(targets, k=rng.randint(0, 3)),
            }
        )
    docs_and_refs = list(zip(docs, refs, strict=True))
    rng.shuffle(docs_and_refs)  # insertion order is not creation order
    with (
        fresh_database(request.param, tmp_path_factory.mktemp("population"), request) as url,
        EntityStore(url) as shared,
    ):
        for doc, doc_refs in docs_and_refs:
            shared.create(doc, refs=doc_refs)
        yield shared, [docs_and_refs, targets]


def expected(
    entries: list[tuple[dict[str, Any], dict[str, list[str]]]], **filters: Any
) -> list[str]:
    """The ids the store should return: the query filters, evaluated in Python."""

    def one(value: Any, wanted: Any) -> bool:
        return value == wanted if isinstance(wanted, str) else value in wanted

    def keep(doc: dict[str, Any], refs: dict[str, list[str]]) -> bool:
        for field, wanted in filters.items():
            if field == "labels":
                for key, value in wanted.items():
                    if key not in doc["labels"]:
                        return False
                    if value is not None and not one(doc["labels"][key], value):
                        return False
            elif field == "refs":
                for ref_field, value in wanted.items():
                    ids = [value] if isinstance(value, str) else value
                    if not set(ids) & set(refs.get(ref_field, [])):
                        return False
            elif not one(doc.get("id" if field == "ids" else field), wanted):
                return False
        return True

    chosen = [doc for doc, refs in entries if keep(doc, refs)]
    chosen.sort(key=lambda d: (datetime.fromisoformat(d["creationTime"]), d["id"]))
    return [doc["id"] for doc in chosen]


def random_filters(rng: random.Random, targets: list[str]) -> dict[str, Any]:
    def pick(values: tuple[Any, ...]) -> Any:
        choices = [v for v in values if v is not None]
        return rng.choice(choices) if rng.random() < 0.5 else rng.sample(choices, k=2)

    filters: dict[str, Any] = {}
    for field, values in [
        ("kind", KINDS),
        ("account", ACCOUNTS),
        ("status", STATUSES),
        ("reason", REASONS),
        ("name", NAMES),
    ]:
        if rng.random() < 0.35:
            filters[field] = pick(values)
    if rng.random() < 0.5:
        labels: dict[str, Any] = {"team": pick(TEAMS)}
        if rng.random() < 0.5:
            labels["tier"] = None if rng.random() < 0.5 else pick(TIERS)
        filters["labels"] = labels
    if rng.random() < 0.4:
        field = rng.choice(["dataset", "dependency"])
        filters["refs"] = {field: rng.choice(targets) if rng.random() < 0.5 else targets[:2]}
    return filters


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"kind": "Dataset"},
        {"kind": ["Dataset", "Model"]},
        {"kind": ("Evaluation",)},
        {"account": "bob"},
        {"account": ["alice", "carol"]},
        {"status": "Failed"},
        {"status": ["Complete", "Failed"]},
        {"reason": "FailedDependency"},
        {"reason": ["FailedDependency", "UnsatisfiedDependency"]},
        {"name": "alpha"},
        {"name": ["alpha", "beta"]},
        {"labels": {"team": "red"}},
        {"labels": {"team": ["red", "green"]}},
        {"labels": {"tier": None}},
        {"labels": {"tier": None, "team": "blue"}},
        {"labels": {"tier": "gold", "team": ["blue", "red"]}},
        {"labels": {"nonexistent": None}},
        {"kind": "Model", "account": "alice", "status": ["Created", "Admitted"]},
        {"kind": [], "account": "alice"},
        {"kind": "Dataset", "labels": {"team": "red"}, "status": "Complete"},
    ],
)
def test_query_filters(population: tuple[EntityStore, list[Any]], filters: dict[str, Any]) -> None:
    store, (entries, _) = population
    want = expected(entries, **filters)
    assert [d["id"] for d in store.query(**filters)] == want
    assert store.count(**filters) == len(want)
    assert [d["id"] for d in store.iter_query(**filters, page_size=7)] == want
    assert [d["id"] for d in store.query(**filters, order="descending")] == want[::-1]


def test_query_by_ids(population: tuple[EntityStore, list[Any]]) -> None:
    store, (entries, _) = population
    some = [doc["id"] for doc, _ in entries[:5]]
    assert [d["id"] for d in store.query(ids=some)] == expected(entries, ids=some)
    assert [d["id"] for d in store.query(ids=some[0])] == [some[0]]
    assert store.query(ids=[generate_entity_id()]) == []


def test_query_refs(population: tuple[EntityStore, list[Any]]) -> None:
    store, (entries, targets) = population
    cases: list[dict[str, str | list[str]]] = [
        {"dataset": targets[0]},
        {"dataset": targets[:2]},
        {"dependency": targets[3]},
        {"dataset": targets[1], "dependency": [targets[2], targets[3]]},
        {"dataset": []},
        {"unknown": targets[0]},
    ]
    for refs in cases:
        want = expected(entries, refs=refs)
        assert [d["id"] for d in store.query(refs=refs)] == want, refs
        assert store.count(refs=refs) == len(want)
    assert store.count(refs={"dataset": targets}) == len(entries)


def test_query_filter_combinations(population: tuple[EntityStore, list[Any]]) -> None:
    store, (entries, targets) = population
    rng = random.Random(11)
    nonempty = 0
    for _ in range(150):
        filters = random_filters(rng, targets)
        want = expected(entries, **filters)
        nonempty += bool(want)
        assert [d["id"] for d in store.query(**filters)] == want, filters
        assert store.count(**filters) == len(want), filters
    assert nonempty > 30  # the combinations are not all trivially empty


def test_query_returns_whole_documents(population: tuple[EntityStore, list[Any]]) -> None:
    store, (entries, _) = population
    by_id = {doc["id"]: doc for doc, _ in entries}
    for doc in store.query(kind="Model"):
        assert doc == by_id[doc["id"]]


def test_ordering_is_by_creation_time_then_id(store: EntityStore) -> None:
    same = [make_doc(created=BASE_TIME) for _ in range(5)]
    # the same instant written three ways, and instants whose strings sort the wrong way
    offset = make_doc(created="2024-05-01T13:00:00+01:00")
    naive = make_doc(created="2024-05-01T12:00:00")
    zulu = make_doc(created="2024-05-01T12:00:00Z")
    early = make_doc(created="2024-05-01T11:59:59.999999-00:00")
    late = make_doc(created="2024-05-01T07:00:00.000001-05:00")
    for doc in [*same, offset, naive, zulu, late, early]:
        store.create(doc)
    tied = sorted(d["id"] for d in [*same, offset, naive, zulu])
    want = [early["id"], *tied, late["id"]]
    assert [d["id"] for d in store.query()] == want
    assert [d["id"] for d in store.query(order="descending")] == want[::-1]
    assert [d["id"] for d in store.query(limit=3)] == want[:3]


@pytest.mark.parametrize("order", ["ascending", "descending"])
def test_keyset_paging_through_2500_entities(store: EntityStore, order: str) -> None:
    rng = random.Random(3)
    docs = [
        make_doc(kind=rng.choice(KINDS), created=BASE_TIME + timedelta(seconds=rng.randint(0, 500)))
        for _ in range(2500)
    ]
    store.create_many(docs)
    everything = store.query(order=order)
    assert len(everything) == 2500
    pages: list[list[dict[str, Any]]] = []
    after = None
    while page := store.query(order=order, limit=100, after=after):
        assert len(page) <= 100
        pages.append(page)
        after = page[-1]["id"]
    assert len(pages) == 25
    assert [d for page in pages for d in page] == everything
    models = [d["id"] for d in store.query(kind="Model", order=order)]
    paged: list[str] = []
    after = None
    while page := store.query(kind="Model", order=order, limit=100, after=after):
        paged.extend(d["id"] for d in page)
        after = page[-1]["id"]
    assert paged == models
    assert [d["id"] for d in store.iter_query(order=order, page_size=100)] == [
        d["id"] for d in everything
    ]


def test_unknown_after_is_a_validation_error(store: EntityStore) -> None:
    store.create(make_doc())
    unknown = generate_entity_id()
    with pytest.raises(errors.ValidationError, match=unknown) as caught:
        store.query(after=unknown)
    assert caught.value.field == "after"


@pytest.mark.parametrize(
    "arguments",
    [
        {"order": "sideways"},
        {"limit": -1},
        {"limit": "10"},
        {"kind": 3},
        {"kind": ["Dataset", 3]},
        {"labels": ["team"]},
        {"labels": {"team": 3}},
        {"refs": {"dataset": None}},
    ],
)
def test_bad_query_arguments_are_validation_errors(
    store: EntityStore, arguments: dict[str, Any]
) -> None:
    with pytest.raises(errors.ValidationError):
        store.query(**arguments)


def test_limit_zero_and_bad_page_size(store: EntityStore) -> None:
    store.create(make_doc())
    assert store.query(limit=0) == []
    with pytest.raises(errors.ValidationError, match="page_size"):
        store.iter_query(page_size=0)


# -- claims ------------------------------------------------------------------------------------


def test_claims_between_two_owners(url: str) -> None:
    clock = FakeClock()
    entity = generate_entity_id()
    with EntityStore(url, clock=clock) as one, EntityStore(url, clock=clock) as two:
        assert one.claim_owner(entity) is None
        assert one.claim(entity, "worker-1", ttl=10)
        assert one.claim_owner(entity) == ("worker-1", clock.now + 10)
        assert not two.claim(entity, "worker-2", ttl=10)
        assert one.claim(entity, "worker-1", ttl=20)  # already ours: renewed
        assert two.claim_owner(entity) == ("worker-1", clock.now + 20)
        assert not two.renew(entity, "worker-2", ttl=10)
        assert not two.release(entity, "worker-2")
        assert one.claim_owner(entity) == ("worker-1", clock.now + 20)
        assert one.release(entity, "worker-1")
        assert one.claim_owner(entity) is None
        assert two.claim(entity, "worker-2", ttl=10)


def test_an_expired_claim_can_be_taken_over(url: str) -> None:
    tick = 2.0**-12  # times are exact binary fractions, so that equality is exact
    clock = FakeClock(1000.0)
    entity = generate_entity_id()
    with EntityStore(url, clock=clock) as store:
        assert store.claim(entity, "worker-1", ttl=4 * tick)
        clock.now += 2 * tick
        assert not store.claim(entity, "worker-2", ttl=5)
        assert store.renew(entity, "worker-1", ttl=4 * tick)
        assert store.claim_owner(entity) == ("worker-1", 1000.0 + 6 * tick)
        clock.now += 3 * tick
        assert not store.claim(entity, "worker-2", ttl=5)
        clock.now += tick  # a claim is valid while now < expires_at
        assert store.claim(entity, "worker-2", ttl=5)
        assert store.claim_owner(entity) == ("worker-2", 1005.0 + 6 * tick)
        assert not store.renew(entity, "worker-1", ttl=5)  # worker-1 lost the lease
        assert not store.release(entity, "worker-1")
        assert store.renew(entity, "worker-2", ttl=60)
        assert store.claim_owner(entity) == ("worker-2", 1060.0 + 6 * tick)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), True])
def test_claim_ttl_must_be_positive(store: EntityStore, ttl: float) -> None:
    with pytest.raises(errors.ValidationError, match="ttl"):
        store.claim(generate_entity_id(), "worker", ttl=ttl)
