"""Accidents: list by bbox, period, time of day and severity (GeoJSON or CSV)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from trafficunit._errors import clip

from ..deps import BBoxDep, FormatDep, FullDep, LimitDep, StoreDep, comma_list, parse_time
from ..errors import BadRequest, Unavailable
from ..lists import list_response
from ..zonejoin import ZoneDep, table_zone_rows

router = APIRouter(tags=["accidents"])


@router.get("/accidents", summary="Accidents in a bbox and period (GeoJSON or CSV)")
async def list_accidents(
    request: Request,
    zf: ZoneDep,
    store: StoreDep,
    bbox: BBoxDep,
    limit: LimitDep,
    fmt: FormatDep,
    full: FullDep,
    from_: Annotated[str | None, Query(alias="from", description="First day (ISO date)")] = None,
    to: Annotated[str | None, Query(description="Last day, inclusive (ISO date)")] = None,
    light: Annotated[str | None, Query(description="day or night (local clock)")] = None,
    severity: Annotated[str | None, Query(description="KABCO letters, e.g. K,A")] = None,
    unit_id: Annotated[str | None, Query(description="Only accidents matched to this unit")] = None,
) -> Response:
    table = store.table("accidents")
    if table is None:
        raise Unavailable(store.missing("accidents"))
    start = parse_time(from_, "from")
    end = parse_time(to, "to")
    if end is not None and to is not None and len(to) <= 10:
        end = end + pd.Timedelta(days=1)
    if start is not None and end is not None and start >= end:
        raise BadRequest("from must be before to")
    if light not in (None, "", "day", "night"):
        raise BadRequest(f"light must be day or night, got {clip(light)}")
    rows = table_zone_rows(request, table, table.bbox_rows(bbox), zf)  # server/zonejoin.py
    t_ns = table.extra["t_ns"][rows]
    known = t_ns != np.iinfo(np.int64).min
    keep = np.ones(len(rows), dtype=bool)
    if start is not None:
        keep &= known & (t_ns >= start.value)
    if end is not None:
        keep &= known & (t_ns < end.value)
    if light:
        keep &= table.extra[light][rows]
    rows = rows[keep]
    sev = comma_list(severity)
    f = table.frame
    if sev is not None:
        rows = rows[f["severity"].iloc[rows].isin(sev).to_numpy()] if "severity" in f else rows[:0]
    if unit_id:
        if "unit_id" not in f:
            rows = rows[:0]
        else:
            same = f["unit_id"].iloc[rows].astype("string") == unit_id
            rows = rows[same.fillna(False).to_numpy(dtype=bool)]
    return list_response(table, rows, fmt=fmt, limit=limit, name="accidents", full=full)
