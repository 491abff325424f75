"""Events carried from the old units to the new ones (:func:`reassign`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import ValidationError
from .._validate import metric_crs, require_gdf
from ..settings import JoinSettings, LineageSettings
from .pairs import _JOIN_COLUMNS, _radius, _units_table

# --------------------------------------------------------------------------------------------
# events


def _kind_distance(events: pd.DataFrame, cfg: JoinSettings) -> np.ndarray:
    if "kind" in events.columns:
        kinds = events["kind"].astype("string").fillna("accident")
    else:
        kinds = pd.Series("accident", index=events.index)
    default = cfg.max_distance_m.get("accident", 25.0)
    by_class = [max(v.values(), default=0.0) for v in cfg.max_distance_m_by_class.values()]
    extra = max(by_class, default=0.0)
    d = kinds.map(lambda k: max(cfg.max_distance_m.get(str(k), default), extra))
    return d.to_numpy(dtype=float)


def reassign(
    joined: gpd.GeoDataFrame,
    new_units: gpd.GeoDataFrame,
    lineage: pd.DataFrame,
    *,
    crs: Any = None,
    settings: LineageSettings | None = None,
    join_settings: JoinSettings | None = None,
) -> gpd.GeoDataFrame:
    """Move events joined to old units onto the new units, through the lineage.

    Parameters
    ----------
    joined
        Events joined to the old units (``tu.assign``): one row per point event, one per
        (event, unit) pair for lines and polygons.
    new_units
        The new units.
    lineage
        The lineage from the old units to ``new_units`` (:func:`resegment`).
    crs
        Metric CRS (default: the UTM zone of the new units).
    settings, join_settings
        Matching options and the options of the spatial fallback join.

    Returns
    -------
    geopandas.GeoDataFrame
        The events in the join's shape with ``unit_id``, ``distance_m``, ``measure_m``,
        ``match`` and ``overlap_m`` updated, ``previous_unit_id`` and ``reassigned``:
        ``"kept"`` (unit unchanged, or a closed hazard kept on its historical unit),
        ``"lineage"`` (moved to a successor), ``"spatial"`` (its unit changed and no
        successor fits: joined again) or ``"retried"`` (unmatched before: joined again, so
        it may land on a new street).
        ``.attrs["report"]`` counts each and the events on a unit before and after.
    """
    cfg = settings or LineageSettings()
    jcfg = join_settings or JoinSettings()
    require_gdf(joined, "joined events")
    if "unit_id" not in joined.columns:
        raise ValidationError(
            "the events have no 'unit_id' column; join them to the old units with tu.assign"
        )
    units = _units_table(new_units, "new units")
    mcrs = metric_crs(units, crs)
    rows = _Rows.read(joined.reset_index(drop=True), units, mcrs, jcfg)
    _follow_lineage(rows, units, lineage, mcrs, cfg, jcfg)
    pieces = _join_again(rows, units, mcrs, jcfg)
    return _assemble(rows, pieces)


@dataclass
class _Rows:
    """The joined rows and what each becomes: ``status`` "" until settled."""

    j: pd.DataFrame
    prev: pd.Series  # the old unit id
    has_prev: np.ndarray
    keep: np.ndarray  # stays on its unit: unchanged, or a closed hazard
    ev_key: np.ndarray  # an event is a key: event_id where present, else its row
    geoms: np.ndarray  # metric
    types: np.ndarray
    is_point: np.ndarray
    status: np.ndarray
    unit: np.ndarray
    dist: np.ndarray
    meas: np.ndarray
    match: np.ndarray

    @classmethod
    def read(cls, j: pd.DataFrame, units: pd.DataFrame, mcrs: Any, jcfg: JoinSettings) -> _Rows:
        n = len(j)
        prev = j["unit_id"].astype("string")
        has_prev = prev.notna().to_numpy()
        in_new = prev.isin(units.index).fillna(False).to_numpy(dtype=bool)
        # closed hazards stay on the unit they were closed on
        closed = np.zeros(n, dtype=bool)
        if "status" in j.columns:
            status = j["status"].astype("string").str.strip().str.lower()
            closed = status.isin(set(jcfg.closed_statuses)).fillna(False).to_numpy(dtype=bool)
        keep = in_new | (closed & has_prev)
        if "event_id" in j.columns:
            ids = j["event_id"].astype("string").fillna("").to_numpy(dtype=object)
            ev_key = pd.factorize(ids)[0]
            no_id = j["event_id"].isna().to_numpy()
            ev_key = np.where(no_id, -1 - np.arange(n), ev_key)
            ev_key = pd.factorize(ev_key)[0]
        else:
            ev_key = np.arange(n)
        geoms = np.asarray(j.geometry.to_crs(mcrs).to_numpy(), dtype=object)
        types = shapely.get_type_id(geoms)
        is_point = np.isin(types, [0, 4]) & ~shapely.is_missing(geoms)
        # a line/polygon event with any changed unit is joined again as a whole
        shape_changed = ~is_point & ~keep
        ev_redo = np.zeros(ev_key.max() + 1 if n else 0, dtype=bool)
        ev_redo[ev_key[shape_changed]] = True
        redo_shape = ~is_point & ev_redo[ev_key]
        status_out = np.full(n, "", dtype=object)
        status_out[keep & ~redo_shape] = "kept"

        def column(name: str, missing: Any) -> pd.Series:
            return j[name] if name in j.columns else pd.Series(missing, index=j.index)

        return cls(
            j=j,
            prev=prev,
            has_prev=has_prev,
            keep=keep,
            ev_key=ev_key,
            geoms=geoms,
            types=types,
            is_point=is_point,
            status=status_out,
            unit=prev.to_numpy(dtype=object).copy(),
            dist=pd.to_numeric(column("distance_m", np.nan), errors="coerce")
            .to_numpy(dtype=float)
            .copy(),
            meas=pd.to_numeric(column("measure_m", np.nan), errors="coerce")
            .to_numpy(dtype=float)
            .copy(),
            match=column("match", pd.NA).astype("string").to_numpy(dtype=object).copy(),
        )


def _follow_lineage(
    r: _Rows,
    units: pd.DataFrame,
    lineage: pd.DataFrame,
    mcrs: Any,
    cfg: LineageSettings,
    jcfg: JoinSettings,
) -> None:
    """Points on changed units move to a successor they lie on (status "lineage").

    Candidates are the old unit's successors and the new intersections (not unchanged ones)
    whose disc holds the point; intersections first, then the nearest.
    """
    todo = np.flatnonzero(r.is_point & r.has_prev & ~r.keep)
    if not len(todo):
        return
    pts = r.geoms[todo]
    if (r.types[todo] == 4).any():
        pts = pts.copy()
        mp = r.types[todo] == 4
        pts[mp] = shapely.centroid(pts[mp])
    pos_of = pd.Index(units.index)
    ugeom = np.asarray(units.geometry.to_crs(mcrs).to_numpy(), dtype=object)
    is_int = (units["kind"] == "intersection").to_numpy()
    radius = _radius(units)
    succ = lineage.loc[lineage["new_id"].notna() & lineage["old_id"].notna(), ["old_id", "new_id"]]
    cand = pd.DataFrame({"row": np.arange(len(todo)), "old_id": r.prev.to_numpy()[todo]})
    cand = cand.merge(succ, on="old_id", how="inner")
    c_row = cand["row"].to_numpy(dtype=np.int64)
    c_unit = pos_of.get_indexer(cand["new_id"].astype(object))
    ok = c_unit >= 0
    c_row, c_unit = c_row[ok], c_unit[ok]
    lineage_pair = np.ones(len(c_row), dtype=bool)
    fresh = np.flatnonzero(
        is_int & ~pos_of.isin(lineage.loc[lineage["kind"] == "unchanged", "new_id"].astype(object))
    )
    if len(fresh):
        centres = shapely.centroid(ugeom[fresh])
        tree = shapely.STRtree(centres)
        qi, ti = tree.query(pts, predicate="dwithin", distance=float(radius[fresh].max()))
        d_int = shapely.distance(pts[qi], centres[ti])
        inside = d_int <= radius[fresh[ti]]
        c_row = np.r_[c_row, qi[inside]]
        c_unit = np.r_[c_unit, fresh[ti[inside]]]
        lineage_pair = np.r_[lineage_pair, np.zeros(int(inside.sum()), dtype=bool)]
    if not len(c_row):
        return
    c_geom = ugeom[c_unit]
    c_pt = np.where(is_int[c_unit], shapely.centroid(c_geom), c_geom)
    d = shapely.distance(pts[c_row], c_pt)
    limit = _kind_distance(r.j.iloc[todo], jcfg)[c_row] + cfg.reassign_slack_m
    old_d = r.dist[todo][c_row]
    limit = np.fmax(limit, old_d + cfg.reassign_slack_m)
    ok = np.where(
        is_int[c_unit],
        d <= radius[c_unit] + np.where(lineage_pair, cfg.intersection_match_m, 0.0),
        d <= limit,
    )
    c_row, c_unit, d = c_row[ok], c_unit[ok], d[ok]
    rank = np.empty(len(units), dtype=np.int64)
    rank[np.argsort(units.index.to_numpy(dtype=str), kind="stable")] = np.arange(len(units))
    order = np.lexsort((rank[c_unit], np.round(d, 6), ~is_int[c_unit], c_row))
    first = order[np.r_[True, c_row[order][1:] != c_row[order][:-1]]] if len(order) else order
    chosen = todo[c_row[first]]
    cu = c_unit[first]
    r.unit[chosen] = units.index.to_numpy(dtype=object)[cu]
    r.dist[chosen] = d[first]
    seg = ~is_int[cu]
    r.meas[chosen[~seg]] = 0.0
    if seg.any():
        r.meas[chosen[seg]] = shapely.line_locate_point(ugeom[cu[seg]], pts[c_row[first]][seg])
    r.match[chosen] = np.where(seg, "matched", "intersection")
    r.status[chosen] = "lineage"


def _join_again(r: _Rows, units: pd.DataFrame, mcrs: Any, jcfg: JoinSettings) -> list[Any]:
    """Everything not settled is joined again spatially ("spatial", or "retried")."""
    from ..join import assign

    redo_rows = np.flatnonzero(r.status == "")
    if not len(redo_rows):
        return []
    j = r.j
    # one row per event (shapes come as one row per (event, unit) pair)
    first_rows = redo_rows[~pd.Series(r.ev_key[redo_rows]).duplicated().to_numpy()]
    events = j.iloc[first_rows].drop(columns=[c for c in _JOIN_COLUMNS if c in j.columns])
    events = events.reset_index(drop=True)
    again = assign(units, events, crs=mcrs, settings=jcfg)
    # map each output row back to the first row of its event
    ev_of_out = _event_positions(again, len(events))
    again["_ord"] = first_rows[ev_of_out]
    again["previous_unit_id"] = r.prev.to_numpy()[first_rows[ev_of_out]]
    again["reassigned"] = np.where(r.has_prev[again["_ord"].to_numpy()], "spatial", "retried")
    return [again]


def _assemble(r: _Rows, pieces: list[Any]) -> gpd.GeoDataFrame:
    """Settled rows and the joined-again ones, in the input's order, with the report."""
    j = r.j
    settled = r.status != ""
    base = j.loc[settled].copy()
    base["unit_id"] = pd.array(r.unit[settled], dtype="string")
    base["distance_m"] = r.dist[settled]
    base["measure_m"] = r.meas[settled]
    base["match"] = pd.array(r.match[settled], dtype="string")
    if "overlap_m" not in base.columns:
        base["overlap_m"] = np.nan
    base["previous_unit_id"] = r.prev.to_numpy()[settled]
    base["reassigned"] = r.status[settled]
    base["_ord"] = np.flatnonzero(settled)
    out = pd.concat([base, *pieces], ignore_index=True)
    out = out.iloc[np.argsort(out["_ord"].to_numpy(), kind="stable")].drop(columns="_ord")
    out = gpd.GeoDataFrame(out.reset_index(drop=True), geometry=j.geometry.name, crs=j.crs)
    for col in ("previous_unit_id", "reassigned", "unit_id", "match"):
        out[col] = out[col].astype("string")
    out.attrs = {"report": _reassign_report(j, out, r.ev_key, r.has_prev)}
    return out


