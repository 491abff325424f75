"""Re-segmentation with lineage: rebuild the units of an edited network and carry history over.

Road networks change: streets are added, junctions re-aligned, speed limits changed. A batch job
rebuilds the units from the new network (:func:`resegment`) and relates every old unit to the
new ones, the way a linear-referencing system keeps its events on the road:

1. **Unchanged.** Unit ids are content hashes of the source ways and rounded coordinates
   (:mod:`trafficunit.units`), so a stretch whose extent did not change keeps its id, even when
   an attribute changed (the lineage lists the changed attributes in ``changed``).
2. **Segments** whose id changed are matched to the changed new segments by shared length:
   an ``STRtree`` query gives the pairs within ``match_tolerance_m``, and the length of each
   line inside the other's flat-ended buffer of that width is the overlap (only changed
   segments are buffered). Pairs sharing at least ``min_overlap_m`` (or half of either unit)
   are related. Segments left over on both sides are related when they come from the same
   way and their Hausdorff distance is within ``intersection_match_m`` (a short link under a
   moved junction).
3. **Intersections** whose id changed are matched by the distance between their centres
   (``intersection_match_m``); the share is the overlap of their influence discs.
4. The **kind** of each relation follows from the relation graph: one old unit to several new
   ones is a ``split``, several old to one new a ``merged``, one to one (or many to many) a
   ``reshaped``; an old unit related to nothing is ``removed``, a new one ``added``.
5. **Events** follow: accidents and open hazards on unchanged units stay; those on changed
   units move to the successor of their old unit that they lie on (an intersection's disc
   first, then the nearest successor segment, as :func:`trafficunit.assign` decides); events
   with no usable successor, or unmatched before, are joined again spatially
   (:func:`trafficunit.assign`). Closed hazards stay on the unit they were closed on.
6. **Versions.** New units carry ``valid_from`` (kept from the old unit when unchanged, else
   the re-segmentation date ``as_of``) and ``valid_to`` (``NaT`` while current); retired units
   get ``valid_to = as_of`` in the history table, and :func:`history` follows a unit through
   any number of lineage tables.

>>> import trafficunit as tu
>>> roads = tu.read_network(tu.sample_network_path())
>>> old = tu.build_units(roads)
>>> new, lineage = tu.resegment(old, roads, as_of="2024-01-01")
>>> set(lineage["kind"]) == {"unchanged"} and new.index.equals(old.index)
True
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from ._errors import ValidationError
from ._validate import metric_crs, require_gdf
from .settings import JoinSettings, LineageSettings, UnitSettings

__all__ = [
    "CHANGE_KINDS",
    "LINEAGE_COLUMNS",
    "Resegmented",
    "history",
    "lineage_summary",
    "reassign",
    "resegment",
]

#: Values of the lineage's ``kind`` column.
CHANGE_KINDS = ("unchanged", "split", "merged", "reshaped", "removed", "added")

#: Columns of a lineage table.
LINEAGE_COLUMNS = (
    "old_id",
    "new_id",
    "kind",
    "unit_kind",
    "share",
    "share_new",
    "overlap_m",
    "distance_m",
    "changed",
    "as_of",
)

_JOIN_COLUMNS = ("unit_id", "distance_m", "measure_m", "match", "overlap_m")
_NA_SENTINEL = "\x00<NA>"


# --------------------------------------------------------------------------------------------
# inputs


def _as_timestamp(value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp.now(tz="UTC").floor("s") if value is None else pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"as_of must be a date or time (e.g. '2024-05-01'), got {value!r}"
        ) from exc
    if pd.isna(ts):
        raise ValidationError(f"as_of must be a date or time, got {value!r}")
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC")


def _units_table(units: Any, what: str) -> gpd.GeoDataFrame:
    require_gdf(units, what)
    if units.index.name != "unit_id":
        if "unit_id" not in units.columns:
            raise ValidationError(
                f"{what} need a 'unit_id' index or column; build them with tu.build_units"
            )
        units = units.set_index("unit_id")
    if "kind" not in units.columns:
        raise ValidationError(f"{what} lack the 'kind' column; build them with tu.build_units")
    return units


def _split_history(
    old: gpd.GeoDataFrame,
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """Current units and retired rows of a units frame that may be a history table."""
    if "valid_to" in old.columns:
        retired = pd.to_datetime(old["valid_to"], utc=True).notna().to_numpy()
        if retired.any():
            return old.loc[~retired], old.loc[retired]
    return old, None


def _network_units(
    new_network: Any,
    *,
    max_length_m: float | None,
    junction_merge_m: float | None,
    split_on: Sequence[str] | None,
    crs: Any,
    unit_settings: UnitSettings | None,
    progress: bool,
) -> gpd.GeoDataFrame:
    from .network import read_network
    from .units import build_units

    if isinstance(new_network, str | os.PathLike):
        path = Path(new_network)
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            from .io import read_table

            table = read_table(path)
            if "kind" in table.columns and table.index.name == "unit_id":
                return table  # already units
            new_network = table
        else:
            new_network = read_network(path)
    require_gdf(new_network, "new_network")
    if "kind" in new_network.columns and (
        new_network.index.name == "unit_id" or "unit_id" in new_network.columns
    ):
        return _units_table(new_network, "new units")
    return build_units(
        new_network,
        max_length_m=max_length_m,
        junction_merge_m=junction_merge_m,
        split_on=list(split_on) if split_on is not None else None,
        crs=crs,
        settings=unit_settings,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# matching


def _changed_attributes(
    old: pd.DataFrame, new: pd.DataFrame, ids: pd.Index, columns: Sequence[str]
) -> np.ndarray:
    """';'-joined names of the compared attributes that differ, per id ('' when none)."""
    out = np.full(len(ids), "", dtype=object)
    if not len(ids):
        return out
    for col in columns:
        if col not in old.columns or col not in new.columns:
            continue
        a = old[col].reindex(ids).to_numpy(dtype=object)
        b = new[col].reindex(ids).to_numpy(dtype=object)
        na_a, na_b = pd.isna(a), pd.isna(b)
        a = np.where(na_a, _NA_SENTINEL, a)
        b = np.where(na_b, _NA_SENTINEL, b)
        same = np.asarray(a == b, dtype=bool)
        out = np.where(same, out, out + col + ";")
    return np.char.rstrip(out.astype(str), ";").astype(object)


def _lens_share(d: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Area of the overlap of two discs (centres ``d`` apart) over the area of the first."""
    d = np.asarray(d, dtype=float)
    r1 = np.asarray(r1, dtype=float)
    r2 = np.asarray(r2, dtype=float)
    area = np.zeros(len(d))
    inside = d <= np.abs(r1 - r2)
    area[inside] = np.pi * np.minimum(r1, r2)[inside] ** 2
    part = ~inside & (d < r1 + r2)
    if part.any():
        dd, a, b = d[part], r1[part], r2[part]
        c1 = np.clip((dd**2 + a**2 - b**2) / (2 * dd * a), -1.0, 1.0)
        c2 = np.clip((dd**2 + b**2 - a**2) / (2 * dd * b), -1.0, 1.0)
        tri = 0.5 * np.sqrt(
            np.clip((-dd + a + b) * (dd + a - b) * (dd - a + b) * (dd + a + b), 0.0, None)
        )
        area[part] = a**2 * np.arccos(c1) + b**2 * np.arccos(c2) - tri
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r1 > 0, np.clip(area / (np.pi * r1**2), 0.0, 1.0), 0.0)


