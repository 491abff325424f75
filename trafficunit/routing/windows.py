"""A permit's daily time windows: ``HH:MM`` pairs, time zones, intervals over a period."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from .._errors import ValidationError
from .._validate import time_zone


def daily_intervals(
    windows: Sequence[Sequence[str]], start: Any, end: Any, tz: str = "UTC"
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Absolute intervals of daily time windows between two dates.

    ``[["22:00", "06:00"]]`` from 2025-11-30 to 2025-12-01 gives 22:00 on the 29th … 06:00
    on the 30th, 22:00 on the 30th … 06:00 on the 1st, and so on (a window past midnight ends on
    the next day), clipped to ``[start, end]``.

    Examples
    --------
    >>> iv = daily_intervals([["22:00", "06:00"]], "2025-11-30", "2025-11-30 23:59")
    >>> [(a.strftime("%d %H:%M"), b.strftime("%d %H:%M")) for a, b in iv]
    [('30 00:00', '30 06:00'), ('30 22:00', '30 23:59')]
    """
    check_tz(tz)
    try:
        t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"unreadable period {start!r} – {end!r}") from exc
    t0 = t0.tz_localize(tz) if t0.tzinfo is None else t0
    t1 = t1.tz_localize(tz) if t1.tzinfo is None else t1
    if t1 < t0:
        raise ValidationError(f"period ends ({t1}) before it starts ({t0})")
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    parsed = [(parse_hhmm(a), parse_hhmm(b)) for a, b in (_pair(w) for w in windows)]
    day = t0.normalize() - pd.Timedelta(days=1)
    while day <= t1:
        for a, b in parsed:
            s = day + a
            e = day + b if b > a else day + pd.Timedelta(days=1) + b
            s, e = max(s, t0), min(e, t1)
            if s < e:
                out.append((s, e))
        day += pd.Timedelta(days=1)
    return sorted(out)


def check_tz(tz: str) -> str:
    """``tz`` if it is a time zone name pandas knows, else ValidationError."""
    return time_zone(tz, " (use a name like 'Asia/Shanghai')")


def _pair(w: Sequence[str]) -> tuple[str, str]:
    if isinstance(w, str) or len(w) != 2:
        raise ValidationError(f"a time window is a pair ['HH:MM', 'HH:MM'], got {w!r}")
    return str(w[0]), str(w[1])


def parse_hhmm(text: str) -> pd.Timedelta:
    """``"22:30"`` → 22 h 30 min; ``"24:00"`` is the end of the day."""
    parts = str(text).strip().split(":")
    try:
        h, m = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        h, m = -1, -1
    if len(parts) > 2 or not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValidationError(f"time of day must be HH:MM (00:00–24:00), got {text!r}")
    return pd.Timedelta(hours=h, minutes=m)
