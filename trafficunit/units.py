"""Split a road network into traffic units: intersections and road segments.

The algorithm works on coordinate arrays end to end (shapely 2 + numpy, no per-row Python):

1. Project to a metric CRS chosen from the data; snap vertices closer than ``snap_m`` to one node.
2. Count the road ends at every node. Nodes where three or more ends meet are junctions; roads
   are cut there.
3. Pieces meeting at a node of degree two (a way boundary) are chained back together when their
   split attributes (speed limit, lanes, class, bridge, tunnel by default), name, ref and
   direction agree. A change of any of them starts a new segment.
4. Each chain longer than ``max_length_m`` is cut evenly into ``ceil(length / max_length_m)``
   pieces.
5. Junction nodes closer than ``junction_merge_m`` are consolidated into one intersection unit
   (as osmnx's ``consolidate_intersections`` does); short links between them stay segments and
   carry the intersection's id in ``junction_id``. The junction nodes of a closed ring (a
   roundabout, ``junction=roundabout``/``circular``, or a named square, ``place=square`` or a
   named ``area=yes`` ring) are one intersection whatever its size: every piece of the ring
   keeps its geometry as a link of that junction, and the junction's influence radius covers
   the ring.
6. Ids are hashes of what a unit is (source way ids and coordinates rounded in the input CRS),
   so they are stable across runs and machines, and an edit to one street changes only the ids
   of the units on it.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from tqdm.auto import tqdm

from ._errors import ValidationError
from ._gcpause import gc_paused
from ._unit_stages import STAGES, UNIT_COLUMNS, UnitsReport, _State
from ._validate import geometry_problems, metric_crs, require_gdf, transformer
from .network import COLUMNS as ROAD_COLUMNS
from .settings import UnitSettings

__all__ = ["build_units", "UNIT_COLUMNS", "UnitsReport", "summary_table", "footprints"]


def _prepare(roads: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    dropped: dict[str, int] = {}
    normalised = set(ROAD_COLUMNS) <= set(roads.columns) and roads["oneway"].dtype == bool
    if not normalised:  # raw OSM-tagged lines: normalise tags, keep every line
        from .network import NetworkReport, normalise_roads

        roads = normalise_roads(
            roads, report=NetworkReport(source="<roads>"), filter_highways=False
        )
    problems = geometry_problems(roads.geometry.values)
    bad = problems != ""
    for reason in np.unique(problems[bad]):
        dropped[str(reason)] = int((problems == reason).sum())
    df = roads[~bad]
    if (shapely.get_type_id(df.geometry.values) == 5).any():
        df = df.explode(index_parts=False)
    df = df.reset_index(drop=True)
    for col in ROAD_COLUMNS:
        if col not in df.columns:
            default: Any = pd.NA
            if col in ("ramp", "oneway", "bridge", "tunnel"):
                default = False
            elif col == "road_class":
                default = "road"
            elif col in ("maxspeed_kmh", "lanes"):
                default = np.nan
            df[col] = default
    return df, dropped


def _metric_xy(df: gpd.GeoDataFrame, src_xy: np.ndarray, mcrs: Any) -> np.ndarray:
    """The coordinates ``src_xy`` of the lines ``df`` in ``mcrs``: those of
    ``df.to_crs(mcrs)``, through the process's transformer (3D lines through ``to_crs``)."""
    if shapely.has_z(df.geometry.values).any():
        return shapely.get_coordinates(df.geometry.to_crs(mcrs).values)
    if pyproj.CRS.from_user_input(df.crs).is_exact_same(mcrs):
        return src_xy.copy()
    return np.column_stack(transformer(df.crs, mcrs).transform(src_xy[:, 0], src_xy[:, 1]))


