"""Shortest routes over the unit graph, avoiding risk levels, active work zones and a list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from .._errors import ValidationError
from .graph import _EPS, AVOID_OPTIONS, UnitGraph, _unit_ids


@dataclass
class Route:
    """A route over traffic units.

    Attributes
    ----------
    unit_ids
        The units driven, in order (segments and the intersections between them).
    directions
        Per unit: ``"forward"`` (from the segment's first vertex), ``"backward"``, or ``None``
        for intersections.
    length_m, time_s
        Driven length (metres; partial first and last segments, straight across each junction)
        and time at the units' speed limits (seconds; a junction is crossed through its centre
        at the speed of the segments entering and leaving it).
    geometry
        The driven line in the units' CRS.
    """

    unit_ids: list[str]
    directions: list[str | None]
    length_m: float
    time_s: float
    geometry: shapely.LineString
    crs: Any
    start_measure_m: float
    end_measure_m: float
    assumed_speed_units: list[str] = field(default_factory=list)
    avoided_unit_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.unit_ids)

    def to_frame(self, units: gpd.GeoDataFrame | None = None) -> pd.DataFrame:
        """One row per unit: ``seq``, ``unit_id``, ``direction`` (+ unit columns if given)."""
        df = pd.DataFrame(
            {
                "seq": np.arange(len(self.unit_ids)),
                "unit_id": self.unit_ids,
                "direction": pd.array(self.directions, dtype="string"),
            }
        )
        if units is not None:
            ids = _unit_ids(units)
            attrs = pd.DataFrame(units.drop(columns="geometry")).set_index(pd.Index(ids, name="x"))
            attrs = attrs.drop(columns=[c for c in ("unit_id",) if c in attrs.columns])
            df = df.join(attrs, on="unit_id")
        return df

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (geometry as GeoJSON in EPSG:4326)."""
        geom = gpd.GeoSeries([self.geometry], crs=self.crs).to_crs(4326).iloc[0]
        return {
            "unit_ids": list(self.unit_ids),
            "directions": list(self.directions),
            "length_m": round(self.length_m, 1),
            "time_s": round(self.time_s, 1),
            "geometry": shapely.geometry.mapping(geom),
            "assumed_speed_units": list(self.assumed_speed_units),
        }


def _workzone_rows(
    graph: UnitGraph,
    workzones: gpd.GeoDataFrame | pd.DataFrame,
    when: Sequence[tuple[Any, Any]] | None,
) -> np.ndarray:
    from ..join import active_between, assign

    wz = workzones
    if when is not None:
        if len(when) == 0:
            return np.zeros(0, np.int64)
        parts = [active_between(wz, a, b) for a, b in when]
        wz = pd.concat(parts)
        wz = wz[~wz.index.duplicated()]
    if "unit_id" not in wz.columns:
        if not isinstance(wz, gpd.GeoDataFrame):
            raise ValidationError("workzones need a geometry or a unit_id column")
        if len(wz) == 0:
            return np.zeros(0, np.int64)
        wz = assign(graph.index, wz.assign(kind="workzone") if "kind" not in wz else wz)
    ids = wz["unit_id"].dropna().astype(str).unique()
    return graph.row_of.reindex(ids).dropna().to_numpy().astype(np.int64)


