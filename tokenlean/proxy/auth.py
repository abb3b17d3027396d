"""Optional API keys: ``Authorization: Bearer <key>`` checked in constant time against hashes.

Keys are kept only as SHA-256 digests in memory; the tenant id handed to stages (cache and pool
scoping) is a short prefix of that digest, so no stage, log or cache entry ever holds a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from tokenlean.errors import AuthenticationError

__all__ = ["ApiKeys", "tenant_id"]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def tenant_id(key: str) -> str:
    """The tenant id of an API key, as stages, logs and pool scopes (``demos.tenants``) see it."""
    return _tenant(_digest(key))


def _tenant(digest: bytes) -> str:
    return "key-" + digest.hex()[:16]


class ApiKeys:
    """The accepted keys; with none configured every request is accepted (tenant ``None``)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_digest(k) for k in keys if k]

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self._digests)

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant id for this ``Authorization`` header; ``AuthenticationError`` when wrong."""
        if not self._digests:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
        digest = _digest(token.strip())
        matched = False
        for known in self._digests:  # no early exit: time does not depend on which key matched
            matched |= hmac.compare_digest(known, digest)
        if not matched:
            raise AuthenticationError("invalid API key")
        return _tenant(digest)
