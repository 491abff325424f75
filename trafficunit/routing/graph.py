"""The unit graph: nodes where segments meet, edges the segments in their driving directions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from scipy.sparse import csr_matrix

from .._errors import ValidationError
from .._validate import require_gdf

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


#: Share of the way through an intersection's centre that map matching counts for crossing it
#: (the chord of a right-angle turn; see :meth:`UnitGraph._length_matrix`).
CROSSING_SHARE = 2**-0.5

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
        from ..join import UnitIndex

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
        # crossing a junction: a segment ending at an intersection reaches it at its centre, so
        # each such end adds its distance to the centre (a crossing costs the way in and out)
        self.approach_from = np.zeros(n)
        self.approach_to = np.zeros(n)
        for app, nd, k in (
            (self.approach_from, self.from_node, 0),
            (self.approach_to, self.to_node, -1),
        ):
            at = segs[(nd[segs] >= 0) & (nd[segs] < n_int)]
            if len(at):
                end = shapely.get_coordinates(shapely.get_point(self.index.geoms[at], k))
                app[at] = np.hypot(*(end - self.node_xy[nd[at]]).T)

        self._lengths: csr_matrix | None = None
        self._limits: np.ndarray | None = None

    def _limit_mps(self) -> np.ndarray:
        """Speed of every unit in m/s at its limit (:meth:`speed_kmh` with the default table;
        cached): the map matcher's ``"limits"`` speed model."""
        if self._limits is None:
            self._limits = self.speed_kmh()[0] / 3.6
        return self._limits

    def _length_matrix(self) -> csr_matrix:
        """CSR matrix of every drivable edge for map matching (cached): its length and
        :data:`CROSSING_SHARE` of the way to the centres of the intersections at its ends.

        A route counts the whole way through a junction's centre (:meth:`through_length`).
        The matcher compares route distances with straight lines between GPS points, and a
        vehicle cuts across a wide junction: straight on, the chord is the whole way in and
        out; at a right angle about 1/√2 of it; turning back, almost nothing. The whole way
        would punish every turn, nothing would make crossing a wide junction free; the
        share of a right-angle turn is the middle.
        """
        if self._lengths is None:
            self._lengths, self._len_keys, self._len_seg = self.matrix(
                self.length + CROSSING_SHARE * (self.approach_from + self.approach_to)
            )
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

    def through_length(self) -> np.ndarray:
        """Metres to drive each segment from node to node: its length plus, at an end on an
        intersection, the distance from that end to the intersection's centre."""
        return self.length + self.approach_from + self.approach_to

    def edge_weights(self, weight: str, speeds: Mapping[str, float] | None = None) -> np.ndarray:
        """Cost per unit for ``weight`` (``"length"``: metres, ``"time"``: seconds), node to
        node: junction crossings included (see :meth:`through_length`)."""
        if weight not in ("length", "time"):
            raise ValidationError(f"weight must be 'length' or 'time' (got {weight!r})")
        rate = self.rate_per_m(weight, speeds)
        return np.divide(self.through_length(), rate, out=np.zeros(len(rate)), where=rate > 0)

    def rate_per_m(self, weight: str, speeds: Mapping[str, float] | None = None) -> np.ndarray:
        """Metres per unit of cost (1 for length, the speed in m/s for time)."""
        if weight == "length":
            return np.ones(len(self.ids))
        return self.speed_kmh(speeds)[0] / 3.6

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
        from ..join import _segment_pairs

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
