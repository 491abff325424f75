"""Values the ledger stores and shows: times (fixed-width ISO text), free text, hazard ids.

Every ledger module reads and writes times through these helpers, so the stored form (text that
sorts as time) and the JSON form (``...Z``) are defined once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .._errors import clip
from .errors import NotFoundError, ValidationError

__all__ = [
    "EVENT_FIELDS",
    "SYSTEM",
    "dt",
    "event_fields",
    "iso",
    "json_time",
    "now_utc",
    "parse_hazard_id",
    "parse_time",
    "text",
]

_MAX_TEXT = 4000
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
#: The actor and role of the ledger's own sweeps.
SYSTEM = "system"


def parse_time(value: Any, what: str = "time") -> datetime:
    """A timezone-aware UTC datetime from a datetime, pandas Timestamp or ISO text.

    Naive values are taken as UTC.
    """
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = pd.Timestamp(value).to_pydatetime()
        except (ValueError, TypeError) as exc:
            raise ValidationError(f"{what}={clip(value)} is not an ISO date or datetime") from exc
        if pd.isna(t):
            raise ValidationError(f"{what}={clip(value)} is not a date")
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    if not 1900 <= t.year <= 2200:
        raise ValidationError(f"{what}={clip(value)} is outside the years 1900-2200")
    return t


def iso(t: datetime | None) -> str | None:
    """The stored form of a time: fixed-width ISO 8601 UTC (sorts as text)."""
    return None if t is None else t.astimezone(UTC).strftime(_TS)


def dt(value: Any) -> datetime | None:
    """A stored time (or None) as a UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    return datetime.strptime(str(value), _TS).replace(tzinfo=UTC)


def json_time(t: datetime | None) -> str | None:
    """The JSON form of a time: ISO 8601 with ``Z``."""
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def now_utc(now: datetime | None) -> datetime:
    """``now`` checked and in UTC, or the current time."""
    return datetime.now(UTC) if now is None else parse_time(now, "now")


def text(value: Any, what: str, *, required: bool = False, limit: int = _MAX_TEXT) -> str | None:
    """Free text stripped and bounded; None when empty (ValidationError when ``required``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{what} is required")
        return None
    out = str(value).strip()
    if len(out) > limit:
        raise ValidationError(f"{what} has {len(out)} characters, more than {limit}")
    if "\x00" in out:
        raise ValidationError(f"{what} contains a NUL character")
    return out


#: The columns every history event has (hazards, investigations), in order.
EVENT_FIELDS = ("actor", "role", "action", "from_state", "to_state", "comment", "details")


def event_fields(*values: Any) -> dict[str, Any]:
    """A history event's :data:`EVENT_FIELDS` from their values (``details`` a dict or None,
    stored as JSON)."""
    row = dict(zip(EVENT_FIELDS, values, strict=True))
    row["details"] = json.dumps(row["details"], ensure_ascii=False) if row["details"] else None
    return row


def parse_hazard_id(hazard_id: str | int) -> int:
    """The database key of a public hazard id (``"H12"`` or ``12``); NotFoundError if malformed."""
    text = str(hazard_id).strip()
    digits = text[1:] if text[:1] in ("H", "h") else text
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise NotFoundError(f"no hazard {clip(hazard_id)}: hazard ids look like H123")
    return int(digits)
