"""Jurisdiction trees: their levels, and each level's zones coloured by a four-colour rule."""

from __future__ import annotations

import json
from typing import Annotated, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger.kpis import zone_levels
from trafficunit.settings import RISK_COLOURS, RiskSettings
from trafficunit.zones import assign_events

from ..deps import ParentQuery, TreeQuery
from ..errors import BadRequest
from ..ledger import ReaderDep, ServiceDep, geojson, responses
from ..operations import OpsDep

router = APIRouter(tags=["zones"])

#: The documented colour rule (also in docs/kpis.md).
COLOUR_RULE = (
    "a zone's level is the percentile of its EPDO per km (EPDO of every unit in the zone / km of "
    "its segment units) among the zones of the same tree level: red >= {2:g}, orange >= {1:g}, "
    "yellow >= {0:g}, else blue; no segment length: no level"
)


@router.get("/zones/trees", summary="The zone trees, their levels and zone counts")
def zone_trees(ops: OpsDep, reader: ReaderDep) -> JSONResponse:
    z = ops.zones()
    if z is None:  # the map asks on every load: no zones is an answer, not an error
        return JSONResponse({"trees": {}, "default": None})
    f = z.frame
    trees = {
        t: {
            "levels": list(levels),
            "zones": {lv: int(((f["tree"] == t) & (f["level"] == lv)).sum()) for lv in levels},
            "generated": bool(f.loc[f["tree"] == t, "generated"].any()),
        }
        for t, levels in z.trees.items()
    }
    return JSONResponse({"trees": trees, "default": ops.tree(None)})


@router.get(
    "/zones",
    summary="Zones of a tree level as GeoJSON, each with a four-colour level",
    responses=responses(_400="No zones configured, or unknown tree/level/parent"),
)
async def zones(
    ops: OpsDep,
    reader: ReaderDep,
    tree: TreeQuery = None,
    level: Annotated[str | None, Query(description="Level (default: the tree's second)")] = None,
    parent: ParentQuery = None,
) -> JSONResponse:
    z = ops.require_zones()
    name = ops.tree(tree)
    levels = z.trees[name]
    lv = level or (levels[1] if len(levels) > 1 else levels[0])
    if lv not in levels:
        raise BadRequest(f"tree {name!r} has no level {lv!r}; levels: {', '.join(levels)}")
    store = ops.store
    assert store is not None
    units = ops.units(store)
    part = z.level(name, lv)
    if parent is not None:
        if parent not in set(z.frame.loc[z.frame["tree"] == name, "code"]):
            raise BadRequest(f"tree {name!r} has no zone {parent!r}")
        part = part[part["parent"] == parent]
    bands = RiskSettings().percentile_bands
    colours: Any = None
    if units is not None and "epdo" in units.columns:
        colours = await run_in_threadpool(
            zone_levels, z, name, lv, units=units, unit_zones=ops.unit_zones(store), bands=bands
        )
    feats = []
    geoms = shapely.to_geojson(np.asarray(part.geometry.array, dtype=object))
    for rec, g in zip(part.to_dict("records"), geoms, strict=True):
        code = str(rec["code"])
        props: dict[str, Any] = {
            "code": code,
            "name": rec["name"],
            "name_zh": rec["name_zh"] if isinstance(rec["name_zh"], str) else None,
            "level": rec["level"],
            "parent": rec["parent"] if isinstance(rec["parent"], str) else None,
            "generated": bool(rec["generated"]),
        }
        if colours is not None and code in colours.index:
            c = colours.loc[code]
            risk = c["risk_level"]
            props.update(
                {
                    "epdo": float(c["epdo"]),
                    "km": round(float(c["km"]), 4),
                    "epdo_per_km": None
                    if not np.isfinite(c["epdo_per_km"])
                    else float(c["epdo_per_km"]),
                    "percentile": None
                    if not np.isfinite(c["percentile"])
                    else float(c["percentile"]),
                    "risk_level": None if not isinstance(risk, str) else risk,
                    "colour": RISK_COLOURS.get(risk) if isinstance(risk, str) else None,
                }
            )
        feats.append(
            {"type": "Feature", "id": code, "geometry": json.loads(g), "properties": props}
        )
    return geojson(
        {
            "type": "FeatureCollection",
            "tree": name,
            "level": lv,
            "rule": COLOUR_RULE.format(*bands) if colours is not None else None,
            "features": feats,
        }
    )


@router.get(
    "/hazards/{hazard_id}/zones",
    summary="The zone codes of a hazard per tree and level (by its unit, else its position)",
)
def hazard_zones(hazard_id: str, ops: OpsDep, svc: ServiceDep, reader: ReaderDep) -> JSONResponse:
    z = ops.require_zones()
    h = svc.ledger.get(hazard_id)
    store = ops.store
    assert store is not None
    ev = gpd.GeoDataFrame(
        {"unit_id": [h.unit_ids[0] if h.unit_ids else None]}, geometry=[h.geometry], crs=4326
    )
    codes = assign_events(ev, z, unit_zones=ops.unit_zones(store)).iloc[0]
    return JSONResponse(
        {
            "id": h.id,
            "unit_id": ev["unit_id"].iloc[0],
            "zones": {c: (None if pd.isna(v) else str(v)) for c, v in codes.items()},
        }
    )


@router.get("/catalogue", summary="The hazard catalogue valid in a zone: the city's plus overlays")
def catalogue(
    ops: OpsDep,
    reader: ReaderDep,
    zone: Annotated[
        str | None, Query(description="A zone code (its overlays apply); none: the city's")
    ] = None,
) -> JSONResponse:
    cs = ops.catalogues
    cat = cs.city if zone is None else cs.for_zones([zone])
    return JSONResponse(
        {
            "version": cat.version,
            "set_version": cs.version,
            "overlays": [
                {"zone": o.zone, "tree": o.tree, "version": o.version, "items": sorted(o.items)}
                for o in cs.overlays
            ],
            "classes": len(cat.classes),
            "items": len(cat.items),
            "catalogue": cat.document,
        }
    )
