"""KPIs of the hazard closed loop per jurisdiction or road chief (JSON or CSV)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from trafficunit.ledger import hazard_kpis

from ..deps import parse_time
from ..errors import BadRequest
from ..ledger import ReaderDep, ServiceDep

router = APIRouter(tags=["kpis"])


@router.get("/kpis", summary="Hazard KPIs per jurisdiction or road chief (JSON or CSV)")
def kpis(
    request: Request,
    svc: ServiceDep,
    reader: ReaderDep,
    by: Annotated[Literal["jurisdiction", "road_chief"], Query()] = "jurisdiction",
    from_: Annotated[str | None, Query(alias="from", description="Reported from (ISO)")] = None,
    to: Annotated[str | None, Query(description="Reported before (ISO)")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
) -> Response:
    if by == "jurisdiction" and svc.zones is None:
        raise BadRequest(
            "no jurisdictions configured: set TRAFFICUNIT_LEDGER_JURISDICTIONS to a polygon file "
            "(districts, grids); or ask by=road_chief"
        )
    start, end = parse_time(from_, "from"), parse_time(to, "to")
    if (start is None) != (end is None):
        raise BadRequest("give both from and to, or neither")
    if start is not None and end is not None and start >= end:
        raise BadRequest("from must be before to")
    store = request.app.state.store
    store.check()
    units = store.tables.get("units")
    acc = store.tables.get("accidents")
    table = hazard_kpis(
        svc.ledger.frame(),
        by=by,
        zones=svc.zones,
        zone_field=getattr(svc, "zone_field", None),
        units=units.frame if units is not None else None,
        accidents=acc.frame if acc is not None else None,
        period=None if start is None else (start, end),
    )
    fmt = format or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
    if fmt == "csv":
        return Response(
            table.to_csv(float_format="%.4f"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="kpis-{by}.csv"'},
        )
    rows = []
    for name, rec in zip(table.index, table.to_dict(orient="records"), strict=True):
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in rec.items()
        }
        rows.append({by: str(name), **clean})
    body = {
        "by": by,
        "definitions": table.attrs.get("definitions", {}),
        "outside": table.attrs.get("outside", {}),
        "rows": rows,
    }
    return JSONResponse(json.loads(json.dumps(body, default=float)))
