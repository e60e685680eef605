"""LocalPlatform on PostgreSQL: entities are written, labelled, queried and kept."""

from __future__ import annotations

from pathlib import Path

from tests.postgres import postgres_schema

from assay.local import LocalPlatform

MODEL = {
    "account": "tester",
    "name": "m",
    "artifact": {"kind": "Mock"},
    "source": {"kind": "Mock"},
    "resources": {"storage": "1Gi"},
}


def test_platform_on_postgres_labels_queries_and_persists(
    postgres_url: str, tmp_path: Path
) -> None:
    with postgres_schema(postgres_url) as url:
        with LocalPlatform(storage_root=tmp_path, account="tester", database_url=url) as platform:
            model = platform.models.create(MODEL)
            labeled = platform.models.label(model.id, {"team": "red"})
            assert labeled.labels == {"team": "red"}
            assert [m.id for m in platform.models.query(labels={"team": "red"})] == [model.id]
            assert platform.models.query(labels={"team": "blue"}) == []
        with LocalPlatform(storage_root=tmp_path, account="tester", database_url=url) as again:
            assert again.models.get(model.id).labels == {"team": "red"}
            assert again.models.get(model.id).name == "m"
            assert [m.id for m in again.models.query(labels={"team": "red"})] == [model.id]
