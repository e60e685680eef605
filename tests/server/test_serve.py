"""Settings, the ``assay token`` and ``assay serve`` commands, and a real server on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.server.conftest import ALICE
from tests.server.helpers import md5, module_files, module_request
from tests.server.loopback import serve

from assay import errors
from assay.cli import main
from assay.core.tokens import TokenSigner
from assay.server import RevocationList, ServerSettings, parse_grant

ROOT = Path(__file__).resolve().parents[2]


def test_settings_from_environment_and_overrides(tmp_path: Path) -> None:
    environ = {
        "ASSAY_PORT": "9001",
        "ASSAY_HOST": "0.0.0.0",
        "ASSAY_DATA_DIR": str(tmp_path),
        "ASSAY_MAX_BODY_BYTES": "1024",
        "ASSAY_PUBLIC_URL": "https://assay.example.org/",
        "ASSAY_LOG_LEVEL": "",  # empty: the default
    }
    settings = ServerSettings.from_env(environ, port=9002, host=None)
    assert (settings.port, settings.host) == (9002, "0.0.0.0")
    assert settings.max_body_bytes == 1024 and settings.data_dir == tmp_path
    assert settings.public_url == "https://assay.example.org"
    assert settings.log_level == "info"
    defaults = ServerSettings.from_env({})
    assert (defaults.host, defaults.port, defaults.data_dir) == (
        "127.0.0.1",
        8000,
        Path("assay-data"),
    )

    with pytest.raises(errors.ValidationError, match="ASSAY_PORT"):
        ServerSettings.from_env({"ASSAY_PORT": "eighty"})
    with pytest.raises(errors.ValidationError, match="signing_secret"):
        ServerSettings.from_env({}, signing_secret="short")
    with pytest.raises(errors.ValidationError, match="unknown server setting 'colour'"):
        ServerSettings.from_env({}, colour="red")


def test_every_setting_is_documented() -> None:
    page = (ROOT / "docs" / "design" / "server.md").read_text()
    for name, variable in ServerSettings.env_names().items():
        assert f"`{name}`" in page and f"`{variable}`" in page, name
        assert ServerSettings.model_fields[name].description, name


def test_secret_is_made_once_and_kept(tmp_path: Path) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data")
    secret = settings.secret()
    assert len(secret) == 32 and settings.secret() == secret
    assert (tmp_path / "data" / ".assay" / "secret.key").stat().st_mode & 0o777 == 0o600
    given = ServerSettings(data_dir=tmp_path / "data", signing_secret="x" * 20)
    assert given.secret() == b"x" * 20


def test_parse_grant() -> None:
    grant = parse_grant("datasets,evaluations:get,query", "alice")
    assert [str(r) for r in grant.resources] == ["datasets", "evaluations"]
    assert (grant.accounts, grant.entities) == (["alice"], [])
    grant = parse_grant("inferencesessions:consume:" + "a" * 32 + ",bob", "alice")
    assert (grant.accounts, grant.entities) == (["bob"], ["a" * 32])
    assert parse_grant("*:*:*", "alice").accounts == ["*"]
    for bad in ("datasets", "gadgets:get", "datasets:fly", "datasets:get:not valid!"):
        with pytest.raises(errors.ValidationError):
            parse_grant(bad, "alice")


def test_token_create_and_revoke_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "data")
    args = ["token", "create", "--data", data, "--init", "--account", ALICE, "--expires", "2"]
    assert main([*args, "--grant", "datasets:get,query", "--grant", "*:download"]) == 0
    token = capsys.readouterr().out.strip()
    claims = TokenSigner(ServerSettings(data_dir=Path(data)).secret()).verify(token)
    assert claims["sub"] == "Account/alice"
    assert [g["functions"] for g in claims["grants"]] == [["get", "query"], ["download"]]
    assert 1.9 * 86400 < claims["exp"] - time.time() <= 2 * 86400

    assert main(["token", "revoke", "--data", data, token]) == 0
    assert claims["jti"] in capsys.readouterr().err
    assert RevocationList(ServerSettings(data_dir=Path(data)).revoked_tokens_path).is_revoked(
        claims["jti"]
    )
    assert main(["token", "revoke", "--data", data, "some-token-id"]) == 0
    assert "some-token-id" in capsys.readouterr().err

    assert main(["token", "create", "--data", data, "--account", ALICE, "--grant", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("assay: error: grant 'x'") and err.count("\n") == 1
    assert main(["token", "create", "--data", data, "--account", "bad name!"]) == 2
    assert "not a valid account name" in capsys.readouterr().err
    assert main(["token"]) == 0 and "create" in capsys.readouterr().out


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ``assay serve`` on a free loopback port."""
    with serve(tmp_path) as server:
        yield server.url, server.data


def test_assay_serve_answers_over_real_http(
    served: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, data = served
    assert main(["token", "create", "--data", str(data), "--account", ALICE]) == 0
    token = capsys.readouterr().out.strip()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{base}/v0", headers=headers, timeout=30) as client:
        assert httpx.get(f"{base}/v0/models", timeout=10).status_code == 401
        files = module_files()
        created = client.post("/modules", json=module_request(ALICE, files))
        assert created.status_code == 201, created.text
        module = created.json()["id"]
        for path, content in files.items():
            signed = client.get(f"/modules/{module}/upload/{path}").json()
            assert signed["url"].startswith(f"{base}/v0/storage/modules/{module}/")
            put = httpx.put(signed["url"], content=content, headers=signed["headers"], timeout=30)
            assert put.status_code == 200 and put.json()["digest"]["md5"] == md5(content)
        assert client.post(f"/modules/{module}/finalize").status_code == 200
        deadline = time.monotonic() + 30
        while client.get(f"/modules/{module}").json()["status"] != "Ready":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        links = client.get(f"/modules/{module}/downlinks").json()
        assert sorted(link["artifact"]["path"] for link in links) == sorted(files)
        for link in links:
            with httpx.stream("GET", link["signedURL"]["url"], timeout=30) as response:
                body = response.read()
                assert response.headers["content-length"] == str(len(body))
            assert body == files[link["artifact"]["path"]]
        listed = client.get("/modules", params={"name": "audit", "id": "", "account": ""})
        assert [m["id"] for m in listed.json()] == [module]
        assert client.get("/gadgets").json()["detail"].startswith("no such route")
