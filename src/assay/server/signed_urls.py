"""Signed artifact URLs: how clients put and get artifact bytes without a bearer token.

``GET /R/{id}/upload/{path}`` and ``GET /R/{id}/downlinks`` answer with URLs of the form
``<base>/v0/storage/<resource>/<id>/<path>?signature=<sig>``. The signature is a token made by
the platform's :class:`~assay.core.tokens.TokenSigner` (an HMAC-SHA256 over its claims) whose
subject is ``"<METHOD> <resource>/<id>/<path>"``, with an expiry (default one hour) and no
grants: it cannot be used as a bearer token, and a URL made for one path or method is refused
(403) for any other, as is an expired or altered one.

Where the artifact storage serves URLs itself (an S3 bucket: presigned URLs,
``ArtifactStorage.signed_url``), the routes hand out those instead, after the same access
checks; the bytes then never pass through the server (``docs/design/storage-s3.md``).
"""

from __future__ import annotations

import time
from urllib.parse import quote

from assay import errors
from assay.core.tokens import TokenSigner
from assay.schema.platform import StorageSignedURL
from assay.storage import ArtifactStorage

__all__ = ["STORAGE_PREFIX", "ArtifactURLSigner"]

#: Where the storage endpoints are served, below the API's root.
STORAGE_PREFIX = "/v0/storage"


def _subject(method: str, resource: str, entity_id: str, path: str) -> str:
    return f"{method.upper()} {resource}/{entity_id}/{path}"


class ArtifactURLSigner:
    """Makes and checks signed artifact URLs: the storage's own (``storage``, where it
    serves URLs) or the server's."""

    def __init__(
        self,
        signer: TokenSigner,
        *,
        lifetime: float = 3600.0,
        storage: ArtifactStorage | None = None,
    ) -> None:
        self._signer = signer
        self._lifetime = lifetime
        self._storage = storage

    def signature(
        self,
        method: str,
        resource: str,
        entity_id: str,
        path: str,
        *,
        lifetime: float | None = None,
    ) -> str:
        """The signature allowing ``method`` on one artifact until the URL's lifetime ends."""
        expires = time.time() + (self._lifetime if lifetime is None else lifetime)
        return self._signer.sign(
            subject=_subject(method, resource, entity_id, path), grants=[], expires=expires
        )

    def url(
        self,
        base_url: str,
        method: str,
        resource: str,
        entity_id: str,
        path: str,
        *,
        lifetime: float | None = None,
        md5: str | None = None,
    ) -> StorageSignedURL:
        """The signed URL for ``method`` on ``path`` of entity ``entity_id``: the storage's
        own where it serves URLs (a ``PUT`` carries ``md5``, the declared digest, for the
        storage to check), else one on the server at ``base_url`` (no trailing slash)."""
        if self._storage is not None:
            direct = self._storage.signed_url(
                entity_id,
                path,
                method,
                lifetime=self._lifetime if lifetime is None else lifetime,
                md5=md5,
            )
            if direct is not None:
                url, headers = direct
                return StorageSignedURL(url=url, method=method.upper(), headers=headers)
        signature = self.signature(method, resource, entity_id, path, lifetime=lifetime)
        location = f"{STORAGE_PREFIX}/{resource}/{entity_id}/{quote(path, safe='/')}"
        return StorageSignedURL(
            url=f"{base_url}{location}?signature={signature}", method=method.upper(), headers={}
        )

    def verify(
        self, method: str, resource: str, entity_id: str, path: str, signature: str | None
    ) -> None:
        """Refuse (403) unless ``signature`` was made for exactly this method and artifact and
        has not expired."""
        if not signature:
            raise errors.PermissionDeniedError(
                "this storage URL has no signature; ask the API for a signed URL "
                "(GET /R/{id}/upload/{path} or GET /R/{id}/downlinks)"
            )
        try:
            claims = self._signer.verify(signature)
        except errors.AuthenticationError as exc:
            reason = (
                "has expired"
                if "expired" in str(exc)
                else "is not valid (altered, or made elsewhere)"
            )
            raise errors.PermissionDeniedError(
                f"the URL's signature {reason}; ask the API for a new signed URL"
            ) from None
        if claims.get("sub") != _subject(method, resource, entity_id, path) or claims.get("grants"):
            raise errors.PermissionDeniedError(
                f"the URL's signature was not made for {method.upper()} on {path!r} of "
                f"{entity_id}; ask the API for a signed URL for this artifact"
            )
