"""Attach accidents, hazards and work zones to traffic units, and summarise them per unit.

:func:`assign` is the join. Its rules (docs/domain.md, "Crash to unit"), all configurable through
:class:`~trafficunit.settings.JoinSettings`:

1. **Candidates.** A point event's candidates are the segment units within its maximum
   distance (by event kind, optionally by the unit's road class) and the intersection units
   whose influence disc (``radius_m`` around the junction point) contains it.
2. **Name-aware.** Where the event names its road (``road_name``), candidates whose name
   matches win over nearer candidates of another name (and reach up to
   ``name_extra_distance_m`` beyond the distance for it, where another street is near): a
   crash on the street under a bridge stays on that street. Names match when one's words
   contain the other's, ignoring case, house numbers, directions and street-type words
   ("SE 122ND AVE" ~ "Southeast 122nd Avenue"; "HUOPALAHDENTIE 30" ~ "Huopalahdentie";
   "A X B" names two streets).
3. **Intersection precedence.** Among what is left, an intersection whose disc contains the
   point wins (status ``"intersection"``); else the nearest segment (``"matched"``).
4. **Ties** go to the smaller distance (to the micrometre), then the smaller ``unit_id``.
5. **Unmatched** events stay in the output with ``unit_id`` ``<NA>``: ``"too_far"`` inside the
   network's area (the convex hull of the units, buffered by ``area_buffer_m``, default 0),
   with the distance to the nearest unit; ``"outside"`` beyond it. An event near the edge
   that does match is ``"matched"``; an unmatched one just beyond the outermost units most
   likely belongs to a road the extract cut off, hence "outside" rather than "too far".
6. **Lines and polygons** go to every unit they touch (within ``line_tolerance_m`` /
   ``polygon_tolerance_m``), one row per (event, unit) pair, with ``overlap_m``: for lines the
   length along the event that the unit runs beside it (cross streets that only touch score
   near zero and are dropped below ``min_overlap_m`` unless they are half covered), for
   polygons the unit's length inside the area.

All metric work happens in a projected CRS (:func:`trafficunit._validate.metric_crs`), on
arrays, through shapely ``STRtree`` queries.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from ._errors import ValidationError
from ._validate import metric_crs as _metric_crs
from ._validate import require_gdf
from .settings import EVENT_KINDS, JoinSettings

__all__ = [
    "MATCH_STATUSES",
    "UnitIndex",
    "active_at",
    "active_between",
    "assign",
    "epdo_weights",
    "names_match",
    "summarize",
    "summarize_by_year",
]

#: Values of the ``match`` column.
MATCH_STATUSES = ("matched", "intersection", "too_far", "outside")
_MATCHED, _INTERSECTION, _TOO_FAR, _OUTSIDE = range(4)
_NOT_DONE = -1

_SEVERITIES = ("K", "A", "B", "C", "O")


# --------------------------------------------------------------------------------------------
# names


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Street-type words ignored when names are compared (English; Finnish ones are suffixes).
_TYPE_WORDS = frozenset(
    _words(
        """street st str avenue ave av road rd boulevard blvd bvd drive dr lane ln court ct
        place pl parkway pkwy pky highway hwy way wy terrace ter terr circle cir square sq
        expressway expy freeway fwy trail trl crescent cres close cl grove gr gardens gdns
        row walk alley aly plaza plz loop lp bridge br"""
    )
)
_DIRECTIONS = frozenset(
    _words(
        """n s e w ne nw se sw north south east west northeast northwest southeast southwest
        nb sb eb wb"""
    )
)
_SPLIT_RE = re.compile(r"\s+(?:x|at|and|@|&|/|×)\s+|[;&/@×|,]|\s+-\s+", re.IGNORECASE)
_PAREN_RE = re.compile(r"\(.*$|\[.*$")
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_ORDINAL_WORDS = _words(
    """first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth
    thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"""
)


def _ordinal(i: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(i % 10, "th") if i not in (11, 12, 13) else "th"
    return f"{i}{suffix}"


#: "fifth" → "5th", so written-out and numbered streets compare equal.
_ORDINALS = {w: _ordinal(i) for i, w in enumerate(_ORDINAL_WORDS, start=1)}
_FUZZY_MIN_LEN = 6
_FUZZY_RATIO = 0.85


def _core(part: str) -> tuple[frozenset[str], str]:
    words = [_ORDINALS.get(w, w) for w in _WORD_RE.findall(part)]
    words = [w for w in words if not re.fullmatch(r"\d+", w)]
    core = [w for w in words if w not in _TYPE_WORDS and w not in _DIRECTIONS] or words
    return frozenset(core), "".join(core)


@lru_cache(maxsize=200_000)
def _name_cores(name: str) -> tuple[tuple[frozenset[str], str], ...]:
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _PAREN_RE.sub("", text)
    parts = _SPLIT_RE.split(text)
    cores = {_core(p) for p in parts if p and p.strip()}
    return tuple(sorted((c for c in cores if c[0]), key=lambda c: c[1]))


def _parts_match(x: tuple[frozenset[str], str], y: tuple[frozenset[str], str]) -> bool:
    if x[0] <= y[0] or y[0] <= x[0] or x[1] == y[1]:
        return True
    if min(len(x[1]), len(y[1])) < _FUZZY_MIN_LEN:
        return False
    return difflib.SequenceMatcher(None, x[1], y[1]).ratio() >= _FUZZY_RATIO


def names_match(a: str, b: str) -> bool:
    """Whether two road names refer to the same road (see the module docs for the rule).

    Names are split into streets (``;``, ``/``, ``&``, `` X ``, `` at ``), lower-cased, house
    numbers, directions and street-type words dropped, ordinal words written as numbers
    ("Fifth" = "5th"). Two streets match when one's words contain the other's, when they are
    the same written together ("Etelä Esplanadi" = "Eteläesplanadi"), or when they differ by
    a typo (similarity >= 0.85 for names of 6+ letters).

    Examples
    --------
    >>> names_match("SE 122ND AVE", "Southeast 122nd Avenue")
    True
    >>> names_match("HUOPALAHDENTIE X TURUNVÄYLÄ", "Turunväylä")
    True
    >>> names_match("5TH AVE", "Fifth Avenue"), names_match("SNELLMANNINKATU 25", "Snellmaninkatu")
    (True, True)
    >>> names_match("Mannerheimintie", "Runeberginkatu")
    False
    """
    ca, cb = _name_cores(a), _name_cores(b)
    return any(_parts_match(x, y) for x in ca for y in cb)


def _pair_name_match(ev_names: np.ndarray, unit_names: np.ndarray) -> np.ndarray:
    """names_match over pairs, evaluated once per distinct (event name, unit name)."""
    out = np.zeros(len(ev_names), dtype=bool)
    if len(ev_names) == 0:
        return out
    ec, eu = pd.factorize(ev_names, use_na_sentinel=True)
    uc, uu = pd.factorize(unit_names, use_na_sentinel=True)
    ok = (ec >= 0) & (uc >= 0)
    if not ok.any():
        return out
    key = ec[ok].astype(np.int64) * (len(uu) + 1) + uc[ok]
    combos, inv = np.unique(key, return_inverse=True)
    res = np.fromiter(
        (
            names_match(str(eu[k // (len(uu) + 1)]), str(uu[k % (len(uu) + 1)]))
            for k in combos.tolist()
        ),
        dtype=bool,
        count=len(combos),
    )
    out[np.flatnonzero(ok)] = res[inv]
    return out


# --------------------------------------------------------------------------------------------
# EPDO weights


def _weights_file() -> dict[str, Any]:
    from .settings import epdo_weights_file

    return epdo_weights_file()


def epdo_weights(version: str | Mapping[str, float] | None = None) -> dict[str, float]:
    """EPDO weights by KABCO letter.

    Parameters
    ----------
    version
        A version name from ``trafficunit/epdo_weights.json`` (``"hsm-2010"``: K 542, A 29,
        B 11, C 6, O 1, the default; ``"fatal-injury-pdo"``: 542 / 11 / 1), or your own
        mapping (missing letters weigh 0).

    Examples
    --------
    >>> epdo_weights()["K"], epdo_weights("fatal-injury-pdo")["A"]
    (542.0, 11.0)
    """
    if isinstance(version, Mapping):
        bad = set(version) - set(_SEVERITIES)
        if bad:
            raise ValidationError(f"EPDO weights for unknown severities {sorted(bad)}")
        return {k: float(version.get(k, 0.0)) for k in _SEVERITIES}
    data = _weights_file()
    name = version or data["default"]
    if name not in data["versions"]:
        raise ValidationError(
            f"unknown EPDO weights version {name!r}; known: {', '.join(data['versions'])}"
        )
    w = data["versions"][name]["weights"]
    return {k: float(w.get(k, 0.0)) for k in _SEVERITIES}


# --------------------------------------------------------------------------------------------
# unit index


class UnitIndex:
    """Units prepared for joining: metric geometries, spatial indexes, names, area.

    Build it once and pass it to :func:`assign` instead of the units to join many event
    sets (or live events) against the same network.

    Parameters
    ----------
    units
        Units as built by ``tu.build_units``: indexed by ``unit_id`` (or with a ``unit_id``
        column), with ``kind``, ``radius_m``, ``road_class`` and ``name`` where available.
        Without ``kind``, points are intersections and lines segments.
    crs
        Metric CRS (default: the units' own if projected in metres, else their UTM zone).
    settings
        :class:`~trafficunit.settings.JoinSettings` (for the default influence radius).
    """

    def __init__(
        self,
        units: gpd.GeoDataFrame,
        *,
        crs: Any = None,
        settings: JoinSettings | None = None,
    ) -> None:
        require_gdf(units, "units")
        cfg = settings or JoinSettings()
        if "unit_id" in units.columns:
            ids = units["unit_id"].astype(str).to_numpy()
        else:
            ids = units.index.astype(str).to_numpy()
        if len(units) and pd.Index(ids).has_duplicates:
            raise ValidationError("units have duplicate unit_id values; ids must be unique")
        self.units = units
        self.ids = ids
        self.crs = _metric_crs(units, crs) if len(units) else pyproj.CRS.from_user_input(crs)
        self.source_crs = units.crs
        geoms = units.geometry.to_numpy()
        if not pyproj.CRS.from_user_input(units.crs).equals(self.crs):
            geoms = units.geometry.to_crs(self.crs).to_numpy()
        self.geoms = np.asarray(geoms, dtype=object)
        types = shapely.get_type_id(self.geoms)
        if "kind" in units.columns:
            kind = units["kind"].astype(str).to_numpy()
            is_int = kind == "intersection"
        else:
            is_int = np.isin(types, [0, 4])
        self.is_int = is_int
        self.seg = np.flatnonzero(~is_int & ~shapely.is_missing(self.geoms))
        self.ints = np.flatnonzero(is_int & ~shapely.is_missing(self.geoms))
        self.seg_tree = shapely.STRtree(self.geoms[self.seg])
        self.all_tree = shapely.STRtree(self.geoms[np.r_[self.seg, self.ints]])
        self.all_pos = np.r_[self.seg, self.ints]
        pts = self.geoms[self.ints]
        if len(self.ints):
            pts = shapely.centroid(pts)  # a multipoint junction acts as its centre
        self.int_xy = shapely.get_coordinates(pts) if len(self.ints) else np.empty((0, 2))
        self.int_tree = shapely.STRtree(pts)
        if "radius_m" in units.columns:
            r = pd.to_numeric(units["radius_m"], errors="coerce").to_numpy(dtype=float)
        else:
            r = np.full(len(units), np.nan)
        r = np.where(np.isfinite(r), r, cfg.default_radius_m)
        self.radius = r
        if "road_class" in units.columns:
            cls = units["road_class"].astype("string").fillna("").to_numpy(dtype=object)
        else:
            cls = np.full(len(units), "", dtype=object)
        self.class_codes, self.classes = pd.factorize(cls)
        if "name" in units.columns:
            names = units["name"].astype("string").to_numpy(dtype=object)
            self.names: np.ndarray = names.copy()
            self.names[pd.isna(names)] = None
        else:
            self.names = np.full(len(units), None, dtype=object)
        # straight pieces of the segment units, for exact distances and measures in numpy
        parts, part_unit = shapely.get_parts(self.geoms[self.seg], return_index=True)
        cxy, cidx = shapely.get_coordinates(parts, return_index=True)
        same = cidx[1:] == cidx[:-1]
        self.pa = np.ascontiguousarray(cxy[:-1][same])
        self.pb = np.ascontiguousarray(cxy[1:][same])
        piece_part = cidx[:-1][same]
        self.piece_unit = self.seg[part_unit[piece_part]]
        self.piece_len = np.hypot(self.pb[:, 0] - self.pa[:, 0], self.pb[:, 1] - self.pa[:, 1])
        # contiguous columns for the per-pair arithmetic in _segment_pairs
        self.p_ax = np.ascontiguousarray(self.pa[:, 0])
        self.p_ay = np.ascontiguousarray(self.pa[:, 1])
        self.p_dx = self.pb[:, 0] - self.pa[:, 0]
        self.p_dy = self.pb[:, 1] - self.pa[:, 1]
        l2 = self.p_dx * self.p_dx + self.p_dy * self.p_dy
        self.p_il2 = np.divide(1.0, l2, out=np.zeros_like(l2), where=l2 > 0)
        cum = np.cumsum(self.piece_len)
        unit_first = np.r_[True, self.piece_unit[1:] != self.piece_unit[:-1]]
        base = np.maximum.accumulate(np.where(unit_first, cum - self.piece_len, 0.0))
        self.piece_start = cum - self.piece_len - base
        self._piece_trees: dict[float, shapely.STRtree] = {}
        r_int = self.radius[self.ints]
        self.disc_tree = shapely.STRtree(
            shapely.box(
                self.int_xy[:, 0] - r_int,
                self.int_xy[:, 1] - r_int,
                self.int_xy[:, 0] + r_int,
                self.int_xy[:, 1] + r_int,
            )
            if len(self.ints)
            else np.empty(0, dtype=object)
        )
        self.rank = np.empty(len(ids), dtype=np.int64)
        self.rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        self._hull: dict[float, Any] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def piece_tree(self, grow_m: float) -> shapely.STRtree:
        """STRtree of the segment pieces' bounding boxes grown by ``grow_m`` (cached)."""
        key = round(float(grow_m), 6)
        tree = self._piece_trees.get(key)
        if tree is None:
            lo = np.minimum(self.pa, self.pb) - grow_m
            hi = np.maximum(self.pa, self.pb) + grow_m
            tree = shapely.STRtree(shapely.box(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1]))
            self._piece_trees[key] = tree
        return tree

    def area(self, buffer_m: float) -> shapely.Geometry:
        """The network's area: convex hull of the units buffered by ``buffer_m`` (metric CRS)."""
        key = round(float(buffer_m), 6)
        if key not in self._hull:
            live = self.geoms[~shapely.is_missing(self.geoms)]
            hull = shapely.convex_hull(shapely.geometrycollections(live))
            area = shapely.buffer(hull, buffer_m)
            shapely.prepare(area)
            self._hull[key] = area
        return self._hull[key]