def _event_positions(again: pd.DataFrame, n_events: int) -> np.ndarray:
    """Event position of each row of an ``assign`` output (rows come in event order)."""
    if len(again) == n_events:
        return np.arange(n_events)
    # more rows than events: line/polygon events with several units; the event columns repeat
    if "event_id" in again.columns:
        codes = pd.factorize(again["event_id"].astype("string").fillna("").to_numpy(object))[0]
        return codes
    raise ValidationError(
        "line or polygon events without an 'event_id' cannot be re-assigned; read them with "
        "tu.read_events"
    )


def _reassign_report(
    before: pd.DataFrame, after: pd.DataFrame, ev_key: np.ndarray, has_prev: np.ndarray
) -> dict[str, int]:
    n_ev = int(len(np.unique(ev_key))) if len(ev_key) else 0
    matched_before = np.zeros(n_ev, dtype=bool)
    matched_before[ev_key[has_prev]] = True
    if "event_id" in after.columns:
        ids_after = after.loc[after["unit_id"].notna(), "event_id"].astype("string")
        ids_before = before.loc[has_prev, "event_id"].astype("string")
        lost = int((~ids_before.drop_duplicates().isin(set(ids_after))).sum())
        matched_after = int(ids_after.nunique())
    else:
        lost = int(
            (before["unit_id"].notna().to_numpy() & after["unit_id"].isna().to_numpy()).sum()
        )
        matched_after = int(after["unit_id"].notna().sum())
    by = after["reassigned"].value_counts()
    return {
        "events": n_ev,
        "rows": int(len(after)),
        "kept": int(by.get("kept", 0)),
        "lineage": int(by.get("lineage", 0)),
        "spatial": int(by.get("spatial", 0)),
        "retried": int(by.get("retried", 0)),
        "matched_before": int(matched_before.sum()),
        "matched_after": matched_after,
        "lost": lost,
    }
