"""Routes over the traffic-unit graph: shortest paths, avoidances, explicit-route checks.

The units carry their own adjacency (``from_unit`` / ``to_unit`` for segments, ``neighbours``
for intersections, see :mod:`trafficunit.units`). :class:`UnitGraph` turns it into a directed
graph whose nodes are the places where segments meet (an intersection unit, a plain joint
between two segments, or a dead end) and whose edges are the segments, in the directions they
may be driven (``direction == "forward"`` one way from the segment's first vertex to its last,
``"both"`` either way). Links inside a consolidated junction (``junction_id`` set) belong to
their intersection and are passed through as part of it.

Shortest paths use :func:`scipy.sparse.csgraph.dijkstra` on a CSR matrix built once per
graph (numpy only, no per-row Python). Origin and destination are positions on segments (a
point snapped to its nearest segment), joined to the graph by two virtual nodes, so a route
may start and end mid-segment.

Turn restrictions, lane use and height or weight limits are not in the units, so routes do not
respect them; a permit's route should still be reviewed by a person.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from ._errors import ValidationError
from ._validate import require_gdf, time_zone

__all__ = [
    "ASSUMED_SPEED_KMH",
    "AVOID_OPTIONS",
    "Route",
    "RouteCheck",
    "UnitGraph",
    "check_route",
    "check_tz",
    "daily_intervals",
    "route",
]

#: Speeds (km/h) assumed for ``weight="time"`` on units without ``maxspeed_kmh``, by road class.
#: Every route says which units used them (``Route.assumed_speed_units``); pass ``speeds=`` to
#: use your own table.
ASSUMED_SPEED_KMH: dict[str, float] = {
    "motorway": 100.0,
    "trunk": 80.0,
    "primary": 60.0,
    "secondary": 50.0,
    "tertiary": 40.0,
    "unclassified": 30.0,
    "residential": 30.0,
    "living_street": 10.0,
    "service": 20.0,
    "road": 30.0,
    "default": 30.0,
}

#: What ``avoid=`` understands: risk levels (need a ``level`` column from ``tu.score``) and
#: ``"workzones"`` (need ``workzones=``).
AVOID_OPTIONS = ("red", "orange", "yellow", "blue", "workzones")

_EPS = 1e-6  # weight of zero-length edges (scipy drops explicit zeros from some inputs)


def _unit_ids(units: pd.DataFrame) -> np.ndarray:
    if "unit_id" in units.columns:
        return units["unit_id"].astype(str).to_numpy()
    return units.index.astype(str).to_numpy()


def _str_col(units: pd.DataFrame, name: str) -> np.ndarray:
    if name not in units.columns:
        return np.full(len(units), None, dtype=object)
    s = units[name].astype("string")
    out = s.to_numpy(dtype=object)
    out[s.isna().to_numpy()] = None
    return out


class UnitGraph:
    """The directed graph of a units table, with the geometry needed to route on it.

    Parameters
    ----------
    units
        Traffic units from ``tu.build_units`` (any CRS; indexed by ``unit_id`` or with a
        ``unit_id`` column). Needs ``kind``, ``from_unit``, ``to_unit`` and ``direction``.
    crs
        Metric CRS for lengths and snapping (default: the units' UTM zone).

    Attributes
    ----------
    ids
        Unit id per row.
    from_node, to_node
        Graph node at each segment's first / last vertex (-1 for intersections).
    node_unit
        Row of the intersection unit a node is (-1 for joints and dead ends).
    length
        Metric length of every unit (0 for intersections).
    """

    def __init__(self, units: gpd.GeoDataFrame, *, crs: Any = None) -> None:
        from .join import UnitIndex

        require_gdf(units, "units")
        missing = [c for c in ("kind", "from_unit", "to_unit", "direction") if c not in units]
        if missing:
            raise ValidationError(
                f"units lack the adjacency columns {missing}; build them with tu.build_units"
            )
        self.units = units
        self.index = UnitIndex(units, crs=crs)
        self.crs: pyproj.CRS = self.index.crs
        ids = self.index.ids
        self.ids = ids
        n = len(ids)
        self.row_of = pd.Series(np.arange(n), index=pd.Index(ids))
        kind = units["kind"].astype(str).to_numpy()
        self.is_int = kind == "intersection"
        junction = _str_col(units, "junction_id")
        self.junction = junction
        self.is_seg = ~self.is_int
        self.internal = self.is_seg & pd.notna(junction)
        direction = _str_col(units, "direction")
        self.forward_ok = self.is_seg.copy()
        self.backward_ok = self.is_seg & (direction == "both")
        self.length = np.zeros(n)
        segs = np.flatnonzero(self.is_seg)
        self.length[segs] = shapely.length(self.index.geoms[segs])
        # -- nodes: intersections first, then joints between two segments, then dead ends
        ints = np.flatnonzero(self.is_int)
        n_int = len(ints)
        int_pos = pd.Series(np.arange(n_int), index=pd.Index(ids[ints]))
        ends_unit = np.r_[segs, segs]
        ends_other = np.r_[_str_col(units, "from_unit")[segs], _str_col(units, "to_unit")[segs]]
        ends_is_to = np.r_[np.zeros(len(segs), bool), np.ones(len(segs), bool)]
        pos = int_pos.reindex(ends_other).to_numpy()
        at_int = ~np.isnan(pos)
        own = ids[ends_unit]
        other = np.where(pd.isna(ends_other), "", ends_other).astype(str)
        lo = np.minimum(own, other)
        hi = np.maximum(own, other)
        joint_key = np.char.add(np.char.add(lo.astype(str), "|"), hi.astype(str))
        dead_key = np.char.add(
            np.char.add(own.astype(str), ":"), ends_is_to.astype(int).astype(str)
        )
        key = np.where(pd.isna(ends_other), dead_key, joint_key)
        codes, uniq = pd.factorize(key[~at_int])
        node = np.empty(len(ends_unit), dtype=np.int64)
        node[at_int] = pos[at_int].astype(np.int64)
        node[~at_int] = n_int + codes
        self.n_nodes = n_int + len(uniq)
        self.from_node = np.full(n, -1, dtype=np.int64)
        self.to_node = np.full(n, -1, dtype=np.int64)
        self.from_node[segs] = node[: len(segs)]
        self.to_node[segs] = node[len(segs) :]
        self.node_unit = np.full(self.n_nodes, -1, dtype=np.int64)
        self.node_unit[:n_int] = ints
        self.n_int = n_int
        #: graph node of each intersection row
        self.int_node = pd.Series(np.arange(n_int), index=ints)
        # node coordinates (metric): the segment end that defines them
        self.node_xy = np.full((self.n_nodes, 2), np.nan)
        if len(segs):
            g = self.index.geoms[segs]
            first = shapely.get_coordinates(shapely.get_point(g, 0))
            last = shapely.get_coordinates(shapely.get_point(g, -1))
            self.node_xy[node] = np.r_[first, last]
        if n_int:
            self.node_xy[:n_int] = self.index.int_xy[np.searchsorted(self.index.ints, ints)]
        # -- edges: one per drivable direction of every segment outside a junction
        edge_seg = segs[~self.internal[segs]]
        fwd = edge_seg
        bwd = edge_seg[self.backward_ok[edge_seg]]
        self.edge_seg = np.r_[fwd, bwd]
        self.edge_u = np.r_[self.from_node[fwd], self.to_node[bwd]]
        self.edge_v = np.r_[self.to_node[fwd], self.from_node[bwd]]
        self.edge_forward = np.r_[np.ones(len(fwd), bool), np.zeros(len(bwd), bool)]

        self._lengths: csr_matrix | None = None

    def _length_matrix(self) -> csr_matrix:
        """CSR matrix of every drivable edge by length (cached), for map matching."""
        if self._lengths is None:
            self._lengths, self._len_keys, self._len_seg = self.matrix(self.length)
        return self._lengths

    # ----------------------------------------------------------------------------------
    def unit_rows(self, unit_ids: Iterable[str], what: str) -> np.ndarray:
        """Rows of the given unit ids; unknown ids raise."""
        ids = [str(u) for u in unit_ids]
        rows = self.row_of.reindex(ids)
        bad = [u for u, r in zip(ids, rows.to_numpy(), strict=True) if np.isnan(r)]
        if bad:
            shown = ", ".join(bad[:5]) + (" …" if len(bad) > 5 else "")
            raise ValidationError(f"{what}: {len(bad)} unit id(s) not in the units: {shown}")
        return rows.to_numpy().astype(np.int64)

    def banned_nodes(self, banned_rows: np.ndarray) -> np.ndarray:
        """Nodes that may not be passed: the avoided intersections and their internal links."""
        mask = np.zeros(self.n_nodes, bool)
        r = np.asarray(banned_rows, dtype=np.int64)
        junctions = np.r_[
            r[self.is_int[r]],
            self.row_of.reindex(self.junction[r[self.internal[r]]])
            .dropna()
            .to_numpy()
            .astype(np.int64),
        ]
        mask[self.int_node.reindex(junctions).dropna().to_numpy().astype(np.int64)] = True
        return mask

    def edge_weights(self, weight: str, speeds: Mapping[str, float] | None = None) -> np.ndarray:
        """Cost per unit for ``weight`` (``"length"``: metres, ``"time"``: seconds)."""
        if weight == "length":
            return self.length.copy()
        if weight != "time":
            raise ValidationError(f"weight must be 'length' or 'time' (got {weight!r})")
        return self.length / (self.speed_kmh(speeds)[0] / 3.6)

    def speed_kmh(self, speeds: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(speed per unit in km/h, whether it was assumed from the road class)."""
        table = dict(ASSUMED_SPEED_KMH if speeds is None else speeds)
        if "maxspeed_kmh" in self.units.columns:
            vmax = pd.to_numeric(self.units["maxspeed_kmh"], errors="coerce").to_numpy(float)
        else:
            vmax = np.full(len(self.ids), np.nan)
        cls = _str_col(self.units, "road_class")
        fallback = pd.Series(cls).map(table).astype(float).to_numpy()
        default = table.get("default", np.nan)
        fallback = np.where(np.isnan(fallback), default, fallback)
        assumed = ~(vmax > 0) & self.is_seg
        v = np.where(vmax > 0, vmax, fallback)
        bad = self.is_seg & ~(v > 0)
        if bad.any():
            raise ValidationError(
                f"{int(bad.sum())} unit(s) have no maxspeed_kmh and no speed for their road class "
                "in speeds=; give speeds={'default': km/h, ...}"
            )
        return v, assumed

    def matrix(
        self,
        cost: np.ndarray,
        banned: np.ndarray | None = None,
        extra: int = 0,
        banned_nodes: np.ndarray | None = None,
    ) -> tuple[csr_matrix, np.ndarray, np.ndarray]:
        """CSR matrix of the allowed edges (cheapest segment per node pair).

        Returns (matrix with ``extra`` spare nodes at the end, sorted pair keys, segment per key).
        """
        ok = np.ones(len(self.edge_seg), bool)
        if banned is not None:
            ok &= ~banned[self.edge_seg]
        if banned_nodes is not None:
            ok &= ~banned_nodes[self.edge_u] & ~banned_nodes[self.edge_v]
        u, v, s = self.edge_u[ok], self.edge_v[ok], self.edge_seg[ok]
        w = np.maximum(cost[s], _EPS)
        n = self.n_nodes + extra
        keyv = u * n + v
        order = np.lexsort((w, keyv))
        keyv, u, v, w, s = keyv[order], u[order], v[order], w[order], s[order]
        first = np.r_[True, keyv[1:] != keyv[:-1]] if len(keyv) else np.zeros(0, bool)
        m = csr_matrix((w[first], (u[first], v[first])), shape=(n, n))
        return m, keyv[first], s[first]

    def snap(
        self,
        xy: Sequence[float] | shapely.Point,
        what: str,
        max_snap_m: float,
        crs: Any,
        allowed: np.ndarray | None = None,
    ) -> tuple[int, float, float]:
        """(segment row, measure, distance) of the segment nearest to a point."""
        from .join import _segment_pairs

        pt = xy if isinstance(xy, shapely.Point) else None
        if pt is None:
            try:
                x, y = (float(v) for v in xy)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"{what} must be (x, y) or a shapely Point, got {xy!r}"
                ) from exc
            pt = shapely.Point(x, y)
        src = pyproj.CRS.from_user_input(crs if crs is not None else self.units.crs)
        if not src.equals(self.crs):
            tr = pyproj.Transformer.from_crs(src, self.crs, always_xy=True)
            px, py = tr.transform(pt.x, pt.y)
        else:
            px, py = pt.x, pt.y
        if not (np.isfinite(px) and np.isfinite(py)):
            raise ValidationError(f"{what} ({pt.x}, {pt.y}) is not a valid position in {src.name}")
        p = np.array([shapely.Point(px, py)])
        qi, unit, d, meas = _segment_pairs(
            self.index, p, np.array([px]), np.array([py]), max_snap_m
        )
        keep = ~self.internal[unit] & self.is_seg[unit]
        if allowed is not None:
            keep &= allowed[unit]
        if not keep.any():
            raise ValidationError(
                f"{what} ({pt.x:.6f}, {pt.y:.6f}) is off the network: no drivable unit within "
                f"{max_snap_m:g} m"
            )
        unit, d, meas = unit[keep], d[keep], meas[keep]
        i = int(np.lexsort((self.ids[unit], d))[0])
        return int(unit[i]), float(meas[i]), float(d[i])


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
        Driven length (metres; partial first and last segments) and time at the units' speed
        limits (seconds).
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


