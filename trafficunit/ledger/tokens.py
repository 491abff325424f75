"""Access tokens: created with a role, stored only as their HMAC-SHA256 hash, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from .._errors import clip
from . import lifecycle as lc
from ._core import LedgerCore
from ._values import dt, iso, json_time, now_utc, text
from .errors import AuthenticationError, NotFoundError, ValidationError
from .records import Principal

__all__ = ["Tokens", "hash_token"]

_TOKEN_KEY = b"trafficunit-token-v1"


def hash_token(token: str) -> str:
    """The stored form of a token: its HMAC-SHA256 hex digest.

    The ledger keeps only this, never the token; a server comparing a configured bootstrap
    token with a presented one compares these digests (``hmac.compare_digest``).

    >>> len(hash_token("tu_example"))
    64
    """
    return hmac.new(_TOKEN_KEY, token.encode("utf-8"), hashlib.sha256).hexdigest()


class Tokens(LedgerCore):
    """The ledger's tokens (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def create_token(
        self, role: str, *, label: str | None = None, created_by: str | None = None
    ) -> tuple[str, str]:
        """Create a token of ``role``; ``(token_id, token)``. Only the hash is stored."""
        if role not in lc.ROLES:
            raise ValidationError(f"unknown role {clip(role)}; use one of {', '.join(lc.ROLES)}")
        label = text(label, "label", limit=200)
        token = "tu_" + secrets.token_urlsafe(32)
        token_id = "T" + secrets.token_hex(4)
        with self.db.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO tokens (token_id, token_hash, role, label, created_at, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, hash_token(token), role, label, iso(now_utc(None)), created_by),
            )
        return token_id, token

    def authenticate(self, token: str) -> Principal:
        """The principal of a token; AuthenticationError when unknown or revoked."""
        if not token or len(token) > 200:
            raise AuthenticationError("missing or malformed token")
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT token_id, role, label, revoked_at FROM tokens WHERE token_hash = ?",
                (hash_token(token),),
            )
        if row is None:
            raise AuthenticationError("unknown token")
        if row["revoked_at"] is not None:
            raise AuthenticationError(f"token {row['token_id']} was revoked")
        return Principal(row["token_id"], row["role"], row["label"])

    def revoke_token(self, token_id: str) -> None:
        """Revoke a token by its id; NotFoundError if there is none."""
        with self.db.transaction(write=True) as tx:
            n = tx.execute(
                "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (iso(now_utc(None)), token_id),
            )
            if (
                n == 0
                and tx.one("SELECT 1 AS x FROM tokens WHERE token_id = ?", (token_id,)) is None
            ):
                raise NotFoundError(f"no token {clip(token_id)}")

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token's id, role, label and times (never the token or its hash)."""
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT token_id, role, label, created_at, created_by, revoked_at FROM tokens "
                "ORDER BY pk"
            )
        return [
            {
                **{k: r[k] for k in ("token_id", "role", "label", "created_by")},
                "created_at": json_time(dt(r["created_at"])),
                "revoked_at": json_time(dt(r["revoked_at"])),
            }
            for r in rows
        ]