# --------------------------------------------------------------------------------------------
# distances


def _threshold_table(
    kinds: Sequence[str],
    classes: Sequence[str],
    max_distance_m: float | Mapping[str, float] | None,
    cfg: JoinSettings,
    base: Mapping[str, float],
) -> np.ndarray:
    """Max distance (m) by [event kind code, unit class code]."""
    table = np.empty((len(kinds), max(len(classes), 1)), dtype=float)
    for i, k in enumerate(kinds):
        default = float(base.get(k, cfg.max_distance_m.get("accident", 25.0)))
        by_class: dict[str, float] = dict(cfg.max_distance_m_by_class.get(k, {}))
        if isinstance(max_distance_m, Mapping):
            by_class.update({c: float(v) for c, v in max_distance_m.items()})
            default = float(max_distance_m.get("default", default))
        elif max_distance_m is not None:
            default = float(max_distance_m)
            by_class = {}
        table[i, :] = default
        for j, c in enumerate(classes):
            if c in by_class:
                table[i, j] = by_class[c]
    if not np.isfinite(table).all() or (table < 0).any():
        raise ValidationError(f"max_distance_m must be finite and >= 0 (got {max_distance_m!r})")
    return table


# --------------------------------------------------------------------------------------------
# points


@dataclass
class _PointResult:
    unit: np.ndarray  # position in units, -1 if none
    dist: np.ndarray
    measure: np.ndarray
    status: np.ndarray
    name_matched: int = 0
    name_overrode: int = 0