def daily_intervals(
    windows: Sequence[Sequence[str]], start: Any, end: Any, tz: str = "UTC"
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Absolute intervals of daily time windows between two dates.

    ``[["22:00", "06:00"]]`` from 2025-11-30 to 2025-12-01 gives 22:00 on the 29th … 06:00
    on the 30th, 22:00 on the 30th … 06:00 on the 1st, and so on (a window past midnight ends on
    the next day), clipped to ``[start, end]``.

    Examples
    --------
    >>> iv = daily_intervals([["22:00", "06:00"]], "2025-11-30", "2025-11-30 23:59")
    >>> [(a.strftime("%d %H:%M"), b.strftime("%d %H:%M")) for a, b in iv]
    [('30 00:00', '30 06:00'), ('30 22:00', '30 23:59')]
    """
    check_tz(tz)
    try:
        t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"unreadable period {start!r} – {end!r}") from exc
    t0 = t0.tz_localize(tz) if t0.tzinfo is None else t0
    t1 = t1.tz_localize(tz) if t1.tzinfo is None else t1
    if t1 < t0:
        raise ValidationError(f"period ends ({t1}) before it starts ({t0})")
    out: list[tuple[pd.Timestamp, pd.Timestamp]] = []
    parsed = [(parse_hhmm(a), parse_hhmm(b)) for a, b in (_pair(w) for w in windows)]
    day = t0.normalize() - pd.Timedelta(days=1)
    while day <= t1:
        for a, b in parsed:
            s = day + a
            e = day + b if b > a else day + pd.Timedelta(days=1) + b
            s, e = max(s, t0), min(e, t1)
            if s < e:
                out.append((s, e))
        day += pd.Timedelta(days=1)
    return sorted(out)


def check_tz(tz: str) -> str:
    """``tz`` if it is a time zone name pandas knows, else ValidationError."""
    return time_zone(tz, " (use a name like 'Asia/Shanghai')")


def _pair(w: Sequence[str]) -> tuple[str, str]:
    if isinstance(w, str) or len(w) != 2:
        raise ValidationError(f"a time window is a pair ['HH:MM', 'HH:MM'], got {w!r}")
    return str(w[0]), str(w[1])


def parse_hhmm(text: str) -> pd.Timedelta:
    """``"22:30"`` → 22 h 30 min; ``"24:00"`` is the end of the day."""
    parts = str(text).strip().split(":")
    try:
        h, m = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        h, m = -1, -1
    if len(parts) > 2 or not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        raise ValidationError(f"time of day must be HH:MM (00:00–24:00), got {text!r}")
    return pd.Timedelta(hours=h, minutes=m)


def _workzone_rows(
    graph: UnitGraph,
    workzones: gpd.GeoDataFrame | pd.DataFrame,
    when: Sequence[tuple[Any, Any]] | None,
) -> np.ndarray:
    from .join import active_between, assign

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
    L0, L1 = graph.length[s0], graph.length[s1]
    f0, f1 = cost[s0] / max(L0, _EPS), cost[s1] / max(L1, _EPS)  # cost per metre
    # virtual edges: leave the origin segment forwards (to its last vertex) or, if two-way,
    # backwards; reach the destination from its first vertex or, if two-way, its last
    links = [(src, graph.to_node[s0], (L0 - m0) * f0), (graph.from_node[s1], dst, m1 * f1)]
    if graph.backward_ok[s0]:
        links.append((src, graph.from_node[s0], m0 * f0))
    if graph.backward_ok[s1]:
        links.append((graph.to_node[s1], dst, (L1 - m1) * f1))
    best_link: dict[tuple[int, int], float] = {}
    for a, b, w in links:
        if node_ban[a if a < n else b]:
            continue
        key = (int(a), int(b))
        best_link[key] = min(best_link.get(key, np.inf), float(w) + _EPS)
    ra = np.array([k[0] for k in best_link], dtype=np.int64)
    ca = np.array([k[1] for k in best_link], dtype=np.int64)
    va = np.array(list(best_link.values()), dtype=float)
    full = (m + csr_matrix((va, (ra, ca)), shape=m.shape)).tocsr()  # disjoint (row, col) pairs
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


def _route_line(
    graph: UnitGraph, rows: list[int], dirs: list[str | None], m0: float, m1: float
) -> tuple[shapely.LineString, float]:
    """The driven line (metric CRS) and its length."""
    parts = []
    last = len(rows) - 1
    for i, (r, d) in enumerate(zip(rows, dirs, strict=True)):
        if d is None:
            continue
        g = graph.index.geoms[r]
        L = graph.length[r]
        a, b = 0.0, L
        if i == 0:
            a, b = (m0, L) if d == "forward" else (0.0, m0)
        if i == last:
            if d == "forward":
                a, b = (a if i == 0 else 0.0), m1
            else:
                a, b = m1, (b if i == 0 else L)
        piece = shapely.ops.substring(g, a, b)
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
        L = graph.length[r]
        a, b = 0.0, L
        if i == 0:
            a, b = (m0, L) if d == "forward" else (0.0, m0)
        if i == last:
            if d == "forward":
                a, b = (a if i == 0 else 0.0), m1
            else:
                a, b = m1, (b if i == 0 else L)
        total += max(b - a, 0.0) / (speed_kmh[r] / 3.6)
    return total


@dataclass
class RouteCheck:
    """Result of :func:`check_route`: ``ok`` and one message per problem found."""

    ok: bool
    problems: list[str]
    length_m: float

    def __bool__(self) -> bool:
        return self.ok


def check_route(units: gpd.GeoDataFrame | UnitGraph, unit_ids: Sequence[str]) -> RouteCheck:
    """Check an explicit route (ordered unit ids) for continuity and driving direction.

    Consecutive units must touch (a segment and the intersection or segment at one of its ends;
    links inside a junction count as the junction), and a one-way segment must be entered at
    its first vertex and left at its last.

    Examples
    --------
    >>> import trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> r = tu.route(units, (24.9375, 60.1698), (24.9450, 60.1665))
    >>> tu.routing.check_route(units, r.unit_ids).ok
    True
    >>> tu.routing.check_route(units, [r.unit_ids[0], r.unit_ids[-1]]).ok
    False
    """
    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    if len(unit_ids) == 0:
        return RouteCheck(False, ["the route has no units"], 0.0)
    rows = graph.unit_rows(unit_ids, "route")
    problems: list[str] = []
    # the node sequence: each segment contributes (entry node, exit node) in driving order
    prev_exit: set[int] | None = None
    prev_id = ""
    for k, r in enumerate(rows.tolist()):
        uid = graph.ids[r]
        if graph.is_int[r] or graph.internal[r]:
            j = r if graph.is_int[r] else int(graph.row_of[graph.junction[r]])
            node = int(graph.int_node[j])
            if prev_exit is not None and node not in prev_exit:
                problems.append(f"step {k}: {uid} does not touch {prev_id}")
            prev_exit, prev_id = {node}, uid
            continue
        a, b = int(graph.from_node[r]), int(graph.to_node[r])
        if prev_exit is None:
            # the first segment: direction from the next unit
            entry_opts = {a, b}
        else:
            entry_opts = prev_exit & {a, b}
            if not entry_opts:
                problems.append(f"step {k}: {uid} does not touch {prev_id}")
                entry_opts = {a, b}
        exits: set[int] = set()
        if a in entry_opts:
            exits.add(b)
        if b in entry_opts and graph.backward_ok[r]:
            exits.add(a)
        if not exits:
            problems.append(f"step {k}: {uid} is one-way and would be driven against its direction")
            exits = {a, b}
        prev_exit, prev_id = exits, uid
    # one-way direction on the first segment depends on where the route goes next
    length = float(graph.length[rows].sum())
    return RouteCheck(not problems, problems, length)
