"""Create requests as the reference client (``dyff-client``) sends them, made into Assay's.

The reference client speaks the same REST API but spells two things its own way; each
translation here is small, changes nothing Assay's own clients send, and is listed in
``docs/design/server.md`` ("Compatibility with dyff-client"):

- **md5 digests in base64.** The reference declares an artifact's md5 as base64 (24
  characters); Assay records hex (32). A declared digest that is the base64 form of 16 bytes
  is stored as hex, so the upload's check compares like with like.
- **Mock services.** The reference's runner has no ``configuration`` (its schema forbids the
  field), so a ``mock`` runner without one serves the class named by ``runner.args[0]``, or
  :data:`DEFAULT_MOCK`. The server still accepts only Assay's own mocks.
"""

from __future__ import annotations

import base64
import re
from typing import Any, TypeVar

from assay.schema.base import SchemaModel, validate_model

__all__ = ["DEFAULT_MOCK", "md5_hex", "normalize_create_request"]

#: The mock a reference-style ``mock`` runner (no ``configuration``, no ``args``) serves.
DEFAULT_MOCK = "assay.local.mocks.TextCompletion"

#: The base64 form of 16 bytes: 22 characters, then ``==``.
_BASE64_MD5 = re.compile(r"^[A-Za-z0-9+/]{21}[AQgw]==$")

R = TypeVar("R", bound=SchemaModel)


def md5_hex(value: str) -> str:
    """``value`` as a hex md5: the base64 form of 16 bytes (the reference's spelling) is
    decoded; anything else is returned unchanged (and checked as it is)."""
    if _BASE64_MD5.match(value):
        return base64.b64decode(value).hex()
    return value


def _hex_digests(files: Any) -> bool:
    """Make the base64 md5 digests of ``files`` (declarations as dicts) hex; True when one
    changed."""
    changed = False
    for item in files if isinstance(files, list) else []:
        digest = item.get("digest") if isinstance(item, dict) else None
        md5 = digest.get("md5") if isinstance(digest, dict) else None
        if isinstance(digest, dict) and isinstance(md5, str) and md5_hex(md5) != md5:
            digest["md5"] = md5_hex(md5)
            changed = True
    return changed


def _mock_configuration(runner: Any) -> bool:
    """Give a reference-style ``mock`` runner its configuration; True when it had none."""
    if not isinstance(runner, dict) or runner.get("kind") != "mock" or "configuration" in runner:
        return False
    args = runner.get("args") or []
    runner["configuration"] = {"mockType": args[0] if len(args) == 1 else DEFAULT_MOCK}
    return True


def normalize_create_request(body: R) -> R:
    """``body`` (a validated create request) with the reference client's spellings made
    Assay's; ``body`` itself when there is nothing to change."""
    doc = body.model_dump(mode="json", exclude_unset=True)
    changed = _hex_digests(doc.get("artifacts"))
    artifact = doc.get("artifact")
    volume = artifact.get("volume") if isinstance(artifact, dict) else None
    if isinstance(volume, dict):
        changed = _hex_digests(volume.get("files")) or changed
    changed = _mock_configuration(doc.get("runner")) or changed
    if not changed:
        return body
    return validate_model(type(body), doc, what=type(body).__name__)
