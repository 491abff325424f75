"""Road chiefs (路长制) and grids: appointments, the chief of a unit, routing rules."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import shapely
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from trafficunit.ledger import roadchiefs as rc

from ..deps import parse_time
from ..errors import BadRequest, NotFound
from ..ledger import AssignDep, ReaderDep, acting, geojson, responses
from ..operations import OpsDep

router = APIRouter(tags=["road chiefs"])


class ChiefIn(BaseModel):
    """An appointment: a chief for units by road name, ref, unit ids or grid."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scope: Literal["unit_ids", "ref", "road_name", "grid"]
    targets: list[str] = Field(min_length=1, max_length=10000)
    valid_from: str | None = None
    valid_to: str | None = None
    body: str | None = Field(default=None, max_length=200, description="The responsible body")
    contact: str | None = Field(default=None, max_length=200)
    tree: str | None = Field(default=None, max_length=40, description="Tree of grid codes")


class EndIn(BaseModel):
    """End an appointment."""

    model_config = ConfigDict(extra="forbid")
    valid_to: str | None = None


class RulesIn(BaseModel):
    """Routing rules, tried in priority order."""

    model_config = ConfigDict(extra="forbid")
    rules: list[dict[str, Any]] = Field(max_length=1000)


def _at(at: str | None) -> datetime | None:
    return parse_time(at, "at")


@router.get("/road-chiefs", summary="Road-chief appointments; or the chief of one unit")
def list_chiefs(
    ops: OpsDep,
    reader: ReaderDep,
    at: Annotated[str | None, Query(description="Valid at this time (ISO; default: all)")] = None,
    unit_id: Annotated[str | None, Query(description="The chief of this unit now / at")] = None,
) -> JSONResponse:
    t = _at(at)
    if unit_id is None:
        return JSONResponse({"items": rc.list_chiefs(ops.ledger, at=t)})
    store = ops.store
    assert store is not None
    units = ops.units(store)
    if units is None:
        raise NotFound("no units in the data folder")
    if unit_id not in units.index:
        raise NotFound(f"no unit {unit_id!r}")
    uz = ops.unit_zones(store)
    chiefs = rc.list_chiefs(ops.ledger)
    ch = rc.chiefs_for_units(
        chiefs, units.loc[[unit_id]], unit_zones=None if uz is None else uz.loc[[unit_id]], at=t
    )
    row = ch.iloc[0]
    cid = row["road_chief_id"]
    item = next((c for c in chiefs if c["id"] == cid), None) if isinstance(cid, str) else None
    return JSONResponse({"unit_id": unit_id, "road_chief": item})


@router.get(
    "/road-chiefs/units",
    summary="The road chief of every unit now (or at a time), JSON or CSV",
)
def unit_chiefs(
    ops: OpsDep,
    reader: ReaderDep,
    at: Annotated[str | None, Query(description="At this time (ISO; default now)")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response:
    store = ops.store
    assert store is not None
    units = ops.units(store)
    if units is None:
        raise NotFound("no units in the data folder")
    table = rc.chiefs_for_units(
        rc.list_chiefs(ops.ledger), units, unit_zones=ops.unit_zones(store), at=_at(at)
    )
    table = table[table["road_chief"].notna()]
    if format == "csv":
        return Response(table.to_csv(), media_type="text/csv; charset=utf-8")
    rows = [
        {
            "unit_id": str(u),
            "road_chief": c,
            "road_chief_id": i,
            "body": b if isinstance(b, str) else None,
        }
        for u, c, i, b in zip(
            table.index,
            table["road_chief"],
            table["road_chief_id"],
            table["road_chief_body"],
            strict=True,
        )
    ]
    return JSONResponse({"units": len(units), "with_chief": len(rows), "items": rows})


@router.post(
    "/road-chiefs",
    status_code=201,
    summary="Appoint a road chief (engineers and above)",
    responses=responses(400, _403="Role may not"),
)
def appoint(body: ChiefIn, ops: OpsDep, who: AssignDep) -> JSONResponse:
    if body.scope == "grid":
        z = ops.zones()
        tree = body.tree or ops.ops.grid_tree
        codes = set() if z is None else set(z.frame.loc[z.frame["tree"] == tree, "code"])
        unknown = [c for c in body.targets if c not in codes]
        if unknown:
            raise BadRequest(f"no zone {unknown[0]!r} in tree {tree!r}")
    out = rc.appoint(
        ops.ledger,
        **body.model_dump(exclude={"tree"}),
        tree=body.tree or (ops.ops.grid_tree if body.scope == "grid" else None),
        **acting(who),
    )
    return JSONResponse(out, status_code=201, headers={"Location": f"/road-chiefs/{out['id']}"})


@router.post("/road-chiefs/{chief_id}/end", summary="End an appointment (engineers and above)")
def end(chief_id: str, body: EndIn, ops: OpsDep, who: AssignDep) -> JSONResponse:
    return JSONResponse(
        rc.end_appointment(ops.ledger, chief_id, valid_to=body.valid_to, **acting(who))
    )


@router.get("/grids", summary="The management grids (网格) with their current chiefs (GeoJSON)")
def grids(ops: OpsDep, reader: ReaderDep) -> JSONResponse:
    z = ops.require_zones()
    tree = ops.ops.grid_tree
    if tree not in z.trees:
        raise BadRequest(
            f"no grid tree {tree!r}; trees: {', '.join(z.trees)} (TRAFFICUNIT_OPS_GRID_TREE)"
        )
    f = z.frame[z.frame["tree"] == tree]
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    chiefs = [c for c in rc.list_chiefs(ops.ledger, at=now) if c["scope"] == "grid"]
    store = ops.store
    uz = ops.unit_zones(store) if store is not None else None
    feats = []
    geoms = shapely.to_geojson(np.asarray(f.geometry.array, dtype=object))
    for rec, g in zip(f.to_dict("records"), geoms, strict=True):
        code = str(rec["code"])
        mine = [c for c in chiefs if c.get("tree") == tree and code in c["targets"]]
        units_n = None
        if uz is not None:
            units_n = int(
                sum(
                    (uz[col] == code).fillna(False).sum()
                    for col in uz.columns
                    if col.startswith(f"zone_{tree}_")
                )
            )
        feats.append(
            {
                "type": "Feature",
                "id": code,
                "geometry": json.loads(g),
                "properties": {
                    "code": code,
                    "name": rec["name"],
                    "level": rec["level"],
                    "generated": bool(rec["generated"]),
                    "units": units_n,
                    "road_chiefs": [
                        {"id": c["id"], "name": c["name"], "body": c["body"]} for c in mine
                    ],
                },
            }
        )
    return geojson({"type": "FeatureCollection", "tree": tree, "features": feats})


@router.get("/routing-rules", summary="Rules routing new reports to a responsible body")
def get_rules(ops: OpsDep, reader: ReaderDep) -> JSONResponse:
    return JSONResponse({"rules": rc.list_rules(ops.ledger)})


@router.put("/routing-rules", summary="Replace the routing rules (engineers and above)")
def put_rules(body: RulesIn, ops: OpsDep, who: AssignDep) -> JSONResponse:
    return JSONResponse({"rules": rc.set_rules(ops.ledger, body.rules, **acting(who))})
