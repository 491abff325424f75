"""Units: list with filters (GeoJSON or CSV) and one unit with its events."""

from __future__ import annotations

import json
from collections.abc import Hashable
from functools import partial
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from trafficunit.errors import clip

from ..deps import ListDep, StoreDep
from ..errors import NotFound
from ..layers import UNITS
from ..lists import list_response, served_table
from ..store import DataStore, Table
from ..zonejoin import ZoneDep, table_zone_rows, unit_extra, with_unit_chief

router = APIRouter(tags=["units"])


def _units(store: DataStore) -> Table:
    return served_table(store, "units")


def _priority(table: Table) -> np.ndarray:
    """Row order riskiest first (level rank, then score percentile, then EPDO)."""
    order = table.extra.get("priority")
    if order is None:
        f = table.frame
        keys = [
            -pd.to_numeric(f[c], errors="coerce").fillna(-1).to_numpy()
            for c in ("epdo", "score_percentile", "level_rank")
            if c in f
        ]
        order = np.lexsort(keys) if keys else np.arange(len(f))
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        table.extra["priority"] = rank
        order = rank
    return order


@router.get("/units", summary="Units in a bbox, riskiest first (GeoJSON or CSV)")
async def list_units(
    request: Request,
    zf: ZoneDep,
    store: StoreDep,
    q: ListDep,
    key: Annotated[tuple[Hashable | None, ...], Depends(UNITS.dependency())],
) -> Response:
    table = _units(store)
    rows = table_zone_rows(request, table, table.bbox_rows(q.bbox), zf)
    rows = UNITS.rows(table.frame, table.extra, rows, key)
    rows = rows[np.argsort(_priority(table)[rows], kind="stable")]
    chief = partial(unit_extra, request, table)  # road chief now, zone codes (server/zonejoin.py)
    return list_response(table, rows, q, name="units", extra=chief)


def _records(table: Table | None, unit_id: str) -> list[dict[str, Any]]:
    """The events of a unit (rows whose ';'-joined ``unit_id`` holds it), via a cached index."""
    if table is None or "unit_id" not in table.frame:
        return []
    by_unit = table.extra.get("by_unit")
    if by_unit is None:
        ids = table.frame["unit_id"].astype("string").str.split(";").explode().dropna()
        by_unit = {k: np.asarray(v) for k, v in ids.groupby(ids, sort=False).indices.items()}
        # .indices gives positions within `ids`; map them back to table rows
        rows_of = ids.index.to_numpy()
        by_unit = {k: np.unique(rows_of[v]) for k, v in by_unit.items()}
        table.extra["by_unit"] = by_unit
    rows = by_unit.get(unit_id, np.zeros(0, dtype=np.int64))
    texts = table.features_all if table.features_all is not None else table.features
    return [json.loads(s) for s in texts[rows].tolist()]


def _ledger_events(svc: Any, unit_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The unit's hazards (their live state) and registered work zones, from the ledger."""
    _, hazards = svc.ledger.list_hazards(unit_id=unit_id, limit=100_000)
    _, zones = svc.ledger.list_workzones(unit_id=unit_id, limit=100_000)
    return [h.to_feature() for h in hazards], [z.to_feature() for z in zones]


@router.get(
    "/units/{unit_id}",
    summary="One unit: attributes, measures and its events",
    description="The unit's accidents come from the data folder; its hazards from the hazard "
    "ledger (current state, duplicates linked), its work zones from the data folder and the "
    "ledger's registered sites.",
)
async def get_unit(unit_id: str, store: StoreDep, request: Request) -> JSONResponse:
    table = _units(store)
    index = table.extra.get("by_id")
    if index is None:
        index = pd.Index(table.frame["unit_id"].astype(str))
        table.extra["by_id"] = index
    pos = index.get_indexer([unit_id])[0]
    if pos < 0:
        raise NotFound(f"no unit {clip(unit_id)}")
    texts = table.features_all if table.features_all is not None else table.features
    feature = with_unit_chief(request, table, pos, json.loads(texts[pos]))
    feature["accidents"] = _records(store.table("accidents"), unit_id)
    svc = getattr(request.app.state, "ledger", None)
    if svc is None:  # an app without the ledger: the data folder's tables
        feature["hazards"] = _records(store.table("hazards"), unit_id)
        feature["workzones"] = _records(store.table("workzones"), unit_id)
        return JSONResponse(feature)
    hazards, zones = await run_in_threadpool(_ledger_events, svc, unit_id)
    registered = {z["id"] for z in zones}
    table_zones = [
        z
        for z in _records(store.table("workzones"), unit_id)
        if z.get("properties", {}).get("site_code") not in registered
    ]
    feature["hazards"] = hazards
    feature["workzones"] = table_zones + zones
    live = getattr(request.app.state, "live", None)
    if live is not None:  # when and why the level changed (newest first)
        from trafficunit.ledger.accidents import level_history

        feature["level_history"] = await run_in_threadpool(
            level_history, live.db, unit_id, limit=50
        )
    return JSONResponse(feature)