@gc_paused()
def build_units(
    roads: gpd.GeoDataFrame,
    *,
    max_length_m: float | None = None,
    junction_merge_m: float | None = None,
    split_on: tuple[str, ...] | list[str] | None = None,
    crs: Any = None,
    settings: UnitSettings | None = None,
    progress: bool = False,
) -> gpd.GeoDataFrame:
    """Split road lines into traffic units: intersections and road segments.

    Parameters
    ----------
    roads
        Road lines, as returned by :func:`trafficunit.read_network` (columns it does not have
        are filled with defaults). Must have a CRS.
    max_length_m
        Longest segment unit in metres (default 200). Longer stretches are split evenly.
    junction_merge_m
        Junction nodes closer than this (metres) become one intersection unit (default 20).
    split_on
        Attributes whose change starts a new segment (default: road class, speed limit,
        lanes, bridge, tunnel).
    crs
        Metric CRS for lengths and splitting (default: the UTM zone of the data; give e.g.
        ``"EPSG:4547"`` for Shenzhen's CGCS2000 Gauss-Krüger zone).
    settings
        A full :class:`~trafficunit.settings.UnitSettings`; the keyword arguments override it.
    progress
        Show a progress bar over the build stages.

    Returns
    -------
    geopandas.GeoDataFrame
        Indexed by ``unit_id``, in the CRS of ``roads``, columns :data:`UNIT_COLUMNS`;
        ``.attrs["report"]`` is a :class:`UnitsReport` as a plain dict.

    Examples
    --------
    >>> import trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> bool((units.loc[units.kind == "segment", "length_m"] <= 200 + 1e-6).all())
    True
    """
    cfg = (settings or UnitSettings()).with_(
        max_length_m=max_length_m,
        junction_merge_m=junction_merge_m,
        split_on=tuple(split_on) if split_on is not None else None,
    )
    units: gpd.GeoDataFrame = _build(roads, cfg, crs=crs, progress=progress).units
    return units


def _build(
    roads: gpd.GeoDataFrame, cfg: UnitSettings, *, crs: Any = None, progress: bool = False
) -> _State:
    """:func:`build_units` with the settings ``cfg``, and what its stages made: the units
    (``.units``) and the arrays behind them (the segments in the metric CRS...)."""
    require_gdf(roads, "roads")
    if not cfg.max_length_m > 0:
        raise ValidationError(f"max_length_m must be positive, got {cfg.max_length_m}")
    if cfg.junction_merge_m < 0:
        raise ValidationError(f"junction_merge_m must be >= 0, got {cfg.junction_merge_m}")
    bar = tqdm(total=8, desc="building units", disable=not progress, unit="stage")

    df, dropped = _prepare(roads)
    unknown = [c for c in cfg.split_on if c not in df.columns]
    if unknown:
        raise ValidationError(f"split_on names columns the roads do not have: {unknown}")
    if len(df) == 0:
        raise ValidationError("no usable road lines (all geometries missing, empty or not lines)")
    in_crs = df.crs
    geographic = bool(in_crs.is_geographic)
    mcrs = metric_crs(df, crs)
    src_xy, line = shapely.get_coordinates(df.geometry.values, return_index=True)
    xy = _metric_xy(df, src_xy, mcrs)
    road_length_km = float(shapely.length(shapely.linestrings(xy, indices=line)).sum() / 1000.0)
    bar.update()
    st = _State()
    st.cfg, st.df, st.dropped, st.roads = cfg, df, dropped, roads
    st.in_crs, st.geographic, st.mcrs, st.road_length_km = in_crs, geographic, mcrs, road_length_km
    st.xy, st.line, st.src_xy = xy, line, src_xy
    for stage in STAGES:
        stage(st)
        bar.update()
    bar.close()
    return st


def footprints(units: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Influence areas of intersection units (discs of ``radius_m``) and segment lines.

    Returns a GeoSeries in the units' CRS aligned with ``units``.
    """
    require_gdf(units, "units")
    mcrs = metric_crs(units)
    m = units.geometry.to_crs(mcrs)
    is_int = (units["kind"] == "intersection").to_numpy()
    geoms = m.values.copy()
    geoms[is_int] = shapely.buffer(m.values[is_int], units["radius_m"].to_numpy()[is_int])
    return gpd.GeoSeries(geoms, index=units.index, crs=mcrs).to_crs(units.crs)


def summary_table(units: gpd.GeoDataFrame) -> pd.DataFrame:
    """Units and kilometres by kind and road class, for summaries."""
    g = units.groupby(["kind", "road_class"], dropna=False)
    out = pd.DataFrame({"units": g.size(), "km": g["length_m"].sum() / 1000.0})
    return out.sort_values(["units"], ascending=False)
