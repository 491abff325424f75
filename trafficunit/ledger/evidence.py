"""Evidence: photos and documents attached to hazards, investigations and fatal reviews.

Files are stored beside the ledger (a folder, content-addressed by SHA-256, written
atomically); their record (owner, name, type, size, hash, who, when) is in the ledger's
``evidence`` table. The content type is taken from the file's own first bytes (JPEG, PNG,
WebP, PDF), never from what the client claims; anything else is refused, and so is a file
over the size limit.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from . import lifecycle as lc
from ._tables import ensure
from ._values import iso, now_utc, parse_hazard_id
from .errors import NotFoundError
from .errors import ValidationError as LedgerValidationError
from .store import Ledger

__all__ = ["ALLOWED_TYPES", "OWNERS", "attach", "list_evidence", "read_evidence", "sniff"]

#: Content types accepted, by their magic bytes.
ALLOWED_TYPES = ("image/jpeg", "image/png", "image/webp", "application/pdf")
#: What evidence can be attached to.
OWNERS = ("hazard", "investigation", "review")

_DDL = [
    """CREATE TABLE IF NOT EXISTS evidence (
        pk {PK},
        owner_type TEXT NOT NULL,
        owner_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        CHECK (owner_type IN ('hazard', 'investigation', 'review'))
    )""",
    "CREATE INDEX IF NOT EXISTS evidence_owner ON evidence (owner_type, owner_id)",
]
_SAFE = re.compile(r"[^A-Za-z0-9._\-\u4e00-\u9fff]+")


def sniff(data: bytes) -> str | None:
    """The content type of ``data`` from its first bytes, or None when not allowed."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:5] == b"%PDF-":
        return "application/pdf"
    return None


def _owner_exists(ledger: Ledger, owner_type: str, owner_id: str) -> str:
    if owner_type == "hazard":
        return ledger.get(owner_id).id
    with ledger.db.transaction() as tx:
        from .investigations import ensure_tables

        ensure_tables(ledger)
        if owner_type == "investigation":
            row = tx.one(
                "SELECT accident_id FROM investigations WHERE accident_id = ?", (owner_id,)
            )
        else:
            row = tx.one(
                "SELECT accident_id FROM investigations WHERE accident_id = ? AND severity = 'K'",
                (owner_id,),
            )
    if row is None:
        raise NotFoundError(f"no {owner_type} {owner_id!r}")
    return str(owner_id)


def attach(
    ledger: Ledger,
    folder: str | Path,
    owner_type: str,
    owner_id: str,
    data: bytes,
    *,
    filename: str,
    actor: str,
    role: str,
    max_bytes: int = 10_000_000,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store a file as evidence of a hazard (``"H12"``), an investigation or a review (by
    accident id); its record."""
    if role != "system":
        lc.require(role, "report")
    if owner_type not in OWNERS:
        raise LedgerValidationError(f"evidence belongs to one of {', '.join(OWNERS)}")
    if not data:
        raise LedgerValidationError("the file is empty")
    if len(data) > max_bytes:
        raise LedgerValidationError(f"the file has {len(data)} bytes; the limit is {max_bytes}")
    ctype = sniff(data)
    if ctype is None:
        raise LedgerValidationError(
            f"not an allowed file type; evidence may be {', '.join(ALLOWED_TYPES)}"
        )
    if owner_type == "hazard":
        owner_id = f"H{parse_hazard_id(owner_id)}"
    owner_id = _owner_exists(ledger, owner_type, owner_id)
    name = _SAFE.sub("_", Path(str(filename)).name)[:120] or "evidence"
    digest = hashlib.sha256(data).hexdigest()
    target = Path(folder) / digest[:2] / digest
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    ensure(ledger.db, "evidence", _DDL)
    t = iso(now_utc(now))
    with ledger.db.transaction(write=True) as tx:
        pk = int(
            tx.scalar(
                "INSERT INTO evidence (owner_type, owner_id, filename, content_type, size, "
                "sha256, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk",
                (owner_type, owner_id, name, ctype, len(data), digest, t, actor),
            )
        )
        row = tx.one("SELECT * FROM evidence WHERE pk = ?", (pk,))
    assert row is not None
    return _public(row)


# fmt: off
#: Columns of an evidence row shown as they are stored (``size`` as an integer).
_SHOWN = (
    "owner_type", "owner_id", "filename", "content_type", "size", "sha256", "created_at",
    "created_by",
)
# fmt: on


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {"id": f"E{row['pk']}", **{k: row[k] for k in _SHOWN}, "href": f"/evidence/E{row['pk']}"}
    out["size"] = int(out["size"])
    return out


def list_evidence(ledger: Ledger, owner_type: str, owner_id: str) -> list[dict[str, Any]]:
    """The evidence of one hazard, investigation or review."""
    ensure(ledger.db, "evidence", _DDL)
    if owner_type == "hazard":
        owner_id = f"H{parse_hazard_id(owner_id)}"
    with ledger.db.transaction() as tx:
        rows = tx.all(
            "SELECT * FROM evidence WHERE owner_type = ? AND owner_id = ? ORDER BY pk",
            (owner_type, owner_id),
        )
    return [_public(r) for r in rows]


def read_evidence(
    ledger: Ledger, folder: str | Path, evidence_id: str
) -> tuple[dict[str, Any], bytes]:
    """An evidence record and its bytes."""
    ensure(ledger.db, "evidence", _DDL)
    s = str(evidence_id).strip().upper().removeprefix("E")
    if not (s.isascii() and s.isdigit()) or len(s) > 18:
        raise NotFoundError(f"no evidence {evidence_id!r}")
    with ledger.db.transaction() as tx:
        row = tx.one("SELECT * FROM evidence WHERE pk = ?", (int(s),))
    if row is None:
        raise NotFoundError(f"no evidence {evidence_id!r}")
    path = Path(folder) / row["sha256"][:2] / row["sha256"]
    if not path.exists():
        raise NotFoundError(f"evidence {evidence_id} is recorded but its file is missing")
    return _public(row), path.read_bytes()
