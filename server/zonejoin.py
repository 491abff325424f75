"""Zone codes and road chiefs joined to served records as the server answers.

Zone trees are data of the folder (``zones.parquet``) and road-chief appointments change at run
time in the ledger (in any server process), so neither is frozen into the served tables:

* ``/units`` and ``/units/{id}`` carry each unit's **current road chief** (``road_chief``,
  ``road_chief_id``, ``road_chief_body``; null when none is appointed) and its zone codes
  (``zone_<tree>_<level>``: the stored columns, else computed from the configured trees);
* ``/hazards`` and ``/hazards/{id}`` carry the hazard's zone codes (those of its first unit,
  else of its point, as :func:`trafficunit.zones.assign_events`); its ``road_chief`` is the one
  the report was routed to or the assignment named (a fact of the record, kept when the unit's
  chief changes later), and ``unit_road_chief`` (``_id``) the chief of its first unit now;
* ``?tree=&zone=`` on ``/units``, ``/accidents`` and ``/hazards`` keeps the records of a zone
  and of every zone below it (a record's code at the zone's level is the zone's code).

The risk tiles carry the zone codes (written when they are built) but not the chief: a tile
is built once and an appointment may change any time, so the map asks ``/units/{id}`` for the
chief of a clicked unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import geopandas as gpd
import numpy as np
import pandas as pd
from fastapi import Depends, Query, Request

from trafficunit.errors import clip
from trafficunit.zones import assign_events, zone_column

from .errors import BadRequest
from .store import DataStore, Table

__all__ = [
    "CHIEF_FIELDS",
    "ZoneDep",
    "ZoneFilter",
    "hazard_zone_codes",
    "list_hazards_in",
    "table_zone_rows",
    "unit_extra",
    "with_unit_chief",
    "zone_features",
]

#: Properties of a unit naming its current road chief.
CHIEF_FIELDS = ("road_chief", "road_chief_id", "road_chief_body")
#: Most hazards read to filter them by zone (the ledger's own page limit applies after).
MAX_SCAN = 10_000_000


@dataclass(frozen=True)
class ZoneFilter:
    """A zone asked for: records whose code at the zone's level is the zone's code."""

    tree: str
    level: str
    zone: str

    @property
    def column(self) -> str:
        """The ``zone_<tree>_<level>`` column compared."""
        return zone_column(self.tree, self.level)


def _ops(request: Request) -> Any:
    return getattr(request.app.state, "ops", None)


async def zone_query(
    request: Request,
    tree: Annotated[
        str | None,
        Query(max_length=40, description="Zone tree of `zone` (default: admin or the first)"),
    ] = None,
    zone: Annotated[
        str | None,
        Query(max_length=200, description="Only records in this zone or a zone below it"),
    ] = None,
) -> ZoneFilter | None:
    """Parse ``tree`` and ``zone``: 400 when no trees are configured or the zone is unknown."""
    if zone is None or zone == "":
        if tree:
            raise BadRequest("tree filters nothing alone: give zone=CODE with it")
        return None
    ops = _ops(request)
    if ops is None:
        raise BadRequest("no jurisdictions configured on this server")
    z = ops.require_zones()
    name = ops.tree(tree)
    level = z.level_of(name).get(zone)
    if level is None:
        raise BadRequest(f"tree {name!r} has no zone {clip(zone)} (GET /zones?tree={name})")
    return ZoneFilter(name, level, zone)


ZoneDep = Annotated[ZoneFilter | None, Depends(zone_query)]


def _codes(ops: Any, store: DataStore, table: Table) -> pd.DataFrame | None:
    """Zone columns of a store table's rows (positional), cached on the table."""
    z = ops.zones()
    if z is None:
        return None
    key = f"zone_codes:{id(z)}"
    out = table.extra.get(key)
    if out is None:
        f = table.frame
        cols = z.columns()
        if all(c in f.columns for c in cols):
            out = f[cols].astype("string")
        elif table.name == "units":
            uz = ops.unit_zones(store)
            out = uz.reindex(f["unit_id"].astype(str).to_numpy()).set_axis(f.index)
        else:
            out = assign_events(f, z, unit_zones=ops.unit_zones(store))
        table.extra[key] = out
    return out


