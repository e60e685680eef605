"""Attacks through the ``Host`` header: a request that names another host must not make the
server sign URLs that lead there (a victim's upload or download would go to the attacker's
host, signature included). A multi-user server takes the base of its signed URLs from its
settings only, and refuses to start when it cannot know it."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.security.conftest import ALICE
from tests.server.helpers import Server, dataset_request, parquet_bytes

from assay import errors
from assay.cli import main
from assay.server import ServerSettings, create_app

EVIL = "evil.example"


def _signed_upload_url(settings: ServerSettings) -> str:
    with TestClient(create_app(settings)) as client:
        alice = Server(client, settings).as_account(ALICE)
        data, schema = parquet_bytes()
        created = alice.create("datasets", dataset_request(ALICE, data, schema))
        url: str = alice.ok(
            "GET",
            f"/datasets/{created['id']}/upload/part-0.parquet",
            headers={"Host": EVIL, "X-Forwarded-Host": EVIL},
        )["url"]
        return url


def test_signed_urls_never_take_their_host_from_the_request(tmp_path: Path) -> None:
    settings = ServerSettings(
        data_dir=tmp_path / "data", port=8123, executor="threads", sandbox=False
    )
    url = _signed_upload_url(settings)
    assert url.startswith("http://127.0.0.1:8123/v0/storage/datasets/"), url
    public = settings.model_copy(update={"public_url": "https://assay.example.org"})
    assert _signed_upload_url(public).startswith("https://assay.example.org/v0/storage/")


def test_a_multi_user_server_on_another_host_needs_its_public_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    everywhere = ServerSettings(data_dir=tmp_path / "data", host="0.0.0.0", sandbox=False)
    with pytest.raises(errors.ValidationError, match="ASSAY_PUBLIC_URL or --public-url") as info:
        create_app(everywhere)
    assert info.value.field == "public_url"
    # the command refuses to start, in one line
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--data", str(tmp_path / "cli")]
    assert main([*argv, "--no-sandbox"]) == 2
    err = capsys.readouterr().err
    assert "ASSAY_PUBLIC_URL or --public-url" in err and len(err.strip().splitlines()) == 1
    # fine with a public URL, or for one user (who may rely on the request's URL)
    create_app(everywhere.model_copy(update={"public_url": "https://assay.example.org"}))
    create_app(everywhere.model_copy(update={"single_user": True}))
    for host, base in [("127.0.0.1", "http://127.0.0.1:8000"), ("::1", "http://[::1]:8000")]:
        assert ServerSettings(host=host).signed_url_base() == base
    assert ServerSettings(host="localhost", port=9).signed_url_base() == "http://localhost:9"
