"""Map matching: GPS traces onto traffic units with a hidden Markov model.

The matcher follows Newson & Krumm (2009), "Hidden Markov map matching through noise and
sparseness":

- **Candidates** for each GPS point are the segment units within ``search_radius_m``, found with
  the same STRtree over the units' straight pieces as :func:`trafficunit.assign` (one vectorised
  query for the whole trace), the nearest ``max_candidates`` kept per point, and up to half as
  many more that are among the nearest of the point before or after it (a point thrown far by
  noise in a dense grid keeps the road it is on).
- **Emission**: a Gaussian on the point's distance to the candidate (``sigma_m``).
- **Transition**: an exponential on how much longer the route is than the straight line between
  consecutive points (``beta_m``; a shorter route is free, since noise lengthens straight lines
  between close points), where the route distance follows the units' driving directions
  (:class:`trafficunit.routing.UnitGraph`; shortest paths with ``scipy.sparse.csgraph``, one
  bounded Dijkstra per distinct candidate end node). A transition faster than ``max_speed_kmh``
  is impossible. Going back along a two-way unit is allowed (a U-turn); on a one-way unit only
  GPS jitter (``2 * sigma_m``) may go backwards.
- **Viterbi** over the whole trace. Where no transition is possible (a long gap, a jump, a road
  missing from the map) the chain restarts: that point's state is ``"break"``. Points with no
  unit within the search radius are ``"no_candidate"`` and have no unit.
- **Detours**: a kept point whose way from the point before it to the one after it is longer
  than the direct way by more than ``sigma_m`` (noise threw it towards a side street, and the
  way there and back cost no more than the noise stretches straight lines) is decoded as a
  thinned point when the path without it passes within 3 sigma of it.
- **Placement** (:mod:`.place`): the chain's driven path is rebuilt from its units, crossing
  each intersection straight from one segment's end to the next one's start (a piece of the
  intersection unit), every point is projected onto it, the positions along it are smoothed
  (constant-velocity Kalman + RTS, :mod:`.smooth`: free speed or a share of the speed limits,
  whichever the trace makes more likely) and placed back: a point crossing a junction is on
  the intersection. The path runs to the far ends of a chain's first and last units, and one
  unit further where the first (last) point is nearer a unit that continues it there.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import ValidationError
from .._validate import require_gdf
from ..routing import UnitGraph
from .hmm import (
    _candidates,
    _directed,
    _heading_term,
    _thin,
    _trace_times,
    _transitions,
    _viterbi,
)
from .place import Decoded, Placed, Smoothing, _place
from .smooth import SPEED_MODELS

__all__ = ["MATCH_STATES", "match_trace"]

#: Values of the ``state`` column of :func:`match_trace`.
MATCH_STATES = ("matched", "break", "no_candidate")


def match_trace(
    units: gpd.GeoDataFrame | UnitGraph,
    trace: gpd.GeoDataFrame,
    *,
    time_col: str = "time",
    sigma_m: float = 20.0,
    beta_m: float = 5.0,
    search_radius_m: float = 100.0,
    max_candidates: int = 8,
    max_speed_kmh: float = 150.0,
    max_route_m: float = 5000.0,
    heading_weight: float = 4.0,
    uturn_penalty: float = 10.0,
    smooth: bool = True,
    accel_mps2: float | None = None,
    speed_model: str = "auto",
) -> gpd.GeoDataFrame:
    """Match a GPS trace to the traffic units it drove on (hidden Markov model + Viterbi).

    Parameters
    ----------
    units
        Traffic units (``tu.build_units``) or a :class:`~trafficunit.routing.UnitGraph` of them
        (build it once to match many traces).
    trace
        GPS points with a CRS, in driving order, with a ``time_col`` column (times must be
        strictly increasing; without the column transitions are not bounded by speed).
    sigma_m
        GPS noise (standard deviation, metres) for the emission probability.
    beta_m
        Scale (metres) of the allowed difference between route and straight-line distance.
    search_radius_m
        Units farther than this from a point are not candidates for it.
    max_candidates
        Nearest candidate units kept per point (and up to half as many more that are among the
        nearest of the point before or after it).
    max_speed_kmh
        Transitions needing a faster speed over the network are impossible.
    max_route_m
        Longest route searched between consecutive points (a longer gap restarts the chain).
    heading_weight
        Log-probability penalty for driving a candidate unit against the trace's heading (half
        of it at a right angle; ``(1 - cos) / 2`` of the angle; heading over about 50 m either
        side of the point, used only where the trace moved clearly more than its noise).
        0 turns it off.
    uturn_penalty
        Log-probability cost of turning round on a unit (in its middle or at one of its ends).
    smooth
        After Viterbi, smooth the position along the matched path with a constant-velocity
        Kalman (Rauch-Tung-Striebel) smoother and place each point at its smoothed position:
        GPS noise along the road otherwise decides which of two consecutive units a point near
        their joint lands on. Needs times. Also gives ``speed_kmh``.
    accel_mps2
        Typical acceleration (m/s², the smoother's process noise): larger follows stop-and-go
        driving more closely, smaller smooths more. ``None``: chosen for each chain of the
        trace by likelihood among 0.003, 0.01, 0.03, 0.1, 0.3 and 1 m/s².
    speed_model
        ``"free"``: the speed wanders freely; ``"limits"``: the speed is a share of each unit's
        speed limit (``maxspeed_kmh``, else the assumed speed of its road class) and that share
        wanders (a vehicle speeds up and slows down where the limit changes); ``"auto"``: the
        one under which the chain's positions are more likely (``.attrs["match"]`` says which).

    Returns
    -------
    geopandas.GeoDataFrame
        The trace's rows (same index and geometry) with ``unit_id`` (``<NA>`` when unmatched),
        ``measure_m`` (along the unit from its first vertex; on an intersection, into the
        crossing), ``distance_m`` (GPS point to its placed position), ``state``
        (``"matched"``, ``"break"`` where the chain restarts, ``"no_candidate"`` where no unit
        is within ``search_radius_m``), ``speed_kmh`` (smoothed speed along the path; NaN
        without ``smooth`` or times) and ``speed_sd_kmh`` (its standard deviation from the
        smoother). ``.attrs["path"]`` is the driven path: one row per piece of a unit in
        driving order (``chain``, ``unit_id``, ``from_m``, ``to_m``, ``length_m``, ``start_s``
        along the chain, ``t_start``, ``t_end``), including units crossed between two GPS
        points and the intersections crossed; ``.attrs["match"]`` counts the states and names
        the speed model and acceleration the smoother kept for each chain (``speed_models``).

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely, trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> r = tu.route(units, (24.9375, 60.1698), (24.9450, 60.1665))
    >>> line = gpd.GeoSeries([r.geometry], crs=units.crs).to_crs(3067).iloc[0]
    >>> pts = [line.interpolate(d) for d in range(0, int(line.length), 40)]
    >>> trace = gpd.GeoDataFrame({"time": pd.date_range("2025-11-30", periods=len(pts),
    ...     freq="5s", tz="UTC")}, geometry=pts, crs=3067)
    >>> m = tu.match_trace(units, trace)
    >>> bool(m["unit_id"].isin(r.unit_ids).all()), set(m["state"])
    (True, {'matched'})
    """
    require_gdf(trace, "trace")
    if sigma_m <= 0 or beta_m <= 0 or search_radius_m <= 0 or max_candidates < 1:
        raise ValidationError("sigma_m, beta_m, search_radius_m and max_candidates must be > 0")
    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    xy, secs = _trace_xy(graph, trace, time_col)
    cu_all, cm_all, cd_all = _candidates(
        graph, xy[:, 0], xy[:, 1], search_radius_m, max_candidates, max_candidates // 2
    )
    has = cu_all[:, 0] >= 0
    # thin the points as Newson & Krumm do: one within 2 sigma of the last kept point adds no
    # information on the route, only noise on the straight-line distance
    idx = _thin(xy, np.flatnonzero(has), 2 * sigma_m)
    hmm = _HMM(
        sigma_m, beta_m, search_radius_m, max_speed_kmh, max_route_m, heading_weight, uturn_penalty
    )
    obs = _Points(xy, secs, has, cu_all, cm_all, cd_all)
    d = _decode(graph, hmm, obs, idx)
    d = _skip_outliers(graph, hmm, obs, d)
    d = _skip_detours(graph, hmm, obs, d)
    if speed_model not in SPEED_MODELS:
        raise ValidationError(f"speed_model must be one of {SPEED_MODELS} (got {speed_model!r})")
    if accel_mps2 is not None and not accel_mps2 > 0:
        raise ValidationError(f"accel_mps2 must be > 0 or None (got {accel_mps2!r})")
    how = Smoothing(accel_mps2, speed_model, graph._limit_mps()) if smooth else None
    placed = _place(graph, d, sigma_m, how, 2 * sigma_m)
    return _result(graph, trace, time_col, secs, d, placed)


@dataclass
class _HMM:
    sigma_m: float
    beta_m: float
    search_radius_m: float
    max_speed_kmh: float
    max_route_m: float
    heading_weight: float
    uturn_penalty: float


@dataclass
class _Points:
    """The trace's points: metric coordinates, seconds, which have candidates, and their
    candidates (unit row, measure, distance; -1 unit where none)."""

    xy: np.ndarray
    secs: np.ndarray | None
    has: np.ndarray
    cu: np.ndarray
    cm: np.ndarray
    cd: np.ndarray


def _trace_xy(
    graph: UnitGraph, trace: gpd.GeoDataFrame, time_col: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Metric coordinates and seconds of the trace's points, checked."""
    types = shapely.get_type_id(trace.geometry.to_numpy())
    if len(trace) and ((types != 0) | trace.geometry.is_empty.to_numpy()).any():
        i = int(np.flatnonzero((types != 0) | trace.geometry.is_empty.to_numpy())[0])
        raise ValidationError(f"trace: row {i} is not a point")
    secs = _trace_times(trace, time_col)
    pts = trace.geometry
    if not pyproj.CRS.from_user_input(trace.crs).equals(graph.crs):
        pts = pts.to_crs(graph.crs)
    xy = shapely.get_coordinates(pts.to_numpy())
    if len(xy) != len(trace) or not np.isfinite(xy).all():
        raise ValidationError("trace: coordinates must be finite points (check the CRS)")
    return xy, secs


def _decode(
    graph: UnitGraph,
    hmm: _HMM,
    obs: _Points,
    idx: np.ndarray,
) -> Decoded:
    """Viterbi over the kept points' directed candidates."""
    xy, secs, cu_all, cm_all, cd_all = obs.xy, obs.secs, obs.cu, obs.cm, obs.cd
    cu, cm, cd, cdir = _directed(graph, cu_all[idx], cm_all[idx], cd_all[idx])
    # per-step limits on the route distance: speed over the elapsed time, and max_route_m
    p = xy[idx]
    straight = np.hypot(*(p[1:] - p[:-1]).T) if len(idx) > 1 else np.zeros(0)
    lim = np.full(len(straight), hmm.max_route_m)
    if secs is not None and len(idx) > 1:
        dt = np.diff(secs[idx])
        lim = np.minimum(lim, hmm.max_speed_kmh / 3.6 * dt + 2 * hmm.search_radius_m)
    trans = _transitions(graph, cu, cm, cdir, lim, 2 * hmm.sigma_m, 0.0)
    # log probabilities: distance, and the driving direction against the trace's heading
    emis = np.where(cu >= 0, -0.5 * (cd / hmm.sigma_m) ** 2, -np.inf)
    if hmm.heading_weight > 0 and len(idx) > 2:
        emis += hmm.heading_weight * _heading_term(graph, xy, idx, cu, cm, cdir, hmm.sigma_m)
    # a route longer than the straight line costs; a shorter one does not (GPS noise stretches
    # straight lines between close points, it never shortens a zigzag); turning round on a unit
    # costs uturn_penalty
    excess = np.where(np.isfinite(trans), trans, 0.0) - straight[:, None, None]
    tlog = -np.maximum(excess, 0.0) / hmm.beta_m
    if len(idx) > 1:
        uturn = (cu[:-1, :, None] == cu[1:, None, :]) & (cdir[:-1, :, None] != cdir[1:, None, :])
        tlog -= hmm.uturn_penalty * uturn
    tlog[~np.isfinite(trans)] = -np.inf
    choice, restart = _viterbi(emis, tlog)
    rows = np.arange(len(idx))
    route_k = np.full(len(idx), np.nan)
    if len(idx) > 1:
        r = trans[rows[1:] - 1, choice[:-1], choice[1:]]
        route_k[1:] = np.where(restart[1:], np.inf, r)
    return Decoded(
        xy=xy,
        secs=secs,
        has=obs.has,
        idx=idx,
        unit=cu[rows, choice],
        meas=cm[rows, choice],
        direction=cdir[rows, choice],
        route_d=route_k,
        restart=restart,
        cu_all=cu_all,
        cm_all=cm_all,
    )


def _skip_outliers(
    graph: UnitGraph,
    hmm: _HMM,
    obs: _Points,
    d: Decoded,
) -> Decoded:
    """Decode again without the kept points where the chain restarted, when that joins the
    chain: a point thrown far off by GPS noise (3 sigma and more happens every few hundred
    points) may have no candidate reachable from its neighbours' and would cut the chain in
    two. Such a point is then placed on the joined path like a thinned one. A restart that
    stays (a real gap, a jump, a road missing from the map) keeps its point."""
    r = np.flatnonzero(d.restart[1:-1]) + 1
    if len(r) == 0:
        return d
    idx2 = np.delete(d.idx, r)
    d2 = _decode(graph, hmm, obs, idx2)
    # a dropped point whose next kept point still restarts the chain was not the cause
    nxt = np.searchsorted(idx2, d.idx[r], side="right")
    back = r[d2.restart[np.minimum(nxt, len(idx2) - 1)]]
    if len(back) == len(r):
        return d
    if len(back) == 0:
        return d2
    return _decode(graph, hmm, obs, np.sort(np.r_[idx2, d.idx[back]]))


def _skip_detours(
    graph: UnitGraph,
    hmm: _HMM,
    obs: _Points,
    d: Decoded,
) -> Decoded:
    """Decode again without the kept points that take the path on a detour: a point thrown
    towards a side street by noise is matched onto it when the route there and back costs no
    more than the noise stretches the straight lines to its neighbours (a free detour of tens
    of metres into a side street or a junction's link; with 1 s sampling in one chain in two).
    A kept point whose way from the point before to the one after is longer by more than
    ``sigma_m`` than the direct way is dropped, and placed like a thinned point, if the
    matched units before and after it are within 3 sigma of it; otherwise (a real excursion)
    it stays."""
    m = len(d.idx)
    j = np.flatnonzero(~d.restart[1:-1] & ~d.restart[2:]) + 1 if m > 2 else np.zeros(0, int)
    if len(j) == 0:
        return d
    via = d.route_d[j] + d.route_d[j + 1]
    rows = np.ravel(np.column_stack([j - 1, j + 1]))
    lim = np.zeros(2 * len(j) - 1)
    lim[0::2] = via
    direct = _transitions(
        graph,
        d.unit[rows][:, None],
        d.meas[rows][:, None],
        d.direction[rows][:, None],
        lim,
        2 * hmm.sigma_m,
        0.0,
    )[0::2, 0, 0]
    drop = j[np.isfinite(direct) & (via - direct > hmm.sigma_m)]
    if len(drop) == 0:
        return d
    idx2 = np.delete(d.idx, drop)
    d2 = _decode(graph, hmm, obs, idx2)
    # the dropped point must lie near the path without it: the units matched before and after
    p = d.idx[drop]
    after = np.minimum(np.searchsorted(idx2, p), len(idx2) - 1)
    near = np.zeros(len(p), bool)
    for nb in (d2.unit[np.maximum(after - 1, 0)], d2.unit[after]):
        near |= ((obs.cu[p] == nb[:, None]) & (obs.cd[p] <= 3 * hmm.sigma_m)).any(axis=1)
    if near.all():
        return d2
    if not near.any():
        return d
    idx3 = np.sort(np.r_[idx2, p[~near]])
    return _decode(graph, hmm, obs, idx3)


_PATH_COLUMNS = [
    "chain",
    "unit",
    "from_m",
    "to_m",
    "length_m",
    "start_s",
    "t_start",
    "t_end",
    "first_point",
    "last_point",
]


def _result(
    graph: UnitGraph,
    trace: gpd.GeoDataFrame,
    time_col: str,
    secs: np.ndarray | None,
    d: Decoded,
    placed: Placed,
) -> gpd.GeoDataFrame:
    """The trace with its matched columns, ``attrs["path"]`` and ``attrs["match"]``."""
    n = len(trace)
    unit, state = placed.unit, placed.state
    ok = unit >= 0
    out = trace.copy()
    uid = np.full(n, None, dtype=object)
    uid[ok] = graph.ids[unit[ok]]
    out["unit_id"] = pd.array(uid, dtype="string")
    dist = np.full(n, np.nan)
    if ok.any():
        dist[ok] = np.hypot(*(d.xy[ok] - placed.xy[ok]).T)
    out["measure_m"] = np.where(ok, placed.meas, np.nan)
    out["distance_m"] = dist
    out["state"] = pd.Categorical(state, categories=list(MATCH_STATES))
    out["speed_kmh"] = placed.speed * 3.6
    out["speed_sd_kmh"] = placed.speed_sd * 3.6
    paths = placed.paths
    path = pd.concat(paths, ignore_index=True) if paths else pd.DataFrame(columns=_PATH_COLUMNS)
    path.insert(
        1, "unit_id", pd.array(graph.ids[path["unit"].to_numpy(dtype=np.int64)], dtype="string")
    )
    path = path.drop(columns="unit")
    if secs is not None and n:
        t0 = pd.Timestamp(pd.to_datetime(trace[time_col]).iloc[0])
        for col in ("t_start", "t_end"):
            path[col] = t0 + pd.to_timedelta(path[col].astype(float), unit="s")
    out.attrs["path"] = path
    out.attrs["match"] = {
        "points": n,
        "matched": int((state == "matched").sum()),
        "breaks": int((state == "break").sum()),
        "no_candidate": int((state == "no_candidate").sum()),
        "hmm_points": len(d.idx),
        "speed_models": [f"{m} {a:g} m/s2" for m, a in placed.models],
    }
    return out