def table_zone_rows(
    request: Request, table: Table, rows: np.ndarray, zf: ZoneFilter | None
) -> np.ndarray:
    """The ``rows`` of a units or accidents table inside the zone (all when ``zf`` is None)."""
    if zf is None:
        return rows
    codes = _codes(_ops(request), request.app.state.store, table)
    if codes is None or zf.column not in codes.columns:
        return rows[:0]
    inside = (codes[zf.column] == zf.zone).fillna(False).to_numpy(dtype=bool)
    return rows[inside[rows]]


def unit_extra(request: Request, table: Table, rows: np.ndarray) -> pd.DataFrame | None:
    """Columns joined to the listed units: their road chief now, and zone codes the stored
    table lacks; positional like ``rows`` (None without the operations service)."""
    ops = _ops(request)
    if ops is None or "unit_id" not in table.frame.columns:
        return None
    store = request.app.state.store
    ids = table.frame["unit_id"].astype(str).to_numpy()[rows]
    parts = []
    chiefs = ops.unit_chiefs(store)
    if chiefs is not None:
        parts.append(chiefs.reindex(ids)[list(CHIEF_FIELDS)])
    codes = _codes(ops, store, table)
    if codes is not None:
        missing = [c for c in codes.columns if c not in table.frame.columns]
        if missing:
            parts.append(codes[missing].iloc[rows].set_axis(pd.Index(ids)))
    if not parts:
        return None
    return pd.concat(parts, axis=1).reset_index(drop=True)


def with_unit_chief(
    request: Request, table: Table, pos: int, feature: dict[str, Any]
) -> dict[str, Any]:
    """The feature of the unit at row ``pos`` (``/units/{id}``) with its road chief now and
    the zone codes the stored table lacks."""
    extra = unit_extra(request, table, np.array([pos], dtype=np.int64))
    if extra is not None and len(extra):
        props = feature.setdefault("properties", {})
        for k, v in extra.iloc[0].items():
            props[str(k)] = None if pd.isna(v) else str(v)
    return feature


def hazard_zone_codes(request: Request, hazards: Sequence[Any]) -> pd.DataFrame | None:
    """Zone codes of ledger hazards (their first unit's, else their point's); None without
    zone trees."""
    ops = _ops(request)
    z = ops.zones() if ops is not None else None
    if z is None:
        return None
    ev = gpd.GeoDataFrame(
        {"unit_id": [h.unit_ids[0] if h.unit_ids else None for h in hazards]},
        geometry=[h.geometry for h in hazards],
        crs=4326,
    )
    return assign_events(ev, z, unit_zones=ops.unit_zones(request.app.state.store))


def zone_features(request: Request, hazards: Sequence[Any]) -> list[dict[str, Any]]:
    """GeoJSON features of ledger hazards with their zone codes among the properties, and the
    road chief of their first unit now (``unit_road_chief``, ``unit_road_chief_id``)."""
    feats = [h.to_feature() for h in hazards]
    if not feats:
        return feats
    parts = []
    codes = hazard_zone_codes(request, hazards)
    if codes is not None:
        parts.append(codes.reset_index(drop=True))
    ops = _ops(request)
    chiefs = ops.unit_chiefs(request.app.state.store) if ops is not None else None
    if chiefs is not None:
        first = [h.unit_ids[0] if h.unit_ids else None for h in hazards]
        now = chiefs.reindex(first)[["road_chief", "road_chief_id"]].reset_index(drop=True)
        parts.append(now.set_axis(["unit_road_chief", "unit_road_chief_id"], axis=1))
    if parts:
        table = pd.concat(parts, axis=1)
        records = table.astype(object).where(table.notna(), None).to_dict("records")
        for f, rec in zip(feats, records, strict=True):
            f["properties"].update(rec)
    return feats


def list_hazards_in(
    request: Request, ledger: Any, zf: ZoneFilter | None, *, limit: int, offset: int, **query: Any
) -> tuple[int, list[Any]]:
    """:meth:`Ledger.list_hazards` restricted to a zone (and the zones below it).

    The other filters run in the ledger; the zone rule (a hazard's first unit, else its point)
    on the hazards they leave, then the page is cut.
    """
    if zf is None:
        return ledger.list_hazards(**query, limit=limit, offset=offset)
    _, hazards = ledger.list_hazards(**query, limit=MAX_SCAN, offset=0)
    codes = hazard_zone_codes(request, hazards) if hazards else None
    if codes is None or zf.column not in codes.columns:
        return 0, []
    inside = np.flatnonzero((codes[zf.column] == zf.zone).fillna(False).to_numpy(dtype=bool))
    return len(inside), [hazards[i] for i in inside[offset : offset + limit]]
