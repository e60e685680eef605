"""The Client's ``inferencesessions.client(..., output_adapter=...)`` checks replies as what
the override yields, not against the service's output schema (as LocalPlatform does)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.client.conftest import ALICE

from assay import errors
from assay.client import Client
from assay.local import mocks
from assay.schema.adapters import Rename


def test_an_override_is_checked_as_its_own_output(make_client: Callable[..., Client]) -> None:
    client = make_client()
    service = client.inferenceservices.create_mock(
        mocks.TextCompletion, account=ALICE, kwargs={"seed": 1}
    )
    created = client.inferencesessions.create({"account": ALICE, "inferenceService": service.id})
    session = created.inferencesession.id
    assert client.inferencesessions.wait(session, timeout=60).status == "Ready"
    with client.inferencesessions.client(session, created.token) as plain:
        replies = plain.infer({"text": "hello"})
    override = Rename({"text": "completion"})
    with client.inferencesessions.client(
        session, created.token, output_adapter=override
    ) as renamed:
        assert renamed.infer({"text": "hello"}) == [{"completion": r["text"]} for r in replies]

    def texts(stream):  # type: ignore[no-untyped-def]
        return (item["text"] for item in stream)

    with (
        client.inferencesessions.client(session, created.token, output_adapter=texts) as bare,
        pytest.raises(errors.ValidationError) as info,
    ):
        bare.infer({"text": "hello"})
    assert "must yield JSON objects" in str(info.value)
    client.inferencesessions.terminate(session)
