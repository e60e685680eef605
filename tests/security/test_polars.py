"""Attacks through a pipeline's polars validation: polars' serialised form of an expression
can carry a pickled Python function (``map_batches``), which runs when the check is evaluated
— on the server, for a check that a client sent. Bob sends one whose unpickling writes a
file; the server must refuse it before storing it, and nothing may run, there or locally."""

from __future__ import annotations

import pathlib
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from tests.security.conftest import BOB
from tests.server.loopback import Served

from assay import errors
from assay.client import Client
from assay.local import mocks
from assay.pipelines.validations import evaluate_checks, parse_check

pl: Any = pytest.importorskip("polars")


class _Payload:
    """A callable whose unpickling writes ``marker`` (what an attacker's pickle would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __call__(self, series: Any) -> Any:
        return series

    def __reduce__(self) -> Any:
        return (pathlib.Path.write_text, (self.marker, "pwned"))


def malicious(marker: Path) -> dict[str, str]:
    """A stored polars check (``{"polars": <JSON>, ...}``) carrying the payload."""
    expr = pl.col("in.text").map_batches(_Payload(marker), return_dtype=pl.Boolean)
    return {"polars": expr.meta.serialize(format="json"), "polarsVersion": pl.__version__}


def test_a_stored_polars_check_with_a_pickled_function_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    table = pa.table({"in.text": ["a", "b"]})
    with pytest.raises(errors.ValidationError) as refused:
        check = parse_check("evil", malicious(marker))
        evaluate_checks([check], table)  # what the server does with every record
    message = str(refused.value)
    assert refused.value.field == "validations.evil" and "AnonymousFunction" in message
    assert "Assay's expression language" in message and "out.score > 0.9" in message
    assert not marker.exists()
    # the same expression, built here, is refused too: it could not be read back safely
    with pytest.raises(errors.ValidationError, match="map_batches"):
        parse_check("evil", pl.col("in.text").map_batches(_Payload(marker)))
    # a plugin library, a Series literal: refused as well
    plugin = (
        '{"Function":{"input":[{"Column":"a"}],"function":{"FfiPlugin":{"flags":{},'
        '"is_deterministic":true,"lib":"/tmp/x.so","symbol":"f","kwargs":[]}}}}'
    )
    with pytest.raises(errors.ValidationError, match="FfiPlugin"):
        parse_check("plugin", {"polars": plugin})
    with pytest.raises(errors.ValidationError, match="literal"):
        parse_check("listed", pl.col("a").is_in([1, 2]))
    # an object with a key twice cannot smuggle a second reading past the check
    twice = '{"Column":"a","AnonymousFunction":{}}'
    with pytest.raises(errors.ValidationError, match="one key"):
        parse_check("twice", {"polars": twice})
    # plain polars checks still work, and come back from their stored form
    for expr in (
        pl.col("in.text") == "a",
        pl.col("in.text").str.len_chars() > 0,
        pl.when(pl.col("in.text").is_null()).then(False).otherwise(True),
    ):
        stored = parse_check("plain", expr).stored
        assert evaluate_checks([parse_check("plain", stored)], table)["anomaly.count"]


def test_bob_cannot_deploy_a_pickled_check_to_the_server(
    attack_server: Served, bob: Client, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-on-the-server"
    writer = bob.inferenceservices.create_mock(mocks.TextCompletion, account=BOB, name="w")
    pipeline = bob.pipelines.create("evil").add_model_step(writer)
    pipeline.add_validations(evil=pl.col("in.text") == "x")
    definition = pipeline.definition.model_dump(mode="json", by_alias=True)
    definition["steps"][-1]["checks"]["evil"] = malicious(marker)
    reply = httpx.post(
        f"{attack_server.url}/v0/pipelines/evil/deploy",
        json={"definition": definition},
        headers={"Authorization": f"Bearer {attack_server.token(BOB)}"},
        timeout=120,
    )
    if reply.status_code < 300:  # accepted: what the attacker wanted — run it
        pipeline.infer({"text": "x"})
    assert reply.status_code == 422, reply.text
    assert "validations.evil" in reply.text or "evil" in reply.json()["detail"]
    assert "AnonymousFunction" in reply.json()["detail"]
    assert not marker.exists()
