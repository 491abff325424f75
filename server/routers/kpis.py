"""KPIs of the closed loop per zone of a jurisdiction tree, rolling up (JSON or CSV); the older
flat table per jurisdiction polygon or road chief stays behind ``by=``."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import hazard_kpis
from trafficunit.ledger import investigations as inv
from trafficunit.ledger.kpis import zone_kpis

from ..deps import ParentQuery, TreeQuery, parse_time
from ..errors import BadRequest
from ..ledger import ReaderDep, ServiceDep, responses
from ..operations import OpsDep

router = APIRouter(tags=["kpis"])


def _clean(v: Any) -> Any:
    if v is None or v is pd.NA:
        return None
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def _period(from_: str | None, to: str | None) -> tuple[Any, Any] | None:
    start, end = parse_time(from_, "from"), parse_time(to, "to")
    if (start is None) != (end is None):
        raise BadRequest("give both from and to, or neither")
    if start is not None and end is not None and start >= end:
        raise BadRequest("from must be before to")
    return None if start is None else (start, end)


def _csv(table: pd.DataFrame, name: str) -> Response:
    return Response(
        table.to_csv(float_format="%.6f"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/kpis",
    summary="KPIs per zone of a jurisdiction tree, rolling up; targets, health index (JSON/CSV)",
    responses=responses(_400="No zones configured, unknown tree/level/zone, bad period"),
)
async def kpis(
    request: Request,
    svc: ServiceDep,
    ops: OpsDep,
    reader: ReaderDep,
    tree: TreeQuery = None,
    level: Annotated[str | None, Query(description="Only this level (district...)")] = None,
    parent: ParentQuery = None,
    by: Annotated[
        Literal["zone", "jurisdiction", "road_chief"] | None,
        Query(description="zone (default), or the older flat tables"),
    ] = None,
    from_: Annotated[str | None, Query(alias="from", description="Period start (ISO)")] = None,
    to: Annotated[str | None, Query(description="Period end, exclusive (ISO)")] = None,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
) -> Response:
    period = _period(from_, to)
    fmt = format or ("csv" if "text/csv" in request.headers.get("accept", "") else "json")
    store = request.app.state.store
    legacy_default = by is None and tree is None and svc.zones is not None
    if by in ("road_chief", "jurisdiction") or (legacy_default and not ops.has_zone_file()):
        return _flat(request, svc, by or "jurisdiction", period, fmt)
    zones = ops.require_zones()
    name = ops.tree(tree)
    if level is not None and level not in zones.trees[name]:
        raise BadRequest(f"tree {name!r} has no level {level!r}; levels: {zones.trees[name]}")
    acc = store.tables.get("accidents")

    def compute() -> pd.DataFrame:
        return zone_kpis(
            zones,
            name,
            level=level,
            parent=parent,
            units=ops.units(store),
            unit_zones=ops.unit_zones(store),
            accidents=acc.frame if acc is not None else None,
            hazards=svc.ledger.frame(),
            investigations=inv.investigation_frame(svc.ledger),
            links=inv.links_frame(svc.ledger),
            period=period,
            settings=ops.kpi_settings,
        )

    table = await run_in_threadpool(compute)
    if fmt == "csv":
        return _csv(table, f"kpis-{name}" + (f"-{level}" if level else ""))
    rows = [
        {"code": str(code), **{k: _clean(v) for k, v in rec.items()}}
        for code, rec in zip(table.index, table.to_dict(orient="records"), strict=True)
    ]
    body = {
        "tree": name,
        "levels": list(zones.trees[name]),
        "level": level,
        "parent": parent,
        "period": table.attrs.get("period"),
        "previous_period": table.attrs.get("previous_period"),
        "definitions": table.attrs.get("definitions", {}),
        "weights": table.attrs.get("weights", {}),
        "targets": [dict(t) for t in ops.kpi_settings.targets],
        "outside": table.attrs.get("outside", {}),
        "generated_zones": bool(zones.frame.loc[zones.frame["tree"] == name, "generated"].any()),
        "rows": rows,
    }
    return JSONResponse(json.loads(json.dumps(body, default=_clean)))


def _flat(request: Request, svc: Any, by: str, period: Any, fmt: str) -> Response:
    if by == "jurisdiction" and svc.zones is None:
        raise BadRequest(
            "no jurisdictions configured: load zone trees with `trafficunit zones load FILE "
            "--data-dir DIR`, or set TRAFFICUNIT_LEDGER_JURISDICTIONS to a polygon file; or ask "
            "by=road_chief"
        )
    store = request.app.state.store
    units = store.tables.get("units")
    acc = store.tables.get("accidents")
    table = hazard_kpis(
        svc.ledger.frame(),
        by=by,
        zones=svc.zones,
        zone_field=getattr(svc, "zone_field", None),
        units=units.frame if units is not None else None,
        accidents=acc.frame if acc is not None else None,
        period=period,
    )
    if fmt == "csv":
        return Response(
            table.to_csv(float_format="%.4f"),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="kpis-{by}.csv"'},
        )
    rows = []
    for name, rec in zip(table.index, table.to_dict(orient="records"), strict=True):
        rows.append({by: str(name), **{k: _clean(v) for k, v in rec.items()}})
    body = {
        "by": by,
        "definitions": table.attrs.get("definitions", {}),
        "outside": table.attrs.get("outside", {}),
        "rows": rows,
    }
    return JSONResponse(json.loads(json.dumps(body, default=float)))
