"""Inputs and matching: old units related to new ones by shared length or distance."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from .._errors import ValidationError
from .._validate import require_gdf
from ..settings import JoinSettings, LineageSettings, UnitSettings

#: Values of the lineage's ``kind`` column.
CHANGE_KINDS = ("unchanged", "split", "merged", "reshaped", "removed", "added")

# fmt: off
#: Columns of a lineage table.
LINEAGE_COLUMNS = (
    "old_id", "new_id", "kind", "unit_kind", "share", "share_new",
    "overlap_m", "distance_m", "changed", "as_of",
)
# fmt: on

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
    from ..network import read_network
    from ..units import build_units

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