_BIG = np.iinfo(np.int64).max


def _sorted_by(q: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pairs ordered by query index (STRtree returns them so; sort only if not)."""
    if len(q) > 1 and (np.diff(q) < 0).any():
        order = np.argsort(q, kind="stable")
        return (q[order], *(o[order] for o in others))
    return (q, *others)


def _group_best(
    g: np.ndarray, d: np.ndarray, rank: np.ndarray, prefer: np.ndarray | None = None
) -> np.ndarray:
    """Index of the best pair per group ``g`` (sorted ascending).

    Best: ``prefer`` first (if given), then the smaller distance (to the micrometre), then
    the smaller ``rank``. Vectorised with ``reduceat``; no sort.
    """
    if len(g) == 0:
        return np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    counts = np.diff(np.r_[starts, len(g)])
    ok = np.ones(len(g), dtype=bool)
    if prefer is not None:
        any_pref = np.maximum.reduceat(prefer.astype(np.int8), starts).astype(bool)
        ok = prefer | ~np.repeat(any_pref, counts)
    dr = np.where(ok, np.round(d, 6), np.inf)
    dmin = np.minimum.reduceat(dr, starts)
    ok &= dr == np.repeat(dmin, counts)
    r = np.where(ok, rank, _BIG)
    rmin = np.minimum.reduceat(r, starts)
    ok &= rank == np.repeat(rmin, counts)
    idx = np.flatnonzero(ok)
    gi = g[idx]
    return idx[np.r_[True, gi[1:] != gi[:-1]]]


def _segment_pairs(
    ix: UnitIndex, pts: np.ndarray, x: np.ndarray, y: np.ndarray, dmax: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(point, unit position, distance, measure) for every unit within ``dmax`` of a point.

    The units' straight pieces are indexed by their bounding boxes grown by ``dmax``; a point
    query returns the pieces whose grown box holds it, and the exact point-to-piece distance
    and the position along the unit are computed in numpy. A unit may appear once per piece
    near the point; the selection downstream keeps the nearest.
    """
    tree = ix.piece_tree(dmax)
    qi, ti = tree.query(pts)
    qi, ti = _sorted_by(qi, ti)
    rx = x[qi]
    rx -= ix.p_ax[ti]
    ry = y[qi]
    ry -= ix.p_ay[ti]
    dx = ix.p_dx[ti]
    dy = ix.p_dy[ti]
    t = rx * dx
    t += ry * dy
    t *= ix.p_il2[ti]
    np.clip(t, 0.0, 1.0, out=t)
    rx -= t * dx
    ry -= t * dy
    rx *= rx
    ry *= ry
    rx += ry  # squared distance
    keep = rx <= dmax * dmax
    qi, ti, t = qi[keep], ti[keep], t[keep]
    d = np.sqrt(rx[keep])
    unit = ix.piece_unit[ti]
    meas = ix.piece_start[ti] + t * ix.piece_len[ti]
    return qi, unit, d, meas


def _assign_points(
    ix: UnitIndex,
    pts: np.ndarray,
    kind_codes: np.ndarray,
    names: np.ndarray | None,
    table: np.ndarray,
    *,
    name_aware: bool,
    intersection_precedence: bool,
    area_buffer_m: float,
    name_extra_m: float = 0.0,
) -> _PointResult:
    n = len(pts)
    unit = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    measure = np.full(n, np.nan)
    status = np.full(n, _NOT_DONE, dtype=np.int8)
    res = _PointResult(unit, dist, measure, status)
    if n == 0:
        return res
    xy = shapely.get_coordinates(pts)
    x, y = xy[:, 0].copy(), xy[:, 1].copy()
    dmax = float(table.max())
    has_name = np.zeros(n, dtype=bool)
    if name_aware and names is not None:
        text = pd.Series(names, dtype="string").str.strip()
        has_name = (text.notna() & (text != "")).to_numpy(dtype=bool)

    # -- candidates: segments within their class's distance, intersection discs ----------
    extra = name_extra_m if has_name.any() else 0.0
    ev_s, un_s, d_s, m_s = _segment_pairs(ix, pts, x, y, dmax + extra)
    lim = table[kind_codes[ev_s], ix.class_codes[un_s]] if len(ev_s) else np.empty(0)
    ok_s = d_s <= lim
    if intersection_precedence and len(ix.ints):
        qi, ti = ix.disc_tree.query(pts)
        qi, ti = _sorted_by(qi, ti)
        d_i = np.hypot(x[qi] - ix.int_xy[ti, 0], y[qi] - ix.int_xy[ti, 1])
        ok = d_i <= ix.radius[ix.ints[ti]]
        ev_i, un_i, d_i = qi[ok], ix.ints[ti[ok]], d_i[ok]
    else:
        ev_i = un_i = np.empty(0, dtype=np.int64)
        d_i = np.empty(0)
    if len(ev_s):
        # an event with a candidate of another name may reach ``extra`` farther for a unit of
        # the street it names before it takes the other street
        has_cand = np.zeros(n, dtype=bool)
        has_cand[ev_s[ok_s]] = True
        has_cand[ev_i] = True
        reach = ~ok_s & has_name[ev_s] & has_cand[ev_s] & (d_s <= lim + extra)
        if reach.any():
            assert names is not None
            ridx = np.flatnonzero(reach)
            ok_s[ridx] = _pair_name_match(names[ev_s[ridx]], ix.names[un_s[ridx]])
        ev_s, un_s, d_s, m_s = ev_s[ok_s], un_s[ok_s], d_s[ok_s], m_s[ok_s]
    ev = np.r_[ev_s, ev_i]
    uu = np.r_[un_s, un_i]
    dd = np.r_[d_s, d_i]
    mm = np.r_[m_s, np.zeros(len(ev_i))]
    is_int = np.r_[np.zeros(len(ev_s), dtype=bool), np.ones(len(ev_i), dtype=bool)]
    if len(ev_i) and len(ev_s):
        order = np.argsort(ev, kind="stable")
        ev, uu, dd, mm, is_int = ev[order], uu[order], dd[order], mm[order], is_int[order]

    if len(ev):
        rank = ix.rank[uu]
        first_plain = _group_best(ev, dd, rank, prefer=is_int)
        first = first_plain
        name_ok = np.zeros(len(ev), dtype=bool)
        named_pair = has_name[ev]
        if named_pair.any():
            assert names is not None
            idx = np.flatnonzero(named_pair)
            name_ok[idx] = _pair_name_match(names[ev[idx]], ix.names[uu[idx]])
            if name_ok.any():
                any_ok = np.zeros(n, dtype=bool)
                any_ok[ev[name_ok]] = True
                keep = ~any_ok[ev] | name_ok
                kidx = np.flatnonzero(keep)
                first = kidx[_group_best(ev[kidx], dd[kidx], rank[kidx], prefer=is_int[kidx])]
        chosen_ev = ev[first]
        unit[chosen_ev] = uu[first]
        dist[chosen_ev] = dd[first]
        measure[chosen_ev] = mm[first]
        status[chosen_ev] = np.where(is_int[first], _INTERSECTION, _MATCHED)
        res.name_matched = int(name_ok[first].sum())
        res.name_overrode = int((uu[first_plain] != uu[first]).sum())

    # -- unmatched: too far (with the distance to the nearest unit) or outside -------------
    rest = np.flatnonzero(status == _NOT_DONE)
    if len(rest):
        inside = shapely.contains_xy(ix.area(area_buffer_m), x[rest], y[rest])
        status[rest[~inside]] = _OUTSIDE
        far = rest[inside]
        status[far] = _TOO_FAR
        if len(far) and len(ix.all_pos):
            (qi, _ti), dn = ix.all_tree.query_nearest(
                pts[far], return_distance=True, all_matches=False
            )
            dist[far[qi]] = dn
    return res


# --------------------------------------------------------------------------------------------
# lines and polygons


@dataclass
class _PairResult:
    event: np.ndarray  # position in the non-point events
    unit: np.ndarray
    dist: np.ndarray
    measure: np.ndarray
    overlap: np.ndarray
    status: np.ndarray


def _assign_shapes(
    ix: UnitIndex,
    geoms: np.ndarray,
    tol: np.ndarray,
    cfg: JoinSettings,
    *,
    intersection_precedence: bool,
) -> _PairResult:
    n = len(geoms)
    is_poly = np.isin(shapely.get_type_id(geoms), [3, 6])
    buffers = shapely.buffer(geoms, tol)
    ev_l: list[np.ndarray] = []
    un_l: list[np.ndarray] = []
    di_l: list[np.ndarray] = []
    me_l: list[np.ndarray] = []
    ov_l: list[np.ndarray] = []
    st_l: list[np.ndarray] = []
    if len(ix.seg) and n:
        qi, ti = ix.seg_tree.query(buffers, predicate="intersects")
        seg_geoms = ix.geoms[ix.seg[ti]]
        pieces = shapely.intersection(seg_geoms, buffers[qi])
        piece_len = shapely.length(pieces)
        unit_len = shapely.length(seg_geoms)
        overlap = piece_len.copy()
        # measure: where along the unit the touching piece starts
        pxy, pidx = shapely.get_coordinates(pieces, return_index=True)
        has = np.bincount(pidx, minlength=len(pieces)) > 0
        meas = np.full(len(pieces), np.nan)
        if len(pxy):
            loc_u = shapely.line_locate_point(seg_geoms[pidx], shapely.points(pxy))
            meas[has] = _group_min(loc_u, pidx, len(pieces))[has]
        lines = ~is_poly[qi]
        if lines.any() and len(pxy):
            # along-event extent of the piece: ~0 for a cross street that only touches
            sel = lines[pidx]
            loc_e = shapely.line_locate_point(geoms[qi][pidx[sel]], shapely.points(pxy[sel]))
            lo = _group_min(loc_e, pidx[sel], len(pieces))
            hi = -_group_min(-loc_e, pidx[sel], len(pieces))
            extent = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
            overlap[lines] = np.minimum(extent[lines], piece_len[lines])
        keep = piece_len > 0
        keep &= is_poly[qi] | (overlap >= cfg.min_overlap_m) | (overlap >= 0.5 * unit_len)
        ev_l.append(qi[keep])
        un_l.append(ix.seg[ti[keep]])
        di_l.append(shapely.distance(geoms[qi[keep]], seg_geoms[keep]))
        me_l.append(meas[keep])
        ov_l.append(overlap[keep])
        st_l.append(np.full(int(keep.sum()), _MATCHED, dtype=np.int8))
    if intersection_precedence and len(ix.ints) and n:
        pts = ix.geoms[ix.ints]
        qi, ti = ix.int_tree.query(buffers, predicate="intersects")
        ev_l.append(qi)
        un_l.append(ix.ints[ti])
        di_l.append(shapely.distance(geoms[qi], pts[ti]))
        me_l.append(np.zeros(len(qi)))
        ov_l.append(np.zeros(len(qi)))
        st_l.append(np.full(len(qi), _INTERSECTION, dtype=np.int8))
    ev = np.concatenate(ev_l) if ev_l else np.empty(0, dtype=np.int64)
    un = np.concatenate(un_l) if un_l else np.empty(0, dtype=np.int64)
    di = np.concatenate(di_l) if di_l else np.empty(0)
    me = np.concatenate(me_l) if me_l else np.empty(0)
    ov = np.concatenate(ov_l) if ov_l else np.empty(0)
    st = np.concatenate(st_l) if st_l else np.empty(0, dtype=np.int8)
    # events touching nothing keep one row
    touched = np.zeros(n, dtype=bool)
    touched[ev] = True
    lonely = np.flatnonzero(~touched)
    if len(lonely):
        inside = shapely.intersects(ix.area(cfg.area_buffer_m), geoms[lonely])
        d_near = np.full(len(lonely), np.nan)
        far = np.flatnonzero(inside)
        if len(far) and len(ix.all_pos):
            (qi, _ti), dn = ix.all_tree.query_nearest(
                geoms[lonely[far]], return_distance=True, all_matches=False
            )
            d_near[far[qi]] = dn
        ev = np.r_[ev, lonely]
        un = np.r_[un, np.full(len(lonely), -1, dtype=np.int64)]
        di = np.r_[di, d_near]
        me = np.r_[me, np.full(len(lonely), np.nan)]
        ov = np.r_[ov, np.full(len(lonely), np.nan)]
        st = np.r_[st, np.where(inside, _TOO_FAR, _OUTSIDE).astype(np.int8)]
    # order: by event, then intersections/segments by id
    rank = np.where(un >= 0, ix.rank[np.maximum(un, 0)], -1)
    order = np.lexsort((rank, ev))
    return _PairResult(ev[order], un[order], di[order], me[order], ov[order], st[order])


def _group_min(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.inf)
    np.minimum.at(out, groups, values)
    out[~np.isfinite(out)] = np.nan
    return out


# --------------------------------------------------------------------------------------------
# assign


def assign(
    units: gpd.GeoDataFrame | UnitIndex,
    events: gpd.GeoDataFrame,
    *,
    max_distance_m: float | Mapping[str, float] | None = None,
    name_aware: bool | None = None,
    intersection_precedence: bool | None = None,
    crs: Any = None,
    settings: JoinSettings | None = None,
) -> gpd.GeoDataFrame:
    """Attach events to the traffic units they belong to.

    Parameters
    ----------
    units
        Traffic units (``tu.build_units``) or a :class:`UnitIndex` built from them.
    events
        Events from ``tu.read_events`` (any CRS; a ``kind`` column chooses the distances,
        else they are accidents; ``road_name`` enables name-aware matching).
    max_distance_m
        Largest snap distance of a point to a segment, metres: one number for every event,
        or a mapping by the unit's ``road_class`` (``{"motorway": 40, "default": 25}``).
        Default: ``settings.max_distance_m`` by event kind (accident 25 m, hazard 20 m,
        work zone 25 m) with ``settings.max_distance_m_by_class`` overrides. For line and
        polygon events the tolerance is ``settings.line_tolerance_m`` /
        ``polygon_tolerance_m`` (or ``max_distance_m`` when it is a number).
    name_aware, intersection_precedence
        Override the settings' rules (see the module docs).
    crs
        Metric CRS for the work (default: the units' UTM zone).
    settings
        :class:`~trafficunit.settings.JoinSettings`.

    Returns
    -------
    geopandas.GeoDataFrame
        In the events' CRS: one row per point event (unmatched ones included) and one row per
        (event, unit) pair for line and polygon events, event rows in input order. Columns: the
        event columns, ``unit_id`` (``<NA>`` when unmatched), ``distance_m`` (to the unit; to
        the nearest unit for ``"too_far"``), ``measure_m`` (along the unit from its first
        vertex, metres; 0 for intersections), ``match`` (``"matched"``, ``"intersection"``,
        ``"too_far"``, ``"outside"``) and ``overlap_m`` (line/polygon events). The match
        report is ``.attrs["report"]``.

    Examples
    --------
    >>> import geopandas as gpd, pandas as pd, shapely, trafficunit as tu
    >>> units = gpd.GeoDataFrame(
    ...     {"kind": ["segment"], "radius_m": [float("nan")], "name": ["Main St"]},
    ...     geometry=[shapely.LineString([(0, 0), (100, 0)])], crs=3067,
    ...     index=pd.Index(["S1"], name="unit_id"))
    >>> events = gpd.GeoDataFrame({"event_id": ["a", "b"]},
    ...     geometry=[shapely.Point(40, 5), shapely.Point(40, 80)], crs=3067)
    >>> j = tu.assign(units, events, max_distance_m=25)
    >>> j[["unit_id", "distance_m", "measure_m", "match"]].values.tolist()
    [['S1', 5.0, 40.0, 'matched'], [<NA>, nan, nan, 'outside']]
    """
    cfg = settings or JoinSettings()
    require_gdf(events, "events")
    ix = units if isinstance(units, UnitIndex) else UnitIndex(units, crs=crs, settings=cfg)
    name_aware = cfg.name_aware if name_aware is None else name_aware
    int_prec = (
        cfg.intersection_precedence
        if intersection_precedence is None
        else (intersection_precedence)
    )
    n = len(events)
    if "kind" in events.columns:
        kinds_raw = events["kind"].astype("string").fillna("accident").to_numpy(dtype=object)
    else:
        kinds_raw = np.full(n, "accident", dtype=object)
    kind_codes, kinds = pd.factorize(kinds_raw)
    kinds = [str(k) for k in kinds]
    unknown = set(kinds) - set(EVENT_KINDS)
    if unknown:
        raise ValidationError(
            f"events have unknown kind(s) {sorted(unknown)}; use {', '.join(EVENT_KINDS)}"
        )
    classes = [str(c) for c in ix.classes]
    table = _threshold_table(kinds, classes, max_distance_m, cfg, cfg.max_distance_m)
    if isinstance(max_distance_m, int | float):
        line_tol = {k: float(max_distance_m) for k in kinds}
    else:
        line_tol = {
            k: float(cfg.line_tolerance_m.get(k, table[i].max())) for i, k in enumerate(kinds)
        }

    if len(ix) and not pyproj.CRS.from_user_input(events.crs).equals(ix.crs):
        geoms = events.geometry.to_crs(ix.crs).to_numpy()
    else:
        geoms = events.geometry.to_numpy()
    geoms = np.asarray(geoms, dtype=object)
    types = shapely.get_type_id(geoms)
    missing = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    is_point = (types == 0) & ~missing
    multipoint = types == 4
    if multipoint.any():
        geoms = geoms.copy()
        geoms[multipoint] = shapely.centroid(geoms[multipoint])
        is_point |= multipoint & ~missing

    names = None
    if name_aware and "road_name" in events.columns:
        names = events["road_name"].astype("string").to_numpy(dtype=object)
        names = np.where(pd.isna(names), None, names)

    pidx = np.flatnonzero(is_point)
    pres = _assign_points(
        ix,
        geoms[pidx],
        kind_codes[pidx],
        names[pidx] if names is not None else None,
        table,
        name_aware=name_aware,
        intersection_precedence=int_prec,
        area_buffer_m=cfg.area_buffer_m,
        name_extra_m=cfg.name_extra_distance_m,
    )
    sidx = np.flatnonzero(~is_point & ~missing)
    shapes = None
    if len(sidx):
        tol = np.array([line_tol[kinds[k]] for k in kind_codes[sidx]], dtype=float)
        poly = np.isin(types[sidx], [3, 6])
        tol[poly] = (
            float(max_distance_m)
            if isinstance(max_distance_m, int | float)
            else cfg.polygon_tolerance_m
        )
        shapes = _assign_shapes(ix, geoms[sidx], tol, cfg, intersection_precedence=int_prec)

    # rows: every event once (points, missing) or per pair (shapes), in event order
    row_ev = np.arange(n)
    unit = np.full(n, -1, dtype=np.int64)
    dist = np.full(n, np.nan)
    meas = np.full(n, np.nan)
    over = np.full(n, np.nan)
    stat = np.full(n, _OUTSIDE, dtype=np.int8)
    unit[pidx], dist[pidx], meas[pidx], stat[pidx] = (
        pres.unit,
        pres.dist,
        pres.measure,
        pres.status,
    )
    if shapes is not None:
        keep_rows = np.ones(n, dtype=bool)
        keep_rows[sidx] = False
        pe = sidx[shapes.event]
        row_ev = np.r_[row_ev[keep_rows], pe]
        unit = np.r_[unit[keep_rows], shapes.unit]
        dist = np.r_[dist[keep_rows], shapes.dist]
        meas = np.r_[meas[keep_rows], shapes.measure]
        over = np.r_[over[keep_rows], shapes.overlap]
        stat = np.r_[stat[keep_rows], shapes.status]
        order = np.argsort(row_ev, kind="stable")
        row_ev, unit, dist, meas, over, stat = (
            row_ev[order],
            unit[order],
            dist[order],
            meas[order],
            over[order],
            stat[order],
        )
        out = events.iloc[row_ev].reset_index(drop=True)
    else:
        out = events.reset_index(drop=True).copy(deep=False)

    ids = np.full(len(unit), None, dtype=object)
    if len(ix):
        hit = unit >= 0
        ids[hit] = ix.ids[unit[hit]]
    out["unit_id"] = pd.array(ids, dtype="string")
    out["distance_m"] = dist
    out["measure_m"] = meas
    out["match"] = pd.array(np.asarray(MATCH_STATUSES, dtype=object)[stat], dtype="string")
    out["overlap_m"] = over
    report = _report(out, events, stat, row_ev, dist, pres, table, kinds, ix)
    dmax = float(table.max()) if table.size else 0.0
    report["diagnosis"] = _diagnose(events, geoms, report, ix, cfg, dmax)
    out.attrs = {"report": report}
    return out


def _lonlat_points(geoms: np.ndarray, crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude of a representative point of each geometry (NaN where missing)."""
    n = len(geoms)
    lon, lat = np.full(n, np.nan), np.full(n, np.nan)
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not ok.any():
        return lon, lat
    pts = shapely.point_on_surface(geoms[ok])
    xy = shapely.get_coordinates(pts)
    tr = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    lon[ok], lat[ok] = tr.transform(xy[:, 0], xy[:, 1], errcheck=False)
    return lon, lat


def _diagnose(
    events: gpd.GeoDataFrame,
    geoms: np.ndarray,
    report: dict[str, Any],
    ix: UnitIndex,
    cfg: JoinSettings,
    dmax: float,
) -> dict[str, Any] | None:
    """When most events miss the network, the likely mistake (swapped x/y, wrong CRS,
    GCJ-02 coordinates) or the harmless reason (the file covers a wider area), in words."""
    n_ev = int(report["events"])
    if n_ev < 5 or not len(ix):
        return None
    outside = report["by_match"]["outside"]
    too_far = report["by_match"]["too_far"]
    matched = report["matched"]
    if outside < 0.5 * n_ev and not (too_far > 0.5 * n_ev):
        return None
    lon, lat = _lonlat_points(geoms, ix.crs)
    ok = np.isfinite(lon) & np.isfinite(lat)
    if not ok.any():
        return None
    to_metric = pyproj.Transformer.from_crs(4326, ix.crs, always_xy=True)
    area = ix.area(cfg.area_buffer_m)
    if shapely.is_empty(area) or shapely.area(area) == 0:
        return None

    def inside_share(x: np.ndarray, y: np.ndarray) -> float:
        good = np.isfinite(x) & np.isfinite(y) & (np.abs(y) <= 90) & (np.abs(x) <= 180)
        if not good.any():
            return 0.0
        mx, my = to_metric.transform(x[good], y[good], errcheck=False)
        return float(shapely.contains_xy(area, mx, my).sum()) / n_ev

    now_in = (n_ev - outside) / n_ev
    pct = f"{outside / n_ev:.0%}"
    c = shapely.centroid(area)
    clon, clat = pyproj.Transformer.from_crs(ix.crs, 4326, always_xy=True).transform(c.x, c.y)

    def covers_network(x: np.ndarray, y: np.ndarray) -> bool:
        """The network's centre lies within the (2-98 %) extent of these positions."""
        lo, hi = np.percentile(x, [2, 98]), np.percentile(y, [2, 98])
        return bool(lo[0] <= clon <= lo[1] and hi[0] <= clat <= hi[1])

    if outside >= 0.5 * n_ev:
        as_is = now_in >= 0.5 or covers_network(lon[ok], lat[ok])
        sw = inside_share(lat[ok], lon[ok])
        if not as_is and (sw >= 0.5 or (sw > 0 and covers_network(lat[ok], lon[ok]))):
            return {
                "likely": "swapped x/y",
                "message": (
                    f"{pct} of the events lie outside the network's area; with x and y "
                    f"exchanged {sw:.0%} would lie inside and the events would surround it: "
                    "x and y look swapped; give x= the easting/longitude column and y= the "
                    "northing/latitude one"
                ),
            }
        if as_is:
            return {
                "likely": "wider area",
                "message": (
                    f"{pct} of the events lie outside the network's area, which lies inside "
                    "theirs: the events file covers a wider area than the network (nothing "
                    "wrong if that is so)"
                ),
            }
        mlon, mlat = float(np.median(lon[ok])), float(np.median(lat[ok]))
        km = _km(mlon, mlat, clon, clat)
        return {
            "likely": "wrong CRS",
            "message": (
                f"{pct} of the events lie outside the network's area; their median position "
                f"({mlon:.4f}, {mlat:.4f}) is {km:,.0f} km from the network's centre "
                f"({clon:.4f}, {clat:.4f}): the CRS given for x/y (crs=) is likely wrong, or "
                "the network covers another place"
            ),
        }
    # most events inside the area but too far from every unit: coordinates shifted?
    from . import chinacrs

    w, s_, e, n_ = chinacrs.CHINA_BBOX
    china = ok & (lon >= w) & (lon <= e) & (lat >= s_) & (lat <= n_)
    if china.sum() < 0.5 * n_ev:
        return None
    idx = np.flatnonzero(china)[:2000]
    base = _near_share(ix, lon[idx], lat[idx], to_metric, dmax)
    for system in chinacrs.SYSTEMS:
        x2, y2 = chinacrs.to_wgs84(lon[idx], lat[idx], system)
        share = _near_share(ix, np.asarray(x2), np.asarray(y2), to_metric, dmax)
        if share >= 0.5 and share > 2 * max(base, matched / n_ev):
            return {
                "likely": system,
                "message": (
                    f"{too_far / n_ev:.0%} of the events lie too far from every unit; read as "
                    f"{system.upper()} coordinates {share:.0%} would lie within {dmax:g} m: the "
                    f"file looks like {system.upper()} (Chinese consumer maps); give "
                    f"crs='{system}'"
                ),
            }
    return None


def _near_share(
    ix: UnitIndex, lon: np.ndarray, lat: np.ndarray, tr: pyproj.Transformer, dmax: float
) -> float:
    x, y = tr.transform(lon, lat, errcheck=False)
    pts = shapely.points(x, y)
    _, d = ix.all_tree.query_nearest(pts, return_distance=True, all_matches=False)
    return float(np.mean(d <= dmax)) if len(d) else 0.0


def _km(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = (
        np.sin((p2 - p1) / 2) ** 2
        + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    return float(6371.0 * 2 * np.arcsin(np.sqrt(a)))


def _report(
    out: gpd.GeoDataFrame,
    events: gpd.GeoDataFrame,
    stat: np.ndarray,
    row_ev: np.ndarray,
    dist: np.ndarray,
    pres: _PointResult,
    table: np.ndarray,
    kinds: list[str],
    ix: UnitIndex,
) -> dict[str, Any]:
    n_ev = len(events)
    # per event: best status (matched/intersection beats too_far/outside)
    best = np.full(n_ev, 9, dtype=np.int8)
    np.minimum.at(best, row_ev, stat)
    counts = {s: int((best == i).sum()) for i, s in enumerate(MATCH_STATUSES)}
    matched = counts["matched"] + counts["intersection"]
    inside = n_ev - counts["outside"]
    d = dist[(stat == _MATCHED) | (stat == _INTERSECTION)]
    pct = {f"p{q}": round(float(np.percentile(d, q)), 2) for q in (50, 90, 99)} if len(d) else {}
    read = events.attrs.get("report") if isinstance(events.attrs, dict) else None
    return {
        "events": n_ev,
        "rows": len(out),
        "units": len(ix),
        "by_match": counts,
        "matched": matched,
        "matched_share": round(matched / n_ev, 4) if n_ev else None,
        "matched_share_inside": round(matched / inside, 4) if inside else None,
        "distance_m": pct,
        "max_distance_m": {k: float(table[i].max()) for i, k in enumerate(kinds)},
        "name_matched": pres.name_matched,
        "name_overrode_nearest": pres.name_overrode,
        "metric_crs": ix.crs.to_string(),
        "read": read,
    }


# --------------------------------------------------------------------------------------------
# time windows


def _as_ts(t: Any, tz: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    if ts.tzinfo is None:
        ts = ts.tz_localize(tz or "UTC")
    return ts


def active_between(
    workzones: gpd.GeoDataFrame | pd.DataFrame, start: Any, end: Any
) -> gpd.GeoDataFrame | pd.DataFrame:
    """Work zones (or joined rows) whose ``[start, end]`` overlaps the window ``[start, end]``.

    A missing ``start`` means "since ever", a missing ``end`` "until further notice". Naive
    times are read in the zones' time zone.
    """
    if "start" not in workzones.columns or "end" not in workzones.columns:
        raise ValidationError("work zones need 'start' and 'end' columns (tu.read_events)")
    s = workzones["start"]
    e = workzones["end"]
    tz = getattr(s.dtype, "tz", None) or getattr(e.dtype, "tz", None)
    t0, t1 = _as_ts(start, tz), _as_ts(end, tz)
    if t1 < t0:
        raise ValidationError(f"window ends ({t1}) before it starts ({t0})")
    ok = (s.isna() | (s <= t1)) & (e.isna() | (e >= t0))
    return workzones.loc[ok.to_numpy(dtype=bool)]


def active_at(
    workzones: gpd.GeoDataFrame | pd.DataFrame, t: Any
) -> gpd.GeoDataFrame | pd.DataFrame:
    """Work zones (or joined rows) active at time ``t``: ``start <= t <= end``.

    Examples
    --------
    >>> import pandas as pd
    >>> wz = pd.DataFrame({"start": pd.to_datetime(["2018-06-01", "2018-06-10"]).tz_localize("UTC"),
    ...                    "end": pd.to_datetime(["2018-06-05", "2018-06-20"]).tz_localize("UTC")})
    >>> len(active_at(wz, "2018-06-03")), len(active_at(wz, "2018-06-07"))
    (1, 0)
    """
    return active_between(workzones, t, t)


# --------------------------------------------------------------------------------------------
# summaries


def _accidents(joined: pd.DataFrame, period: tuple[Any, Any] | None) -> pd.DataFrame:
    kind = joined["kind"] if "kind" in joined.columns else pd.Series("accident", joined.index)
    ok = (kind == "accident").to_numpy(dtype=bool) & joined["unit_id"].notna().to_numpy()
    acc = joined.loc[ok]
    if period is not None and len(acc):
        tz = getattr(acc["time"].dtype, "tz", None) if "time" in acc.columns else None
        t0, t1 = _as_ts(period[0], tz), _as_ts(period[1], tz)
        keep = pd.Series(False, index=acc.index)
        if "time" in acc.columns:
            keep |= ((acc["time"] >= t0) & (acc["time"] < t1)).fillna(False)
            no_time = acc["time"].isna()
        else:
            no_time = pd.Series(True, index=acc.index)
        if "year" in acc.columns:
            y = acc["year"]
            keep |= (no_time & (y >= t0.year) & (y <= (t1 - pd.Timedelta(1, "ns")).year)).fillna(
                False
            )
        acc = acc.loc[keep.to_numpy(dtype=bool)]
    return acc


def _years(acc: pd.DataFrame, period: tuple[Any, Any] | None) -> float:
    if period is not None:
        t0, t1 = pd.Timestamp(period[0]), pd.Timestamp(period[1])
        return max((t1 - t0).total_seconds() / (365.25 * 86400), 1e-9)
    if "year" in acc.columns and acc["year"].notna().any():
        y = acc["year"].dropna()
        return float(int(y.max()) - int(y.min()) + 1)
    return float("nan")


def summarize(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    period: tuple[Any, Any] | None = None,
    weights: str | Mapping[str, float] | None = None,
    at: Any = None,
    settings: JoinSettings | None = None,
) -> gpd.GeoDataFrame:
    """Accidents, hazards and work zones per unit.

    Parameters
    ----------
    units
        The units the events were joined to (indexed by ``unit_id``).
    joined
        Output of :func:`assign` (one or several kinds, e.g. concatenated).
    period
        ``(start, end)`` of the accidents counted (end exclusive; accidents with only a
        year count when their year lies in the period). Default: every accident, over the
        span of years present.
    weights
        EPDO weights: a version name or a mapping (see :func:`epdo_weights`).
    at
        Time at which hazards' open state and work zones' activity are evaluated (default:
        now).
    settings
        :class:`~trafficunit.settings.JoinSettings` (closed hazard statuses, EPDO version).

    Returns
    -------
    geopandas.GeoDataFrame
        Indexed by ``unit_id``: the unit columns plus ``crashes``, ``K``, ``A``, ``B``,
        ``C``, ``O``, ``epdo``, ``years``, ``crashes_per_year``, ``crashes_per_km`` and
        ``crashes_per_km_year`` (NaN for intersections), ``epdo_per_km``, ``first_year``,
        ``last_year``, ``hazards``, ``open_hazards``, ``open_major_hazards``, ``workzones``,
        ``active_workzones``. ``.attrs["epdo_weights"]`` records the weights used.
    """
    cfg = settings or JoinSettings()
    require_gdf(units, "units")
    if "unit_id" not in joined.columns:
        raise ValidationError("joined has no unit_id column; pass the output of tu.assign")
    w = epdo_weights(weights if weights is not None else cfg.epdo_weights)
    out = units.copy()
    if "unit_id" in out.columns:
        out = out.set_index("unit_id")
    idx = out.index.astype(str)
    acc = _accidents(joined, period)
    years = _years(acc, period)
    sev = acc["severity"].astype("string") if "severity" in acc.columns else None
    uid = acc["unit_id"].astype(str)
    counts = uid.value_counts()
    out["crashes"] = counts.reindex(idx).fillna(0).astype("int64").to_numpy()
    epdo = np.zeros(len(out))
    for s in _SEVERITIES:
        if sev is not None:
            c = uid[(sev == s).fillna(False).to_numpy()].value_counts()
            col = c.reindex(idx).fillna(0).astype("int64").to_numpy()
        else:
            col = np.zeros(len(out), dtype=np.int64)
        out[s] = col
        epdo += w[s] * col
    out["epdo"] = epdo
    length_km = (
        pd.to_numeric(out["length_m"], errors="coerce").to_numpy(dtype=float) / 1000.0
        if "length_m" in out.columns
        else np.full(len(out), np.nan)
    )
    length_km = np.where(length_km > 0, length_km, np.nan)
    out["years"] = years
    out["crashes_per_year"] = out["crashes"] / years
    out["crashes_per_km"] = out["crashes"] / length_km
    out["crashes_per_km_year"] = out["crashes_per_km"] / years
    out["epdo_per_km"] = out["epdo"] / length_km
    if "year" in acc.columns and len(acc):
        g = acc.groupby(uid.to_numpy())["year"]
        out["first_year"] = g.min().reindex(idx).astype("Int64").to_numpy()
        out["last_year"] = g.max().reindex(idx).astype("Int64").to_numpy()
    else:
        out["first_year"] = pd.array([pd.NA] * len(out), dtype="Int64")
        out["last_year"] = pd.array([pd.NA] * len(out), dtype="Int64")

    now = _as_ts(at, "UTC") if at is not None else pd.Timestamp.now(tz="UTC")
    kind = joined["kind"] if "kind" in joined.columns else pd.Series("accident", joined.index)
    linked = joined["unit_id"].notna()
    hz = joined.loc[((kind == "hazard") & linked).to_numpy(dtype=bool)]
    if len(hz):
        status = (
            hz["status"].astype("string").str.strip().str.casefold()
            if ("status" in hz.columns)
            else pd.Series(pd.NA, index=hz.index, dtype="string")
        )
        closed_set = {s.casefold() for s in cfg.closed_statuses}
        is_open = ~status.isin(closed_set).fillna(False)
        if "reported_at" in hz.columns:
            is_open &= (hz["reported_at"].isna() | (hz["reported_at"] <= now)).fillna(True)
        grade = hz["grade"].astype("string") if "grade" in hz.columns else None
        major = (grade == "major").fillna(False) if grade is not None else is_open & False
        hz_uid = hz["unit_id"].astype(str)
        hz_ev = hz["event_id"].astype(str) if "event_id" in hz.columns else hz_uid.index
        frame = pd.DataFrame(
            {
                "u": hz_uid.to_numpy(),
                "e": np.asarray(hz_ev),
                "open": is_open.to_numpy(),
                "major": major.to_numpy(),
            }
        ).drop_duplicates(["u", "e"])
        out["hazards"] = frame["u"].value_counts().reindex(idx).fillna(0).astype(int).to_numpy()
        op = frame.loc[frame["open"], "u"].value_counts()
        out["open_hazards"] = op.reindex(idx).fillna(0).astype(int).to_numpy()
        om = frame.loc[frame["open"] & frame["major"], "u"].value_counts()
        out["open_major_hazards"] = om.reindex(idx).fillna(0).astype(int).to_numpy()
    else:
        out["hazards"] = 0
        out["open_hazards"] = 0
        out["open_major_hazards"] = 0
    wz = joined.loc[((kind == "workzone") & linked).to_numpy(dtype=bool)]
    if len(wz):
        ev = wz["event_id"].astype(str) if "event_id" in wz.columns else wz.index.astype(str)
        frame = pd.DataFrame({"u": wz["unit_id"].astype(str).to_numpy(), "e": np.asarray(ev)})
        out["workzones"] = (
            frame.drop_duplicates()["u"].value_counts().reindex(idx).fillna(0).astype(int)
        ).to_numpy()
        act = active_at(wz, now) if {"start", "end"} <= set(wz.columns) else wz.iloc[0:0]
        fa = pd.DataFrame(
            {
                "u": act["unit_id"].astype(str).to_numpy(),
                "e": np.asarray(
                    act["event_id"].astype(str) if "event_id" in act.columns else act.index
                ),
            }
        ).drop_duplicates()
        out["active_workzones"] = fa["u"].value_counts().reindex(idx).fillna(0).astype(int)
        out["active_workzones"] = out["active_workzones"].fillna(0).astype(int)
    else:
        out["workzones"] = 0
        out["active_workzones"] = 0
    out.attrs = {
        "epdo_weights": w,
        "period": [str(p) for p in period] if period is not None else None,
        "years": years,
        "at": str(now),
    }
    return out


def summarize_by_year(
    joined: pd.DataFrame,
    *,
    weights: str | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Accidents per unit and year: ``crashes``, ``K`` … ``O``, ``epdo``.

    Returns
    -------
    pandas.DataFrame
        Indexed by (``unit_id``, ``year``), only the pairs with accidents.
    """
    w = epdo_weights(weights)
    acc = _accidents(joined, None)
    if len(acc) == 0:
        cols = ["crashes", *_SEVERITIES, "epdo"]
        return pd.DataFrame(
            columns=cols, index=pd.MultiIndex.from_arrays([[], []], names=["unit_id", "year"])
        )
    frame = pd.DataFrame(
        {
            "unit_id": acc["unit_id"].astype(str).to_numpy(),
            "year": acc["year"].astype("Int64").to_numpy(),
            "severity": acc["severity"].astype("string").to_numpy(),
        }
    )
    table = pd.crosstab([frame["unit_id"], frame["year"]], frame["severity"])
    for s in _SEVERITIES:
        if s not in table.columns:
            table[s] = 0
    table = table[list(_SEVERITIES)]
    table.insert(0, "crashes", frame.groupby(["unit_id", "year"]).size())
    table["epdo"] = sum(w[s] * table[s] for s in _SEVERITIES)
    table.columns.name = None
    return table