def _avoid_rows(
    graph: UnitGraph,
    avoid: Iterable[str] | str | None,
    forbidden: Iterable[str] | None,
    workzones: gpd.GeoDataFrame | pd.DataFrame | None,
    when: Sequence[tuple[Any, Any]] | None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    banned = np.zeros(len(graph.ids), bool)
    why: dict[str, np.ndarray] = {}
    items = [avoid] if isinstance(avoid, str) else list(avoid or [])
    for item in items:
        a = str(item).lower()
        if a not in AVOID_OPTIONS:
            raise ValidationError(
                f"avoid: unknown item {item!r}; use any of {', '.join(AVOID_OPTIONS)}"
            )
        if a == "workzones":
            if workzones is None:
                raise ValidationError("avoid=['workzones'] needs workzones= (tu.read_events)")
            rows = _workzone_rows(graph, workzones, when)
        else:
            if "level" not in graph.units.columns:
                raise ValidationError(
                    f"avoid={a!r} needs a 'level' column on the units (from tu.score)"
                )
            lv = graph.units["level"].astype("string").str.lower().to_numpy(dtype=object)
            rows = np.flatnonzero(lv == a)
        why[a] = rows
        banned[rows] = True
    if forbidden is not None:
        rows = graph.unit_rows(
            [forbidden] if isinstance(forbidden, str) else forbidden, "forbidden"
        )
        why["forbidden"] = rows
        banned[rows] = True
    # an avoided junction link closes its junction; an avoided junction closes its links
    node_ban = graph.banned_nodes(np.flatnonzero(banned))
    return banned, {"_nodes": node_ban, **why}


def route(
    units: gpd.GeoDataFrame | UnitGraph,
    origin: Sequence[float] | shapely.Point,
    destination: Sequence[float] | shapely.Point,
    *,
    avoid: Iterable[str] | str | None = None,
    weight: str = "length",
    forbidden: Iterable[str] | None = None,
    workzones: gpd.GeoDataFrame | pd.DataFrame | None = None,
    when: Sequence[tuple[Any, Any]] | None = None,
    speeds: Mapping[str, float] | None = None,
    max_snap_m: float = 100.0,
    crs: Any = None,
) -> Route:
    """Shortest route over the traffic units from ``origin`` to ``destination``.

    Parameters
    ----------
    units
        Traffic units (``tu.build_units``, with a ``level`` column from ``tu.score`` to avoid
        risk levels) or a :class:`UnitGraph` built from them (reuse it for many routes).
    origin, destination
        ``(x, y)`` (longitude, latitude for units in EPSG:4326) or shapely Points, in ``crs``
        (default: the units' CRS). Each is snapped to the nearest drivable segment within
        ``max_snap_m`` metres; farther away raises ``ValidationError`` ("off the network").
    avoid
        Any of ``"red"``, ``"orange"``, ``"yellow"``, ``"blue"`` (units of that risk level) and
        ``"workzones"`` (units under the work zones in ``workzones=`` active during ``when``).
        An avoided intersection is not crossed; an avoided segment is not driven.
    weight
        ``"length"`` (metres) or ``"time"`` (seconds at the units' ``maxspeed_kmh``; units
        without one use ``speeds`` or :data:`ASSUMED_SPEED_KMH` by road class, and are listed
        in ``Route.assumed_speed_units``).
    forbidden
        Unit ids never to use.
    workzones
        Work zones (``tu.read_events(..., kind="workzone")``: geometry, ``start``, ``end``) or
        rows already joined to units (a ``unit_id`` column).
    when
        Time intervals ``[(start, end), ...]`` the route will be driven in (see
        :func:`daily_intervals` for a permit's daily windows): only work zones active in one of
        them are avoided. ``None``: every given work zone.
    speeds
        km/h by road class (key ``"default"`` for the rest) for units without a speed limit.
    max_snap_m
        Largest distance from origin / destination to the network, metres.
    crs
        CRS of ``origin`` and ``destination`` (default: the units').

    Returns
    -------
    Route
        Ordered unit ids, directions, length, time and the driven line.

    Raises
    ------
    ValidationError
        Off the network, origin or destination on an avoided unit, unknown ids, or no route.

    Examples
    --------
    >>> import trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> r = tu.route(units, (24.9375, 60.1698), (24.9450, 60.1665))
    >>> r.unit_ids[0] != r.unit_ids[-1] and r.length_m > 0
    True
    """
    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    cost = graph.edge_weights(weight, speeds)
    banned, why = _avoid_rows(graph, avoid, forbidden, workzones, when)
    node_ban = why.pop("_nodes")
    s0, m0, _ = graph.snap(origin, "origin", max_snap_m, crs)
    s1, m1, _ = graph.snap(destination, "destination", max_snap_m, crs)
    for what, s in (("origin", s0), ("destination", s1)):
        if banned[s]:
            reason = next((k for k, rows in why.items() if s in set(rows.tolist())), "avoid")
            raise ValidationError(
                f"{what} lies on unit {graph.ids[s]}, which the route must avoid ({reason})"
            )
    n = graph.n_nodes
    src, dst = n, n + 1
    m, keys, key_seg = graph.matrix(cost, banned, extra=2, banned_nodes=node_ban)
    rate = graph.rate_per_m(weight, speeds)
    f0 = 1.0 / rate[s0]  # cost per metre on the origin's segment
    full = (m + _end_links(graph, s0, m0, s1, m1, rate, node_ban, m.shape)).tocsr()
    dist, pred = dijkstra(full, directed=True, indices=src, return_predecessors=True)
    best = float(dist[dst])
    direct = None
    if s0 == s1:
        if m1 >= m0:
            direct = ((m1 - m0) * f0, "forward")
        elif graph.backward_ok[s0]:
            direct = ((m0 - m1) * f0, "backward")
    dirs: list[str | None]
    if direct is not None and direct[0] <= best:
        unit_rows, dirs = [s0], [direct[1]]
        node_path: list[int] = []
    else:
        if not np.isfinite(best):
            avoided = sorted(k for k in why)
            extra = f" avoiding {', '.join(avoided)}" if avoided else ""
            raise ValidationError(f"no route from origin to destination{extra}")
        node_path = []
        v = int(pred[dst])
        while v != src:
            node_path.append(v)
            v = int(pred[v])
        node_path.reverse()
        unit_rows, dirs = _units_along(graph, s0, s1, node_path, keys, key_seg, n + 2)
    return _make_route(graph, unit_rows, dirs, m0, m1, speeds, banned)


def _make_route(
    graph: UnitGraph,
    unit_rows: list[int],
    dirs: list[str | None],
    m0: float,
    m1: float,
    speeds: Mapping[str, float] | None,
    banned: np.ndarray,
) -> Route:
    """The :class:`Route` of units driven in these directions, with its line and time."""
    ids = graph.ids[np.asarray(unit_rows)].tolist()
    geom, length = _route_line(graph, unit_rows, dirs, m0, m1)
    sp, assumed = graph.speed_kmh(speeds)
    time_s = _route_time(graph, unit_rows, dirs, m0, m1, sp)
    assumed_ids = [graph.ids[r] for r in unit_rows if assumed[r]]
    out_geom = gpd.GeoSeries([geom], crs=graph.crs).to_crs(graph.units.crs).iloc[0]
    return Route(
        unit_ids=ids,
        directions=dirs,
        length_m=length,
        time_s=time_s,
        geometry=out_geom,
        crs=graph.units.crs,
        start_measure_m=m0,
        end_measure_m=m1,
        assumed_speed_units=assumed_ids,
        avoided_unit_ids=graph.ids[banned].tolist(),
    )


def _end_links(
    graph: UnitGraph,
    s0: int,
    m0: float,
    s1: int,
    m1: float,
    rate: np.ndarray,
    node_ban: np.ndarray,
    shape: tuple[int, int],
) -> csr_matrix:
    """Virtual edges from the origin (node n) and to the destination (node n + 1).

    Leave the origin segment forwards (to its last vertex) or, if two-way, backwards; reach the
    destination from its first vertex or, if two-way, its last (with the way to or from the
    centre of an intersection there). Row and column pairs are disjoint from the graph's.
    """
    n = graph.n_nodes
    src, dst = n, n + 1
    L0, L1 = graph.length[s0], graph.length[s1]
    f0, f1 = 1.0 / rate[s0], 1.0 / rate[s1]
    a_from, a_to = graph.approach_from, graph.approach_to
    links = [
        (src, graph.to_node[s0], (L0 - m0 + a_to[s0]) * f0),
        (graph.from_node[s1], dst, (a_from[s1] + m1) * f1),
    ]
    if graph.backward_ok[s0]:
        links.append((src, graph.from_node[s0], (m0 + a_from[s0]) * f0))
    if graph.backward_ok[s1]:
        links.append((graph.to_node[s1], dst, (a_to[s1] + L1 - m1) * f1))
    best_link: dict[tuple[int, int], float] = {}
    for a, b, w in links:
        if node_ban[a if a < n else b]:
            continue
        key = (int(a), int(b))
        best_link[key] = min(best_link.get(key, np.inf), float(w) + _EPS)
    ra = np.array([k[0] for k in best_link], dtype=np.int64)
    ca = np.array([k[1] for k in best_link], dtype=np.int64)
    va = np.array(list(best_link.values()), dtype=float)
    return csr_matrix((va, (ra, ca)), shape=shape)


def _units_along(
    graph: UnitGraph,
    s0: int,
    s1: int,
    nodes: list[int],
    keys: np.ndarray,
    key_seg: np.ndarray,
    n: int,
) -> tuple[list[int], list[str | None]]:
    """Unit rows and directions of a node path between the origin and destination segments."""
    rows: list[int] = [s0]
    dirs: list[str | None] = ["forward" if nodes[0] == graph.to_node[s0] else "backward"]
    if graph.from_node[s0] == graph.to_node[s0]:  # a loop: its one node both ways
        dirs[0] = "forward"

    def node_unit(k: int) -> None:
        r = int(graph.node_unit[k])
        if r >= 0:
            rows.append(r)
            dirs.append(None)

    node_unit(nodes[0])
    if len(nodes) > 1:
        u = np.asarray(nodes[:-1], dtype=np.int64)
        v = np.asarray(nodes[1:], dtype=np.int64)
        seg = key_seg[np.searchsorted(keys, u * n + v)]
        for a, s, b in zip(u.tolist(), seg.tolist(), v.tolist(), strict=True):
            rows.append(s)
            fwd = graph.from_node[s] == a and graph.to_node[s] == b
            dirs.append("forward" if fwd else "backward")
            node_unit(b)
    rows.append(s1)
    dirs.append("forward" if nodes[-1] == graph.from_node[s1] else "backward")
    return rows, dirs


def driven_part(i: int, last: int, d: str, L: float, m0: float, m1: float) -> tuple[float, float]:
    """(from, to) measures driven on the i-th unit of a route (``last``: the last index) of
    length ``L`` in direction ``d``: the whole unit but for the first (from the start measure
    ``m0``) and the last (to the end measure ``m1``)."""
    a, b = 0.0, L
    if i == 0:
        a, b = (m0, L) if d == "forward" else (0.0, m0)
    if i == last:
        if d == "forward":
            a, b = (a if i == 0 else 0.0), m1
        else:
            a, b = m1, (b if i == 0 else L)
    return a, b


def _route_line(
    graph: UnitGraph, rows: list[int], dirs: list[str | None], m0: float, m1: float
) -> tuple[shapely.LineString, float]:
    """The driven line (metric CRS) and its length."""
    parts = []
    last = len(rows) - 1
    for i, (r, d) in enumerate(zip(rows, dirs, strict=True)):
        if d is None:
            continue
        a, b = driven_part(i, last, d, graph.length[r], m0, m1)
        piece = shapely.ops.substring(graph.index.geoms[r], a, b)
        coords = shapely.get_coordinates(piece)
        if d == "backward":
            coords = coords[::-1]
        parts.append(coords)
    xy = np.concatenate(parts) if parts else np.zeros((0, 2))
    if len(xy) > 1:
        keep = np.r_[True, (np.abs(np.diff(xy, axis=0)) > 1e-9).any(axis=1)]
        xy = xy[keep]
    if len(xy) < 2:
        xy = np.r_[xy, xy] if len(xy) else np.zeros((2, 2))
    line = shapely.LineString(xy)
    return line, float(line.length)


def _route_time(
    graph: UnitGraph,
    rows: list[int],
    dirs: list[str | None],
    m0: float,
    m1: float,
    speed_kmh: np.ndarray,
) -> float:
    total = 0.0
    last = len(rows) - 1
    for i, (r, d) in enumerate(zip(rows, dirs, strict=True)):
        if d is None:
            continue
        a, b = driven_part(i, last, d, graph.length[r], m0, m1)
        # the way into the junction before (not at the start) and out of it after (not at the end)
        fwd = d == "forward"
        if i > 0:
            b += graph.approach_from[r] if fwd else graph.approach_to[r]
        if i < last:
            b += graph.approach_to[r] if fwd else graph.approach_from[r]
        total += max(b - a, 0.0) / (speed_kmh[r] / 3.6)
    return total