@dataclass
class _Pairs:
    old: np.ndarray  # positions in the changed old units
    new: np.ndarray  # positions in the changed new units
    share: np.ndarray
    share_new: np.ndarray
    overlap_m: np.ndarray
    distance_m: np.ndarray


def _segment_pairs(
    old_geoms: np.ndarray,
    new_geoms: np.ndarray,
    old_ways: np.ndarray,
    new_ways: np.ndarray,
    cfg: LineageSettings,
) -> _Pairs:
    """Related (old, new) segment pairs with their shared lengths.

    The shared length of an old line is its length inside the new line's flat-ended buffer of
    ``match_tolerance_m`` (and the other way round). Only changed segments are buffered, so the
    cost follows the size of the edit, not of the network.
    """
    empty = np.zeros(0, dtype=np.int64)
    z = np.zeros(0)
    if not len(old_geoms) or not len(new_geoms):
        return _Pairs(empty, empty, z, z, z, z)
    tol = cfg.match_tolerance_m
    tree = shapely.STRtree(new_geoms)
    o, n = tree.query(old_geoms, predicate="dwithin", distance=tol)
    len_old = shapely.length(old_geoms)
    len_new = shapely.length(new_geoms)
    a = b = z
    if len(o):
        buf_new = shapely.buffer(new_geoms, tol, cap_style="flat")
        buf_old = shapely.buffer(old_geoms, tol, cap_style="flat")
        a = shapely.length(shapely.intersection(old_geoms[o], buf_new[n]))
        b = shapely.length(shapely.intersection(new_geoms[n], buf_old[o]))
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.clip(np.where(len_old[o] > 0, a / len_old[o], 0.0), 0.0, 1.0)
        share_new = np.clip(np.where(len_new[n] > 0, b / len_new[n], 0.0), 0.0, 1.0)
    keep = (np.maximum(a, b) >= cfg.min_overlap_m) | (share >= 0.5) | (share_new >= 0.5)
    o, n, a, share, share_new = o[keep], n[keep], a[keep], share[keep], share_new[keep]
    hd = np.full(len(o), np.nan)
    # what is left on both sides: the same way re-drawn (a junction moved under a short link)
    lo = np.setdiff1d(np.arange(len(old_geoms)), o)
    ln = np.setdiff1d(np.arange(len(new_geoms)), n)
    if len(lo) and len(ln):
        qo, qn = shapely.STRtree(new_geoms[ln]).query(
            old_geoms[lo], predicate="dwithin", distance=cfg.intersection_match_m
        )
        po, pn = lo[qo], ln[qn]
        same_way = _share_a_way(old_ways[po], new_ways[pn])
        po, pn = po[same_way], pn[same_way]
        d = shapely.hausdorff_distance(old_geoms[po], new_geoms[pn])
        close = d <= cfg.intersection_match_m
        po, pn, d = po[close], pn[close], d[close]
        if len(po):
            a2 = shapely.length(
                shapely.intersection(
                    old_geoms[po], shapely.buffer(new_geoms[pn], tol, cap_style="flat")
                )
            )
            b2 = shapely.length(
                shapely.intersection(
                    new_geoms[pn], shapely.buffer(old_geoms[po], tol, cap_style="flat")
                )
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                s2 = np.clip(np.where(len_old[po] > 0, a2 / len_old[po], 0.0), 0.0, 1.0)
                t2 = np.clip(np.where(len_new[pn] > 0, b2 / len_new[pn], 0.0), 0.0, 1.0)
            o, n, a = np.r_[o, po], np.r_[n, pn], np.r_[a, a2]
            share, share_new, hd = np.r_[share, s2], np.r_[share_new, t2], np.r_[hd, d]
    return _Pairs(o, n, share, share_new, a, hd)


def _share_a_way(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether the ';'-joined way id lists ``a[i]`` and ``b[i]`` have an id in common."""
    if not len(a):
        return np.zeros(0, dtype=bool)
    left = pd.Series(a, dtype="string").fillna("").str.split(";").explode()
    right = pd.Series(b, dtype="string").fillna("").str.split(";").explode()
    lf = pd.DataFrame({"pair": left.index, "way": left.to_numpy()})
    rf = pd.DataFrame({"pair": right.index, "way": right.to_numpy()})
    lf = lf.loc[lf["way"] != ""]
    hit = lf.merge(rf, on=["pair", "way"], how="inner")["pair"].unique()
    out = np.zeros(len(a), dtype=bool)
    out[hit] = True
    return out


def _intersection_pairs(
    old_pts: np.ndarray,
    new_pts: np.ndarray,
    old_r: np.ndarray,
    new_r: np.ndarray,
    cfg: LineageSettings,
) -> _Pairs:
    empty = np.zeros(0, dtype=np.int64)
    if not len(old_pts) or not len(new_pts):
        z = np.zeros(0)
        return _Pairs(empty, empty, z, z, z, z)
    tree = shapely.STRtree(new_pts)
    oi, nj = tree.query(old_pts, predicate="dwithin", distance=cfg.intersection_match_m)
    d = shapely.distance(old_pts[oi], new_pts[nj])
    share = _lens_share(d, old_r[oi], new_r[nj])
    share_new = _lens_share(d, new_r[nj], old_r[oi])
    return _Pairs(oi, nj, share, share_new, np.full(len(oi), np.nan), d)


def _kinds(old: np.ndarray, new: np.ndarray, n_old: int, n_new: int) -> np.ndarray:
    deg_old = np.bincount(old, minlength=n_old)[old]
    deg_new = np.bincount(new, minlength=n_new)[new]
    return np.select(
        [(deg_old > 1) & (deg_new == 1), (deg_new > 1) & (deg_old == 1)],
        ["split", "merged"],
        "reshaped",
    ).astype(object)


# --------------------------------------------------------------------------------------------
# result


@dataclass
class Resegmented:
    """What :func:`resegment` returns; unpacks as ``new_units, lineage``.

    Attributes
    ----------
    units
        The new units (the data contract of ``tu.build_units``) with ``valid_from`` and
        ``valid_to``.
    lineage
        One row per relation between an old and a new unit (:data:`LINEAGE_COLUMNS`).
    history
        Every unit version so far: the new units and the retired ones (``valid_to`` set),
        indexed by position, with a ``unit_id`` column. Pass it as ``old_units`` next time.
    accidents, hazards
        The joined events re-assigned to the new units (``None`` when not given).
    summary
        Counts of what changed (:func:`lineage_summary`), plus the events' re-assignment.
    """

    units: gpd.GeoDataFrame
    lineage: pd.DataFrame
    history: gpd.GeoDataFrame
    accidents: gpd.GeoDataFrame | None = None
    hazards: gpd.GeoDataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.units, self.lineage))

    def __repr__(self) -> str:
        return f"Resegmented(\n{self.summary_text()}\n)"

    def summary_text(self) -> str:
        """The summary as a few lines of plain text."""
        return _summary_text(self.summary)


def lineage_summary(lineage: pd.DataFrame) -> dict[str, Any]:
    """Counts of a lineage table: old and new units by change kind, attribute changes."""
    lin = lineage
    out: dict[str, Any] = {}
    for uk in ("segment", "intersection"):
        sub = lin.loc[lin["unit_kind"] == uk]
        row: dict[str, int] = {}
        for kind in CHANGE_KINDS:
            s = sub.loc[sub["kind"] == kind]
            if kind in ("added", "merged"):
                row[kind] = int(s["new_id"].nunique())
            else:
                row[kind] = int(s["old_id"].nunique())
        out[uk] = row
    same = lin.loc[lin["kind"] == "unchanged", "changed"].fillna("")
    attrs = same[same != ""].str.split(";").explode()
    out["attribute_changes"] = {str(k): int(v) for k, v in attrs.value_counts().items()}
    out["units_with_attribute_changes"] = int((same != "").sum())
    out["old_units"] = int(lin["old_id"].nunique())
    out["new_units"] = int(lin["new_id"].nunique())
    as_of = lin["as_of"].dropna()
    out["as_of"] = as_of.iloc[0].isoformat() if len(as_of) else None
    return out


def change_lines(summary: dict[str, Any]) -> list[str]:
    """Sentences on attribute changes and on where the events went (for summaries and the CLI)."""
    lines = []
    if summary.get("attribute_changes"):
        lines.append(
            f"{summary['units_with_attribute_changes']:,} unchanged units with new attributes: "
            + ", ".join(f"{k} {v:,}" for k, v in summary["attribute_changes"].items())
        )
    for what in ("accidents", "hazards"):
        rep = summary.get(what)
        if rep:
            lines.append(
                f"{what}: {rep['events']:,} events; kept {rep['kept']:,}, moved through the "
                f"lineage {rep['lineage']:,}, joined again {rep['spatial']:,} (and "
                f"{rep['retried']:,} unmatched before tried again); on a unit before "
                f"{rep['matched_before']:,}, after {rep['matched_after']:,}"
                + (f"; lost {rep['lost']:,}" if rep.get("lost") else "")
            )
    return lines


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"re-segmentation as of {summary.get('as_of')}: "
        f"{summary.get('old_units', 0):,} old units -> {summary.get('new_units', 0):,} new"
    ]
    for uk in ("segment", "intersection"):
        row = summary.get(uk, {})
        lines.append(f"  {uk}s: " + ", ".join(f"{row.get(k, 0):,} {k}" for k in CHANGE_KINDS))
    lines += [f"  {line}" for line in change_lines(summary)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# resegment


def resegment(
    old_units: gpd.GeoDataFrame,
    new_network: Any,
    *,
    accidents: gpd.GeoDataFrame | None = None,
    hazards: gpd.GeoDataFrame | None = None,
    as_of: Any = None,
    max_length_m: float | None = None,
    junction_merge_m: float | None = None,
    split_on: Sequence[str] | None = None,
    crs: Any = None,
    unit_settings: UnitSettings | None = None,
    settings: LineageSettings | None = None,
    join_settings: JoinSettings | None = None,
    progress: bool = False,
) -> Resegmented:
    """Rebuild the units of an edited network and relate them to the old ones.

    Parameters
    ----------
    old_units
        The previous units (``tu.build_units``), or the ``history`` of a previous
        re-segmentation (rows with ``valid_to`` set are carried over as retired).
    new_network
        The edited road network: road lines (``tu.read_network``), a path to read them from,
        or units already built from it.
    accidents, hazards
        Events joined to the old units (``tu.assign``) to re-assign to the new ones.
    as_of
        When the new units take effect (date or time; naive times are UTC). Default: now.
    max_length_m, junction_merge_m, split_on, crs, unit_settings
        Options of :func:`trafficunit.build_units`; use those the old units were built with
        (unchanged units keep their ids only then). ``crs`` is also the metric CRS of the
        comparison (default: the UTM zone of the old units).
    settings
        Matching options (:class:`~trafficunit.settings.LineageSettings`).
    join_settings
        Options of the spatial fallback join (:class:`~trafficunit.settings.JoinSettings`).
    progress
        Show the build's progress bar.

    Returns
    -------
    Resegmented
        Unpacks as ``new_units, lineage``; also holds ``history``, the re-assigned
        ``accidents`` and ``hazards`` and a ``summary``.
    """
    cfg = settings or LineageSettings()
    when = _as_timestamp(as_of)
    old_all = _units_table(old_units, "old units")
    old, retired_before = _split_history(old_all)
    if not old.index.is_unique:
        raise ValidationError("old units have duplicate unit_id values among current units")
    new = _network_units(
        new_network,
        max_length_m=max_length_m,
        junction_merge_m=junction_merge_m,
        split_on=split_on,
        crs=crs,
        unit_settings=unit_settings,
        progress=progress,
    )
    new = new.drop(columns=[c for c in ("valid_from", "valid_to") if c in new.columns])
    mcrs = metric_crs(old, crs)
    lineage = _lineage(old, new, mcrs, cfg, when)

    # versions
    if "valid_from" in old.columns:
        prev_from = pd.to_datetime(old["valid_from"], utc=True)
    else:
        prev_from = pd.Series(pd.NaT, index=old.index, dtype="datetime64[ns, UTC]")
    kept = new.index.isin(old.index)
    valid_from = pd.Series(when, index=new.index, dtype="datetime64[ns, UTC]")
    valid_from = valid_from.where(~kept, prev_from.reindex(new.index))
    new = new.copy()
    new["valid_from"] = valid_from
    new["valid_to"] = pd.Series(pd.NaT, index=new.index, dtype="datetime64[ns, UTC]")
    if len(prev_from.dropna()) and (prev_from.dropna() > when).any():
        raise ValidationError(
            f"as_of {when.isoformat()} is before some old units' valid_from; give a later as_of"
        )

    hist = _history_table(old, new, retired_before, when)
    summary = lineage_summary(lineage)
    summary["old_km"] = round(float(old.loc[old["kind"] == "segment", "length_m"].sum()) / 1e3, 3)
    summary["new_km"] = round(float(new.loc[new["kind"] == "segment", "length_m"].sum()) / 1e3, 3)
    acc_out = hz_out = None
    jcfg = join_settings or JoinSettings()
    if accidents is not None:
        acc_out = reassign(accidents, new, lineage, crs=mcrs, settings=cfg, join_settings=jcfg)
        summary["accidents"] = acc_out.attrs["report"]
    if hazards is not None:
        hz_out = reassign(hazards, new, lineage, crs=mcrs, settings=cfg, join_settings=jcfg)
        summary["hazards"] = hz_out.attrs["report"]
    lineage.attrs = {"summary": summary}
    new.attrs = {**old_units.attrs, **new.attrs, "lineage": summary}
    return Resegmented(new, lineage, hist, acc_out, hz_out, summary)


def _lineage(
    old: gpd.GeoDataFrame,
    new: gpd.GeoDataFrame,
    mcrs: pyproj.CRS,
    cfg: LineageSettings,
    when: pd.Timestamp,
) -> pd.DataFrame:
    same_ids = old.index.intersection(new.index)
    parts: list[pd.DataFrame] = []
    same_len = old["length_m"].reindex(same_ids).to_numpy(dtype=float)
    parts.append(
        pd.DataFrame(
            {
                "old_id": same_ids.to_numpy(dtype=object),
                "new_id": same_ids.to_numpy(dtype=object),
                "kind": "unchanged",
                "unit_kind": old["kind"].reindex(same_ids).to_numpy(dtype=object),
                "share": 1.0,
                "share_new": 1.0,
                "overlap_m": same_len,
                "distance_m": 0.0,
                "changed": _changed_attributes(old, new, same_ids, cfg.compare_attributes),
            }
        )
    )
    old_ch = old.loc[~old.index.isin(new.index)]
    new_ch = new.loc[~new.index.isin(old.index)]
    old_m = old_ch.geometry.to_crs(mcrs).to_numpy() if len(old_ch) else np.zeros(0, object)
    new_m = new_ch.geometry.to_crs(mcrs).to_numpy() if len(new_ch) else np.zeros(0, object)
    for uk in ("segment", "intersection"):
        o_sel = np.flatnonzero((old_ch["kind"] == uk).to_numpy())
        n_sel = np.flatnonzero((new_ch["kind"] == uk).to_numpy())
        if uk == "segment":
            pairs = _segment_pairs(
                old_m[o_sel],
                new_m[n_sel],
                _ways(old_ch.iloc[o_sel]),
                _ways(new_ch.iloc[n_sel]),
                cfg,
            )
        else:
            old_pts = shapely.centroid(old_m[o_sel]) if len(o_sel) else old_m[o_sel]
            new_pts = shapely.centroid(new_m[n_sel]) if len(n_sel) else new_m[n_sel]
            pairs = _intersection_pairs(
                old_pts,
                new_pts,
                _radius(old_ch.iloc[o_sel]),
                _radius(new_ch.iloc[n_sel]),
                cfg,
            )
        old_ids = old_ch.index.to_numpy(dtype=object)[o_sel]
        new_ids = new_ch.index.to_numpy(dtype=object)[n_sel]
        kinds = _kinds(pairs.old, pairs.new, len(o_sel), len(n_sel))
        parts.append(
            pd.DataFrame(
                {
                    "old_id": old_ids[pairs.old],
                    "new_id": new_ids[pairs.new],
                    "kind": kinds,
                    "unit_kind": uk,
                    "share": pairs.share,
                    "share_new": pairs.share_new,
                    "overlap_m": pairs.overlap_m,
                    "distance_m": pairs.distance_m,
                    "changed": "",
                }
            )
        )
        removed = np.setdiff1d(np.arange(len(o_sel)), pairs.old)
        added = np.setdiff1d(np.arange(len(n_sel)), pairs.new)
        parts.append(
            pd.DataFrame(
                {
                    "old_id": old_ids[removed],
                    "new_id": None,
                    "kind": "removed",
                    "unit_kind": uk,
                    "share": 0.0,
                    "share_new": np.nan,
                    "overlap_m": 0.0,
                    "distance_m": np.nan,
                    "changed": "",
                }
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "old_id": None,
                    "new_id": new_ids[added],
                    "kind": "added",
                    "unit_kind": uk,
                    "share": np.nan,
                    "share_new": 0.0,
                    "overlap_m": 0.0,
                    "distance_m": np.nan,
                    "changed": "",
                }
            )
        )
    lin = pd.concat([p for p in parts if len(p)], ignore_index=True)
    if not len(lin):
        lin = pd.DataFrame({c: pd.Series(dtype=object) for c in LINEAGE_COLUMNS[:-1]})
    for c in ("old_id", "new_id", "kind", "unit_kind", "changed"):
        lin[c] = lin[c].astype("string")
    for c in ("share", "share_new", "overlap_m", "distance_m"):
        lin[c] = lin[c].astype(float)
    lin["as_of"] = pd.Series(when, index=lin.index, dtype="datetime64[ns, UTC]")
    order = np.lexsort(
        (
            lin["new_id"].fillna("").to_numpy(dtype=object),
            lin["old_id"].fillna("~").to_numpy(dtype=object),
        )
    )
    lin = lin.iloc[order].reset_index(drop=True)
    return lin[list(LINEAGE_COLUMNS)]


def _ways(units: pd.DataFrame) -> np.ndarray:
    if "osm_ids" not in units.columns:
        return np.full(len(units), None, dtype=object)
    return units["osm_ids"].astype("string").to_numpy(dtype=object)


def _radius(units: pd.DataFrame) -> np.ndarray:
    if "radius_m" in units.columns:
        r = pd.to_numeric(units["radius_m"], errors="coerce").to_numpy(dtype=float)
    else:
        r = np.full(len(units), np.nan)
    return np.where(np.isfinite(r), r, JoinSettings().default_radius_m)


def _history_table(
    old: gpd.GeoDataFrame,
    new: gpd.GeoDataFrame,
    retired_before: gpd.GeoDataFrame | None,
    when: pd.Timestamp,
) -> gpd.GeoDataFrame:
    retiring = old.loc[~old.index.isin(new.index)].copy()
    if "valid_from" not in retiring.columns:
        retiring["valid_from"] = pd.Series(
            pd.NaT, index=retiring.index, dtype="datetime64[ns, UTC]"
        )
    retiring["valid_to"] = pd.Series(when, index=retiring.index, dtype="datetime64[ns, UTC]")
    frames = [new]
    for f in (retiring, retired_before):
        if f is not None and len(f):
            f = f.to_crs(new.crs) if f.crs != new.crs else f
            frames.append(f)
    hist = pd.concat(frames)
    hist = gpd.GeoDataFrame(hist, geometry=hist.geometry.name, crs=new.crs)
    hist["valid_from"] = pd.to_datetime(hist["valid_from"], utc=True)
    hist["valid_to"] = pd.to_datetime(hist["valid_to"], utc=True)
    hist = hist.reset_index()
    hist.attrs = {}
    return hist


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
    from .join import assign

    cfg = settings or LineageSettings()
    jcfg = join_settings or JoinSettings()
    require_gdf(joined, "joined events")
    if "unit_id" not in joined.columns:
        raise ValidationError(
            "the events have no 'unit_id' column; join them to the old units with tu.assign"
        )
    units = _units_table(new_units, "new units")
    j = joined.reset_index(drop=True)
    n = len(j)
    mcrs = metric_crs(units, crs)
    prev = j["unit_id"].astype("string")
    has_prev = prev.notna().to_numpy()
    in_new = prev.isin(units.index).fillna(False).to_numpy(dtype=bool)
    # closed hazards stay on the unit they were closed on
    closed = np.zeros(n, dtype=bool)
    if "status" in j.columns:
        status = j["status"].astype("string").str.strip().str.lower()
        closed = status.isin(set(jcfg.closed_statuses)).fillna(False).to_numpy(dtype=bool)
    keep = in_new | (closed & has_prev)
    # an event is a key: event_id where present, else its row
    if "event_id" in j.columns:
        ev_key = pd.factorize(j["event_id"].astype("string").fillna("").to_numpy(dtype=object))[0]
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
    unit = prev.to_numpy(dtype=object).copy()
    dist_src = j["distance_m"] if "distance_m" in j.columns else pd.Series(np.nan, index=j.index)
    dist = pd.to_numeric(dist_src, errors="coerce").to_numpy(dtype=float).copy()
    meas_src = j["measure_m"] if "measure_m" in j.columns else pd.Series(np.nan, index=j.index)
    meas = pd.to_numeric(meas_src, errors="coerce").to_numpy(dtype=float).copy()
    match_src = j["match"] if "match" in j.columns else pd.Series(pd.NA, index=j.index)
    match = match_src.astype("string").to_numpy(dtype=object).copy()

    # -- points on changed units: follow the lineage -----------------------------------------
    todo = np.flatnonzero(is_point & has_prev & ~keep)
    if len(todo):
        pts = geoms[todo]
        if (types[todo] == 4).any():
            pts = pts.copy()
            mp = types[todo] == 4
            pts[mp] = shapely.centroid(pts[mp])
        pos_of = pd.Index(units.index)
        ugeom = np.asarray(units.geometry.to_crs(mcrs).to_numpy(), dtype=object)
        is_int = (units["kind"] == "intersection").to_numpy()
        radius = _radius(units)
        succ = lineage.loc[
            lineage["new_id"].notna() & lineage["old_id"].notna(), ["old_id", "new_id"]
        ]
        cand = pd.DataFrame({"row": np.arange(len(todo)), "old_id": prev.to_numpy()[todo]})
        cand = cand.merge(succ, on="old_id", how="inner")
        c_row = cand["row"].to_numpy(dtype=np.int64)
        c_unit = pos_of.get_indexer(cand["new_id"].astype(object))
        ok = c_unit >= 0
        c_row, c_unit = c_row[ok], c_unit[ok]
        lineage_pair = np.ones(len(c_row), dtype=bool)
        # new intersections (not unchanged ones) whose disc holds the point take precedence
        fresh = np.flatnonzero(
            is_int
            & ~pos_of.isin(lineage.loc[lineage["kind"] == "unchanged", "new_id"].astype(object))
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
        target = np.full(len(todo), -1, dtype=np.int64)
        if len(c_row):
            c_geom = ugeom[c_unit]
            c_pt = np.where(is_int[c_unit], shapely.centroid(c_geom), c_geom)
            d = shapely.distance(pts[c_row], c_pt)
            limit = _kind_distance(j.iloc[todo], jcfg)[c_row] + cfg.reassign_slack_m
            old_d = dist[todo][c_row]
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
            first = (
                order[np.r_[True, c_row[order][1:] != c_row[order][:-1]]] if len(order) else order
            )
            target[c_row[first]] = c_unit[first]
            chosen = todo[c_row[first]]
            cu = c_unit[first]
            unit[chosen] = units.index.to_numpy(dtype=object)[cu]
            dist[chosen] = d[first]
            seg = ~is_int[cu]
            meas[chosen[~seg]] = 0.0
            if seg.any():
                meas[chosen[seg]] = shapely.line_locate_point(
                    ugeom[cu[seg]], pts[c_row[first]][seg]
                )
            match[chosen] = np.where(seg, "matched", "intersection")
            status_out[chosen] = "lineage"

    # -- everything else that is not settled: join again ---------------------------------------
    redo_point = is_point & (status_out == "")
    redo_other = ~is_point & (status_out == "")
    redo_rows = np.flatnonzero(redo_point | redo_other)
    pieces = []
    if len(redo_rows):
        # one row per event (shapes come as one row per (event, unit) pair)
        first_rows = redo_rows[~pd.Series(ev_key[redo_rows]).duplicated().to_numpy()]
        events = j.iloc[first_rows].drop(columns=[c for c in _JOIN_COLUMNS if c in j.columns])
        events = events.reset_index(drop=True)
        again = assign(units, events, crs=mcrs, settings=jcfg)
        src_row = again.index.to_numpy()  # assign returns rows in event order
        # map each output row back to the first row of its event
        ev_first = first_rows
        ev_of_out = _event_positions(again, len(events))
        again["_ord"] = ev_first[ev_of_out]
        again["previous_unit_id"] = prev.to_numpy()[ev_first[ev_of_out]]
        again["reassigned"] = np.where(has_prev[again["_ord"].to_numpy()], "spatial", "retried")
        del src_row
        pieces.append(again)

    settled = status_out != ""
    base = j.loc[settled].copy()
    base["unit_id"] = pd.array(unit[settled], dtype="string")
    base["distance_m"] = dist[settled]
    base["measure_m"] = meas[settled]
    base["match"] = pd.array(match[settled], dtype="string")
    if "overlap_m" not in base.columns:
        base["overlap_m"] = np.nan
    base["previous_unit_id"] = prev.to_numpy()[settled]
    base["reassigned"] = status_out[settled]
    base["_ord"] = np.flatnonzero(settled)
    out = pd.concat([base, *pieces], ignore_index=True)
    out = out.iloc[np.argsort(out["_ord"].to_numpy(), kind="stable")].drop(columns="_ord")
    out = gpd.GeoDataFrame(out.reset_index(drop=True), geometry=j.geometry.name, crs=j.crs)
    out["previous_unit_id"] = out["previous_unit_id"].astype("string")
    out["reassigned"] = out["reassigned"].astype("string")
    out["unit_id"] = out["unit_id"].astype("string")
    out["match"] = out["match"].astype("string")
    out.attrs = {"report": _reassign_report(j, out, ev_key, has_prev)}
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


# --------------------------------------------------------------------------------------------
# history


def history(
    unit_id: str,
    lineage: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    units_history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Follow one unit back to its ancestors and forward to its descendants.

    Parameters
    ----------
    unit_id
        The unit to follow.
    lineage
        One lineage table or several (one per re-segmentation, any order); they are
        concatenated and read as one graph through time.
    units_history
        The ``history`` table of the latest :class:`Resegmented`: adds each version's
        ``valid_from``/``valid_to`` and attributes.

    Returns
    -------
    pandas.DataFrame
        One row per lineage relation reachable from ``unit_id`` (excluding ``unchanged``
        self-relations), ordered by ``as_of``, with ``direction`` ("ancestor" or
        "descendant") and ``step`` (1 for the unit's own relations, 2 for the next ...).
        With ``units_history``, also ``old_valid_from``/``old_valid_to`` (the old version,
        retired at ``as_of``) and ``new_valid_from``/``new_valid_to`` (the new version).
    """
    tables = [lineage] if isinstance(lineage, pd.DataFrame) else list(lineage)
    if not tables:
        raise ValidationError("give at least one lineage table")
    lin = pd.concat(tables, ignore_index=True)
    missing = [c for c in ("old_id", "new_id", "kind", "as_of") if c not in lin.columns]
    if missing:
        raise ValidationError(f"not a lineage table: columns {missing} are missing")
    lin = lin.loc[lin["kind"] != "unchanged"].copy()
    lin["as_of"] = pd.to_datetime(lin["as_of"], utc=True)
    rows: list[pd.DataFrame] = []
    for direction, here, there in (
        ("ancestor", "new_id", "old_id"),
        ("descendant", "old_id", "new_id"),
    ):
        frontier = {unit_id}
        seen = {unit_id}
        # the unit's own time: ancestors happened before the versions that follow
        step = 0
        while frontier:
            step += 1
            hit = lin.loc[lin[here].isin(frontier)].copy()
            if not len(hit):
                break
            hit["direction"] = direction
            hit["step"] = step
            rows.append(hit)
            nxt = set(hit[there].dropna().astype(str)) - seen
            seen |= nxt
            frontier = nxt
    if rows:
        out = pd.concat(rows, ignore_index=True).drop_duplicates(
            subset=["old_id", "new_id", "as_of", "direction"]
        )
        out = out.sort_values(["as_of", "direction", "step"], kind="stable").reset_index(drop=True)
    else:
        out = pd.DataFrame(columns=[*lin.columns, "direction", "step"])
    if units_history is not None:
        hist = units_history if "unit_id" in units_history.columns else units_history.reset_index()
        for side, col, when in (("old", "old_id", "valid_to"), ("new", "new_id", "valid_from")):
            v = hist[["unit_id", "valid_from", "valid_to"]].copy()
            v[when] = pd.to_datetime(v[when], utc=True)
            v["as_of"] = v[when]
            v = v.dropna(subset=["as_of"]).drop_duplicates(["unit_id", "as_of"])
            v = v.rename(
                columns={
                    "unit_id": col,
                    "valid_from": f"{side}_valid_from",
                    "valid_to": f"{side}_valid_to",
                }
            )
            out = out.merge(v, on=[col, "as_of"], how="left")
    return out
