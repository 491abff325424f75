"""Accident-prone points and sections (black spots), sliding windows and HSM peak searching.

- **Roads**: :func:`road_chains` chains segment units into continuous roads. Consecutive
  pieces of one road are linked directly (``from_unit`` / ``to_unit``); through an intersection
  two segments are linked when they carry the same road name (or ref, ``chain_keys``) and their
  directions agree (two one-way carriageways flowing into the same junction are two roads, not
  one). Where more than two same-named ends meet, the straightest pairs are linked. Every
  chain has a running distance, and each intersection on it sits at the distance of its joint.
- **Corridors**: :func:`road_corridors` pairs the two carriageways of a divided road (same
  name or ref, one-way in opposite directions, within ``corridor_max_offset_m``) into one
  screening line measured along its longer carriageway; the junctions along either belong to
  it. Sliding windows and sections use corridors by default (``corridors=False``: every
  carriageway alone).
- **Sections**: :func:`sliding_windows` moves a window along every chain and counts the
  accidents inside (by KABCO severity, casualties, EPDO); :func:`find_black_spots` keeps the
  windows that meet a profile's rule, the worst first, without overlaps on the same road, and
  each accident in one section only: a chosen section takes its accidents out of every other
  window before the next is chosen. Its own accidents (``segment_crashes``) and those of the
  junctions on it (``junction_crashes``) are separate columns.
- **Points**: accidents within ``point_radius_m`` of a centre accident, the worst qualifying
  circle first, each accident in at most one point.
- **Peak searching** (HSM Part B): :func:`peak_search` grows a window along each road until the
  coefficient of variation of its EB estimate falls below a limit, and reports the window with
  the largest excess.

Profiles (:data:`trafficunit.settings.BLACK_SPOT_PROFILES`): ``default``, ``kr-molit``,
``in-morth``, ``pt-ansr``; pass a :class:`~trafficunit.settings.BlackSpotProfile` for your own.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy import sparse
from scipy.sparse import csgraph
from shapely.ops import substring

from ._errors import TrafficUnitWarning, ValidationError
from ._validate import metric_crs
from .risk import (
    SEVERITIES,
    _attribute_notes,
    _units_frame,
    accidents,
    describe_events,
    dominant_phrases,
)
from .settings import BLACK_SPOT_PROFILES, BlackSpotProfile, Criterion, RiskSettings
from .timefilter import Period, _data_period, as_period, event_years

__all__ = [
    "find_black_spots",
    "road_chains",
    "road_corridors",
    "sliding_windows",
    "peak_search",
    "get_profile",
    "register_profile",
    "parse_criterion",
    "PROFILES",
]

#: Profiles by name; :func:`register_profile` adds user-defined ones.
PROFILES: dict[str, BlackSpotProfile] = dict(BLACK_SPOT_PROFILES)

_BASE_FIELDS = ("crashes", *SEVERITIES, "deaths", "serious_injuries", "minor_injuries", "epdo")
_CASUALTY_PROXY = {"deaths": "K", "serious_injuries": "A", "minor_injuries": "BC"}
_CRITERION_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(>=|>)\s*([0-9.]+)\s*$")


# -- profiles -------------------------------------------------------------------------------------


def parse_criterion(text: str) -> Criterion:
    """``"KA >= 3"`` -> ``Criterion("KA", 3)``."""
    m = _CRITERION_RE.match(text)
    if not m:
        raise ValidationError(
            f"cannot read criterion {text!r}; write e.g. 'KA >= 3' or 'index > 20'"
        )
    return Criterion(m.group(1), float(m.group(3)), op=m.group(2))


def get_profile(profile: str | BlackSpotProfile | Mapping[str, Any]) -> BlackSpotProfile:
    """A profile by name, as given, or built from a mapping (criteria may be strings)."""
    if isinstance(profile, BlackSpotProfile):
        out = profile
    elif isinstance(profile, str):
        if profile not in PROFILES:
            raise ValidationError(
                f"unknown black-spot profile {profile!r}; use one of {sorted(PROFILES)} or pass "
                "a BlackSpotProfile"
            )
        out = PROFILES[profile]
    elif isinstance(profile, Mapping):
        d = dict(profile)
        for key in ("criteria", "section_criteria"):
            if d.get(key) is not None:
                d[key] = tuple(parse_criterion(c) if isinstance(c, str) else c for c in d[key])
        d.setdefault("name", "custom")
        out = BlackSpotProfile(**d)
    else:
        raise ValidationError(f"profile must be a name or a BlackSpotProfile, got {profile!r}")
    _check_profile(out)
    return out


def register_profile(profile: BlackSpotProfile) -> None:
    """Make a user-defined profile available by its name."""
    _check_profile(profile)
    PROFILES[profile.name] = profile


def _check_profile(p: BlackSpotProfile) -> None:
    if not p.criteria:
        raise ValidationError(f"profile {p.name!r} has no criteria")
    if p.combine not in ("any", "all"):
        raise ValidationError(f"profile {p.name!r}: combine must be 'any' or 'all'")
    for c in (*p.criteria, *(p.section_criteria or ())):
        _field_ok(c.field)
        if c.op not in (">=", ">"):
            raise ValidationError(f"criterion {c}: op must be '>=' or '>'")
    for name, v in (("point_radius_m", p.point_radius_m), ("window_m", p.window_m)):
        if not v > 0:
            raise ValidationError(f"profile {p.name!r}: {name} must be positive, got {v}")
    if not 0 < p.step_m <= p.window_m:
        raise ValidationError(f"profile {p.name!r}: step_m must be in (0, window_m]")
    if not p.years > 0:
        raise ValidationError(f"profile {p.name!r}: years must be positive")


def _field_ok(name: str) -> None:
    if name in _BASE_FIELDS or name in ("index", "injury"):
        return
    if name and set(name) <= set(SEVERITIES):
        return
    raise ValidationError(
        f"unknown criterion field {name!r}; use crashes, KABCO letters (e.g. 'KA'), injury, "
        "deaths, serious_injuries, minor_injuries, epdo or index"
    )


def _rule_text(criteria: tuple[Criterion, ...], combine: str) -> str:
    return f" {'or' if combine == 'any' else 'and'} ".join(str(c) for c in criteria)


# -- accident fields ------------------------------------------------------------------------------


def _fields(acc: pd.DataFrame, cfg: RiskSettings) -> tuple[pd.DataFrame, list[str]]:
    """Per-accident numeric fields (crashes, K..O, casualties, EPDO) and fields approximated."""
    sev = acc["severity"].fillna(cfg.unknown_severity).to_numpy(dtype=object)
    f = pd.DataFrame(index=acc.index)
    f["crashes"] = 1.0
    for letter in SEVERITIES:
        f[letter] = (sev == letter).astype(float)
    approx = []
    for col, proxy in _CASUALTY_PROXY.items():
        if col in acc.columns and acc[col].notna().any():
            f[col] = pd.to_numeric(acc[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        else:
            f[col] = f[list(proxy)].sum(axis=1)
            approx.append(col)
    f["epdo"] = sum(f[s] * cfg.epdo_weights[s] for s in SEVERITIES)
    return f, approx


def _evaluate(
    sums: pd.DataFrame | dict[str, np.ndarray], p: BlackSpotProfile, criteria: tuple[Criterion, ...]
) -> np.ndarray:
    """Whether each row of field sums meets the criteria."""
    results = []
    for c in criteria:
        v = _field_value(sums, c.field, p)
        results.append(v > c.value if c.op == ">" else v >= c.value - 1e-9)
    stack = np.vstack(results)
    return np.asarray(stack.any(axis=0) if p.combine == "any" else stack.all(axis=0))


def _field_value(sums: Any, name: str, p: BlackSpotProfile) -> np.ndarray:
    if name == "index":
        return np.asarray(
            sum(np.asarray(sums[k], dtype=float) * w for k, w in p.index_weights.items())
        )
    if name == "injury":
        name = "KABC"
    if name in _BASE_FIELDS:
        return np.asarray(sums[name], dtype=float)
    return np.asarray(sum(np.asarray(sums[ch], dtype=float) for ch in name))


# -- chains ---------------------------------------------------------------------------------------


def _road_key(u: pd.DataFrame, keys: Iterable[str]) -> pd.Series:
    out = pd.Series(pd.NA, index=u.index, dtype="string")
    for col in keys:
        if col in u.columns:
            v = u[col].astype("string").str.strip().str.lower()
            v = v.mask(v == "")
            out = out.fillna(v)
    return out


def _end_vectors(geoms: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Unit vector pointing from a segment's end (side 0: start, 1: end) into the segment."""
    n = shapely.get_num_points(geoms)
    i0 = np.where(side == 0, 0, n - 1)
    i1 = np.where(side == 0, 1, n - 2)
    p0 = shapely.get_coordinates(shapely.get_point(geoms, i0))
    p1 = shapely.get_coordinates(shapely.get_point(geoms, i1))
    v = p1 - p0
    norm = np.hypot(v[:, 0], v[:, 1])
    norm[norm == 0] = 1.0
    return np.asarray(v / norm[:, None])


def road_chains(units: gpd.GeoDataFrame, *, settings: RiskSettings | None = None) -> pd.DataFrame:
    """Chain segment units into continuous roads with a running distance.

    Returns
    -------
    pandas.DataFrame
        One row per segment (``kind`` "segment") and one per intersection on a road
        (``kind`` "intersection", ``start_m == end_m``): ``chain_id``, ``unit_id``, ``kind``,
        ``start_m``, ``end_m``, ``reversed`` (the segment is traversed against its drawing
        direction), ``road`` (the chain's name or ref) and ``chain_length_m``. Segments inside
        a complex junction (``junction_id`` set) are represented by their junction.
    """
    cfg = settings or RiskSettings()
    u = _units_frame(units)
    is_seg = (u["kind"] == "segment").to_numpy()
    internal = np.zeros(len(u), dtype=bool)
    if "junction_id" in u.columns:
        internal = is_seg & u["junction_id"].notna().to_numpy()
    s = u.loc[is_seg & ~internal]
    n = len(s)
    if n == 0:
        raise ValidationError("the units have no segments to chain into roads")
    ids = s.index.to_numpy(dtype=object)
    seg_index = pd.Index(ids)
    length = pd.to_numeric(s["length_m"], errors="coerce").fillna(0.0).to_numpy(dtype=float)
    # every unit id -> the node it stands for (intersection itself; junction link -> junction)
    node_of = pd.Series(u.index.to_numpy(dtype=object), index=u.index)
    if internal.any():
        node_of[internal] = u.loc[internal, "junction_id"].astype(object)
    node_of[is_seg & ~internal] = None
    key = np.array(_road_key(s, cfg.chain_keys).to_numpy(dtype=object), dtype=object)
    key[pd.isna(key)] = None
    oneway = (
        (s["direction"] == "forward").to_numpy() if "direction" in s.columns else np.zeros(n, bool)
    )

    def col(name: str) -> np.ndarray:
        if name not in s.columns:
            return np.full(n, None, dtype=object)
        v = np.array(s[name].astype(object).to_numpy(), dtype=object)
        v[pd.isna(v)] = None
        return v

    other = np.r_[col("from_unit"), col("to_unit")]
    e_seg = np.r_[np.arange(n), np.arange(n)]
    e_side = np.r_[np.zeros(n, dtype=int), np.ones(n, dtype=int)]
    links: list[np.ndarray] = []

    def compatible(
        a_seg: np.ndarray, a_side: np.ndarray, b_seg: np.ndarray, b_side: np.ndarray
    ) -> np.ndarray:
        both_oneway = oneway[a_seg] & oneway[b_seg]
        return np.asarray(~(both_oneway & (a_side == b_side)) & (a_seg != b_seg))

    # 1. direct segment -> segment continuations
    j = seg_index.get_indexer(pd.Index(other))
    direct = j >= 0
    a_seg, a_side, b_seg = e_seg[direct], e_side[direct], j[direct]
    me = ids[a_seg]
    fu_b, tu_b = col("from_unit")[b_seg], col("to_unit")[b_seg]
    b_side = np.where(fu_b == me, 0, np.where(tu_b == me, 1, -1))
    ka, kb = key[a_seg], key[b_seg]
    same = np.array([x is None or y is None or x == y for x, y in zip(ka, kb, strict=True)], bool)
    ok = (b_side >= 0) & same & compatible(a_seg, a_side, b_seg, b_side)
    na = 2 * a_seg[ok] + a_side[ok]
    nb = 2 * b_seg[ok] + b_side[ok]
    keep = na < nb
    links.append(np.column_stack([na[keep], nb[keep]]))

    # 2. through intersections: same road key, compatible direction, straightest pairs
    onode = node_of.reindex(pd.Index(other)).to_numpy(dtype=object)
    at_node = ~direct & pd.notna(onode)
    at_key = at_node & np.array([k is not None for k in key[e_seg]], dtype=bool)
    ends = pd.DataFrame(
        {
            "node": onode[at_key],
            "key": key[e_seg[at_key]],
            "seg": e_seg[at_key],
            "side": e_side[at_key],
        }
    )
    ends["size"] = ends.groupby(["node", "key"])["seg"].transform("size")
    ends = ends.loc[ends["size"] >= 2]
    if len(ends):
        geoms = s.geometry.to_numpy()[ends["seg"].to_numpy()]
        vec = _end_vectors(geoms, ends["side"].to_numpy())
        if u.crs is not None and u.crs.is_geographic:
            lat = shapely.get_coordinates(shapely.get_point(geoms, 0))[:, 1]
            vec[:, 0] *= np.cos(np.deg2rad(lat))
            vec /= np.maximum(np.hypot(vec[:, 0], vec[:, 1]), 1e-12)[:, None]
        ends = ends.assign(vx=vec[:, 0], vy=vec[:, 1])
    # a continuation may turn by at most chain_max_turn_deg (no U-turns onto the other
    # carriageway): the outward vectors' cosine must be <= -cos(max turn)
    max_cos = -float(np.cos(np.deg2rad(cfg.chain_max_turn_deg)))
    pairs2 = ends.loc[ends["size"] == 2].sort_values(["node", "key", "seg", "side"])
    if len(pairs2):
        a = pairs2.iloc[0::2]
        b = pairs2.iloc[1::2]
        a_s, a_d = a["seg"].to_numpy(), a["side"].to_numpy()
        b_s, b_d = b["seg"].to_numpy(), b["side"].to_numpy()
        cosang = a["vx"].to_numpy() * b["vx"].to_numpy() + a["vy"].to_numpy() * b["vy"].to_numpy()
        ok = compatible(a_s, a_d, b_s, b_d) & (cosang <= max_cos + 1e-9)
        links.append(np.column_stack([2 * a_s[ok] + a_d[ok], 2 * b_s[ok] + b_d[ok]]))
    many = ends.loc[ends["size"] > 2]
    if len(many):
        extra = []
        for _, grp in many.groupby(["node", "key"], sort=False):
            seg_g = grp["seg"].to_numpy()
            side_g = grp["side"].to_numpy()
            v = grp[["vx", "vy"]].to_numpy()
            ia, ib = np.triu_indices(len(grp), 1)
            cosang = (v[ia] * v[ib]).sum(axis=1)
            okp = compatible(seg_g[ia], side_g[ia], seg_g[ib], side_g[ib]) & (
                cosang <= max_cos + 1e-9
            )
            ia, ib, cosang = ia[okp], ib[okp], cosang[okp]
            used: set[int] = set()
            for t in np.argsort(cosang, kind="stable"):  # straightest first
                x, y = int(ia[t]), int(ib[t])
                if x in used or y in used:
                    continue
                used.update((x, y))
                extra.append((2 * seg_g[x] + side_g[x], 2 * seg_g[y] + side_g[y]))
        if extra:
            links.append(np.asarray(extra, dtype=np.int64))
    ext = np.vstack(links) if links else np.zeros((0, 2), dtype=np.int64)
    # each end takes at most one link
    if len(ext):
        flat = ext.ravel()
        first = np.zeros(len(flat), dtype=bool)
        _, idx = np.unique(flat, return_index=True)
        first[idx] = True
        ext = ext[first.reshape(-1, 2).all(axis=1)]

    m = 2 * n
    internal_edges = np.column_stack([np.arange(0, m, 2), np.arange(1, m, 2)])
    ext_deg = np.bincount(ext.ravel(), minlength=m) if len(ext) else np.zeros(m, dtype=int)

    def graph(edges: np.ndarray, size: int) -> sparse.csr_matrix:
        e = np.vstack([internal_edges, edges]) if len(edges) else internal_edges
        return sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(size, size)).tocsr()

    _, comp = csgraph.connected_components(graph(ext, m), directed=False)
    endpoint = ext_deg == 0
    has_end = np.zeros(comp.max() + 1, dtype=bool)
    has_end[comp[endpoint]] = True
    if not has_end.all() and len(ext):  # rings: cut one link per ring
        ring_link = ~has_end[comp[ext[:, 0]]]
        ring_comp = comp[ext[:, 0]]
        cut = np.zeros(len(ext), dtype=bool)
        idx = np.flatnonzero(ring_link)
        _, first_idx = np.unique(ring_comp[idx], return_index=True)
        cut[idx[first_idx]] = True
        ext = ext[~cut]
        ext_deg = np.bincount(ext.ravel(), minlength=m) if len(ext) else np.zeros(m, dtype=int)
        endpoint = ext_deg == 0
        _, comp = csgraph.connected_components(graph(ext, m), directed=False)
    # one start per chain, then one depth-first walk from a virtual root through every chain
    ep = np.flatnonzero(endpoint)
    _, first_ep = np.unique(comp[ep], return_index=True)
    starts = ep[first_ep]
    root = m
    root_edges = np.column_stack([np.full(len(starts), root), starts])
    g = graph(np.vstack([ext, root_edges]) if len(ext) else root_edges, m + 1)
    order = csgraph.depth_first_order(g, root, directed=False, return_predecessors=False)
    rank = np.empty(m + 1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    r0, r1 = rank[0:m:2], rank[1:m:2]
    rev = r1 < r0
    chain_raw = comp[0:m:2]
    seg_order = np.argsort(np.minimum(r0, r1), kind="stable")
    chain_codes, chain_id = np.unique(chain_raw[seg_order], return_inverse=True)
    seg_len = length[seg_order]
    rev_o = rev[seg_order]
    cid = chain_id
    # junction crossings: the gap between one segment's exit and the next one's entry (a
    # consolidated junction spans metres) counts in the running distance
    mcrs = metric_crs(u)
    g_o = s.geometry.to_numpy()[seg_order]
    first_pt = gpd.GeoSeries(shapely.get_point(g_o, 0), crs=u.crs).to_crs(mcrs)
    last_pt = gpd.GeoSeries(shapely.get_point(g_o, -1), crs=u.crs).to_crs(mcrs)
    p0 = np.column_stack([first_pt.x.to_numpy(), first_pt.y.to_numpy()])
    p1 = np.column_stack([last_pt.x.to_numpy(), last_pt.y.to_numpy()])
    entry = np.where(rev_o[:, None], p1, p0)
    exit_ = np.where(rev_o[:, None], p0, p1)
    gap = np.zeros(n)
    if n > 1:
        d = np.hypot(*(entry[1:] - exit_[:-1]).T)
        same_chain = cid[1:] == cid[:-1]
        gap[1:] = np.where(same_chain & np.isfinite(d), d, 0.0)
    step_len = seg_len + gap
    cum = np.cumsum(step_len)
    chain_start = np.r_[0, np.flatnonzero(np.diff(cid)) + 1]
    base = np.repeat(
        cum[chain_start] - step_len[chain_start], np.diff(np.r_[chain_start, len(cid)])
    )
    end_m = cum - base
    start_m = end_m - seg_len
    gap_after = np.r_[gap[1:], 0.0]
    seg_rows = pd.DataFrame(
        {
            "chain_id": cid,
            "unit_id": ids[seg_order],
            "kind": "segment",
            "start_m": start_m,
            "end_m": end_m,
            "reversed": rev_o,
        }
    )
    # intersections at segment ends
    pos_in_order = np.empty(n, dtype=np.int64)
    pos_in_order[seg_order] = np.arange(n)
    e_row = pos_in_order[e_seg]
    e_rev = rev[e_seg]
    at_start_of_walk = (e_side == 0) != e_rev  # the end where the walk enters the segment
    # an intersection sits in the middle of the junction crossing
    offset = np.where(
        at_start_of_walk,
        start_m[e_row] - gap[e_row] / 2.0,
        end_m[e_row] + gap_after[e_row] / 2.0,
    )
    inode = at_node
    node_rows = pd.DataFrame(
        {
            "chain_id": cid[e_row[inode]],
            "unit_id": onode[inode],
            "kind": "intersection",
            "start_m": offset[inode],
            "end_m": offset[inode],
            "reversed": False,
        }
    )
    # an intersection sits once on a road: a road that loops back to it (a service loop, a
    # turning circle) keeps the first passage only, so its accidents are never counted twice
    node_rows = node_rows.sort_values(["chain_id", "start_m"], kind="stable").drop_duplicates(
        ["chain_id", "unit_id"]
    )
    out = pd.concat([seg_rows, node_rows], ignore_index=True)
    out = out.sort_values(["chain_id", "start_m", "kind"], kind="stable", ignore_index=True)
    seg_keys = pd.Series(key[seg_order], dtype=object)
    road = seg_keys.groupby(cid).first()
    out["road"] = out["chain_id"].map(road)
    # display name as in the data (not lower-cased)
    disp = _road_key_display(s, cfg.chain_keys).to_numpy(dtype=object)[seg_order]
    road_disp = pd.Series(disp, dtype=object).groupby(cid).first()
    out["road"] = out["chain_id"].map(road_disp)
    chain_len = (
        pd.Series(np.r_[end_m, node_rows["start_m"].to_numpy()])
        .groupby(np.r_[cid, node_rows["chain_id"].to_numpy()])
        .max()
    )
    out["chain_length_m"] = out["chain_id"].map(chain_len)
    return out


def _road_key_display(u: pd.DataFrame, keys: Iterable[str]) -> pd.Series:
    out = pd.Series(pd.NA, index=u.index, dtype="string")
    for col in keys:
        if col in u.columns:
            v = u[col].astype("string").str.strip()
            v = v.mask(v == "")
            out = out.fillna(v)
    return out


# -- corridors: the two carriageways of a divided road as one screening line ----------------------


def _tangents(geoms: np.ndarray) -> np.ndarray:
    """Unit vector of each line from 45 % to 55 % of its length (drawing direction)."""
    a = shapely.get_coordinates(shapely.line_interpolate_point(geoms, 0.45, normalized=True))
    b = shapely.get_coordinates(shapely.line_interpolate_point(geoms, 0.55, normalized=True))
    v = b - a
    norm = np.hypot(v[:, 0], v[:, 1])
    norm[norm == 0] = 1.0
    return np.asarray(v / norm[:, None])


def road_corridors(
    units: gpd.GeoDataFrame,
    *,
    chains: pd.DataFrame | None = None,
    settings: RiskSettings | None = None,
) -> pd.DataFrame:
    """Screening lines: road chains with the two carriageways of a divided road as one corridor.

    Two chains of :func:`road_chains` are the carriageways of one divided road when both are
    one-way (``direction`` "forward" on at least 80 % of their length), carry the same road
    key (name, else ref), and run in opposite directions (within
    ``settings.corridor_max_angle_deg`` of antiparallel) with their segments' midpoints within
    ``settings.corridor_max_offset_m`` metres of the other carriageway along at least
    ``settings.corridor_min_overlap_m`` metres (or half the shorter chain). Paired chains (and
    chains paired with those) form a corridor. Positions along a corridor are measured along
    a common reference line, its longest carriageway: the other carriageways' segments and
    intersections are projected onto it. Pieces of a carriageway that do not run beside the
    reference line stay on their own chain. Each unit sits once on a corridor, so a window
    counts each accident once; the intersections along either carriageway belong to the
    corridor.

    Returns
    -------
    pandas.DataFrame
        The :func:`road_chains` columns with ``chain_id`` renumbered over screening lines
        (corridors after the plain chains) plus ``carriageway`` (the unit's
        :func:`road_chains` chain id, so per-carriageway results stay available) and
        ``corridor`` (True on a corridor).
    """
    cfg = settings or RiskSettings()
    u = _units_frame(units)
    ch = (chains if chains is not None else road_chains(u, settings=cfg)).copy()
    ch["carriageway"] = ch["chain_id"].to_numpy()
    ch["corridor"] = False
    seg = ch.loc[ch["kind"] == "segment"]
    if "direction" not in u.columns or len(seg) == 0:
        return ch
    direction = u["direction"].reindex(seg["unit_id"]).astype("string").to_numpy()
    lw = (seg["end_m"] - seg["start_m"]).to_numpy(dtype=float)
    c_id = seg["chain_id"].to_numpy()
    n_chain = int(ch["chain_id"].max()) + 1
    total = np.bincount(c_id, weights=lw, minlength=n_chain)
    one = np.bincount(c_id, weights=lw * (direction == "forward"), minlength=n_chain)
    with np.errstate(invalid="ignore", divide="ignore"):
        oneway_chain = (one / total) >= 0.8
    keyed = _road_key(u, cfg.chain_keys).reindex(seg["unit_id"]).to_numpy(dtype=object)
    cand = oneway_chain[c_id] & pd.notna(keyed)
    if cand.sum() < 2:
        return ch
    mcrs = metric_crs(u)
    cs = seg.loc[cand]
    geoms = gpd.GeoSeries(u.geometry.reindex(cs["unit_id"]).to_numpy(), crs=u.crs)
    geoms = geoms.to_crs(mcrs).to_numpy()
    ck = c_id[cand]
    key = keyed[cand]
    tan = _tangents(geoms)  # one-way: drawn in the direction of travel
    mid = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(mid, predicate="dwithin", distance=cfg.corridor_max_offset_m)
    cos_max = -float(np.cos(np.deg2rad(cfg.corridor_max_angle_deg)))
    ok = (ck[i] != ck[j]) & (key[i] == key[j]) & ((tan[i] * tan[j]).sum(axis=1) <= cos_max)
    i, j = i[ok], j[ok]
    if len(i) == 0:
        return ch
    seg_len = lw[cand]
    # matched length of chain a beside chain b (each segment once per partner chain)
    pairs = pd.DataFrame({"a": ck[i], "b": ck[j], "seg": i}).drop_duplicates(["seg", "b"])
    pairs["len"] = seg_len[pairs["seg"].to_numpy()]
    matched = pairs.groupby(["a", "b"])["len"].sum().reset_index()
    shorter = np.minimum(total[matched["a"]], total[matched["b"]])
    need = np.minimum(cfg.corridor_min_overlap_m, 0.5 * shorter)
    matched = matched.loc[matched["len"].to_numpy() >= need - 1e-9]
    if len(matched) == 0:
        return ch
    a, b = matched["a"].to_numpy(), matched["b"].to_numpy()
    graph = sparse.coo_matrix((np.ones(len(a)), (a, b)), shape=(n_chain, n_chain)).tocsr()
    n_comp, comp = csgraph.connected_components(graph, directed=False)
    members = np.zeros(n_chain, dtype=bool)
    members[np.r_[a, b]] = True
    comp_size = np.bincount(comp[members], minlength=n_comp)
    chain_len = ch.groupby("chain_id")["chain_length_m"].first().reindex(range(n_chain))
    lens = chain_len.fillna(0.0).to_numpy()
    # the reference of each corridor: its longest carriageway
    mem = np.flatnonzero(members & (comp_size[comp] >= 2))
    order = mem[np.lexsort((mem, -lens[mem], comp[mem]))]
    _, first = np.unique(comp[order], return_index=True)
    refs = order[first]
    ref_of_comp = np.full(n_comp, -1)
    ref_of_comp[comp[refs]] = refs
    # reference lines in metric coordinates, in the walk direction
    all_seg = ch.loc[ch["kind"] == "segment"]
    ref_rows = all_seg.loc[all_seg["chain_id"].isin(refs)].sort_values(["chain_id", "start_m"])
    rg = gpd.GeoSeries(u.geometry.reindex(ref_rows["unit_id"]).to_numpy(), crs=u.crs)
    rg = rg.to_crs(mcrs).to_numpy()
    rg = np.where(ref_rows["reversed"].to_numpy(dtype=bool), shapely.reverse(rg), rg)
    coords, owner = shapely.get_coordinates(rg, return_index=True)
    line_chain = ref_rows["chain_id"].to_numpy()[owner]
    ref_line: dict[int, Any] = {}
    starts = np.r_[0, np.flatnonzero(np.diff(line_chain)) + 1, len(line_chain)]
    for s0, s1 in zip(starts[:-1], starts[1:], strict=True):  # one per corridor
        ref_line[int(line_chain[s0])] = shapely.linestrings(coords[s0:s1])
    # project the other carriageways' units onto their corridor's reference line
    row_comp = np.where(members[ch["chain_id"].to_numpy()], comp[ch["chain_id"].to_numpy()], -1)
    row_ref = np.where(row_comp >= 0, ref_of_comp[np.maximum(row_comp, 0)], -1)
    on_ref = (row_ref >= 0) & (ch["chain_id"].to_numpy() == row_ref)
    other = np.flatnonzero((row_ref >= 0) & ~on_ref)
    sub = ch.iloc[other]
    lines = np.array([ref_line[int(r)] for r in row_ref[other]], dtype=object)
    g = gpd.GeoSeries(u.geometry.reindex(sub["unit_id"]).to_numpy(), crs=u.crs).to_crs(mcrs)
    g = g.to_numpy()
    is_seg = (sub["kind"] == "segment").to_numpy()
    p_first = shapely.centroid(g)
    p_last = p_first.copy()
    p_mid = p_first.copy()
    p_first[is_seg] = shapely.get_point(g[is_seg], 0)
    p_last[is_seg] = shapely.get_point(g[is_seg], -1)
    p_mid[is_seg] = shapely.line_interpolate_point(g[is_seg], 0.5, normalized=True)
    m0 = shapely.line_locate_point(lines, p_first)
    m1 = shapely.line_locate_point(lines, p_last)
    line_len = shapely.length(lines)
    dist = shapely.distance(lines, p_mid)
    clamped = is_seg & ((np.maximum(m0, m1) <= 1e-6) | (np.minimum(m0, m1) >= line_len - 1e-6))
    beside = (dist <= 1.5 * cfg.corridor_max_offset_m) & ~clamped
    moved = other[beside]
    ch.loc[ch.index[moved], "start_m"] = np.minimum(m0, m1)[beside]
    ch.loc[ch.index[moved], "end_m"] = np.maximum(m0, m1)[beside]
    ch.loc[ch.index[moved], "reversed"] = (m0 > m1)[beside]
    new_chain = ch["chain_id"].to_numpy().copy()
    new_chain[moved] = row_ref[moved]
    # renumber: plain chains first, then corridors (named by their reference chain)
    corridor_ref = np.zeros(n_chain, dtype=bool)
    corridor_ref[refs] = True
    ch["chain_id"] = new_chain
    ch["corridor"] = corridor_ref[new_chain]
    ch["road"] = (
        ch["chain_id"].map(ch.loc[on_ref].groupby("chain_id")["road"].first()).fillna(ch["road"])
    )
    ch = ch.sort_values(["chain_id", "start_m", "kind"], kind="stable")
    # a unit (an intersection shared by both carriageways) sits once on its corridor
    ch = ch.drop_duplicates(["chain_id", "unit_id"])
    ref_len = pd.Series({r: float(shapely.length(ref_line[int(r)])) for r in refs})
    lengths = ch.groupby("chain_id")["chain_length_m"].first()
    lengths.loc[ref_len.index] = np.maximum(
        ref_len.to_numpy(),
        ch.loc[ch["corridor"]].groupby("chain_id")["end_m"].max().reindex(ref_len.index).to_numpy(),
    )
    present = np.unique(ch["chain_id"].to_numpy())
    rank = np.lexsort((present, corridor_ref[present]))
    renum = pd.Series(np.arange(len(present)), index=present[rank])
    ch["chain_length_m"] = ch["chain_id"].map(lengths)
    ch["chain_id"] = ch["chain_id"].map(renum).to_numpy(dtype=np.int64)
    return ch.sort_values(["chain_id", "start_m", "kind"], kind="stable", ignore_index=True)


# -- positions of accidents along chains ----------------------------------------------------------


def _chain_positions(
    chains: pd.DataFrame, acc: pd.DataFrame, u: pd.DataFrame, include_intersections: bool
) -> pd.DataFrame:
    """(accident row, chain_id, pos_m) for every accident on a chained unit."""
    acc_unit = acc["unit_id"].astype(object).to_numpy()
    measure = (
        pd.to_numeric(acc["measure_m"], errors="coerce").to_numpy(dtype=float)
        if "measure_m" in acc.columns
        else np.full(len(acc), np.nan)
    )
    # map junction-internal links to their junction
    if "junction_id" in u.columns:
        jmap = u["junction_id"].dropna()
        jmap = jmap[u.loc[jmap.index, "kind"] == "segment"]
        mapped = pd.Series(acc_unit).map(jmap).to_numpy(dtype=object)
        acc_unit = np.where(pd.notna(mapped), mapped, acc_unit)
    rows = pd.DataFrame({"row": np.arange(len(acc)), "unit_id": acc_unit, "m": measure})
    seg = chains.loc[chains["kind"] == "segment"]
    a = rows.merge(seg, on="unit_id", how="inner")
    span = (a["end_m"] - a["start_m"]).to_numpy(dtype=float)
    # the measure is along the unit; on a corridor the unit's span is its projection on the
    # reference line, so the position goes by the share of the unit's own length
    own = pd.to_numeric(u["length_m"], errors="coerce").reindex(a["unit_id"]).to_numpy(dtype=float)
    own = np.where(np.isfinite(own) & (own > 0), own, span)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(a["m"].to_numpy(dtype=float) / own, 0.0, 1.0)
    frac = np.where(np.isfinite(frac), frac, 0.5)
    along = frac * span
    a["pos_m"] = np.where(a["reversed"], a["end_m"] - along, a["start_m"] + along)
    a["at_node"] = False
    parts = [a[["row", "chain_id", "pos_m", "at_node"]]]
    if include_intersections:
        nodes = chains.loc[chains["kind"] == "intersection"]
        b = rows.merge(nodes, on="unit_id", how="inner")
        b["pos_m"] = b["start_m"]
        b["at_node"] = True
        parts.append(b[["row", "chain_id", "pos_m", "at_node"]])
    # a unit sits once on a screening line (road_chains / road_corridors), so an accident does
    return pd.concat(parts, ignore_index=True)


def _windows(chain_len: np.ndarray, window: np.ndarray, step: float) -> pd.DataFrame:
    """Window starts/ends along each chain (vectorised); the last window ends at the chain end."""
    span = np.maximum(chain_len - window, 0.0)
    k_full = np.floor(span / step + 1e-9).astype(np.int64)
    rem = span - k_full * step
    n_w = k_full + 1 + (rem > 1e-6).astype(np.int64)
    chain = np.repeat(np.arange(len(chain_len)), n_w)
    first = np.repeat(np.cumsum(n_w) - n_w, n_w)
    k = np.arange(n_w.sum()) - first
    start = k * step
    last_extra = (k == n_w[chain] - 1) & (rem[chain] > 1e-6)
    start = np.where(last_extra, span[chain], start).astype(float)
    end = np.minimum(start + window[chain], chain_len[chain])
    return pd.DataFrame({"chain_id": chain, "start_m": start, "end_m": end})


def _window_sums(
    pos: pd.DataFrame, fields: pd.DataFrame, win: pd.DataFrame, chain_len: np.ndarray
) -> pd.DataFrame:
    """Sum accident fields over closed windows [start, end] with one global searchsorted."""
    base = np.r_[0.0, np.cumsum(chain_len + 1.0)[:-1]]
    g = base[pos["chain_id"].to_numpy()] + pos["pos_m"].to_numpy()
    order = np.argsort(g, kind="stable")
    g = g[order]
    vals = fields.to_numpy(dtype=float)[pos["row"].to_numpy()[order]]
    cs = np.vstack([np.zeros((1, vals.shape[1])), np.cumsum(vals, axis=0)])
    wb = base[win["chain_id"].to_numpy()]
    lo = np.searchsorted(g, wb + win["start_m"].to_numpy() - 1e-6, side="left")
    hi = np.searchsorted(g, wb + win["end_m"].to_numpy() + 1e-6, side="right")
    sums = cs[hi] - cs[lo]
    return pd.DataFrame(sums, columns=fields.columns, index=win.index)


def _chain_table(chains: pd.DataFrame) -> pd.DataFrame:
    return chains.groupby("chain_id").agg(
        road=("road", "first"), length_m=("chain_length_m", "first")
    )


def sliding_windows(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    window_m: float | None = None,
    step_m: float | None = None,
    period: Any = None,
    chains: pd.DataFrame | None = None,
    include_intersections: bool = True,
    corridors: bool = True,
    settings: RiskSettings | None = None,
) -> pd.DataFrame:
    """Accident counts in windows moved along every continuous road (network screening).

    Parameters
    ----------
    window_m, step_m
        Window length and step in metres (default HSM 0.3 mi / 0.1 mi,
        ``settings.screen_window_m`` / ``screen_step_m``). A road shorter than the window is one
        window. The last window of a road ends at the road's end.
    period
        ``(start, end)`` of the accidents counted; default all.
    chains
        Output of :func:`road_chains` (or :func:`road_corridors`) to reuse.
    corridors
        Screen the two carriageways of a divided road as one corridor
        (:func:`road_corridors`), each accident once per window; False: every carriageway
        on its own (``chain_id`` as in :func:`road_chains`).

    Returns
    -------
    pandas.DataFrame
        One row per window: ``chain_id``, ``road``, ``corridor``, ``start_m``, ``end_m``,
        and sums of
        ``crashes``, ``K``..``O``, ``deaths``, ``serious_injuries``, ``minor_injuries``,
        ``epdo`` (casualties approximated by K / A / B+C counts when the data has none).
    """
    cfg = settings or RiskSettings()
    window = cfg.screen_window_m if window_m is None else float(window_m)
    step = cfg.screen_step_m if step_m is None else float(step_m)
    if not (window > 0 and step > 0):
        raise ValidationError(f"window_m and step_m must be positive, got {window}, {step}")
    u = _units_frame(units)
    ch = chains if chains is not None else road_chains(u, settings=cfg)
    if corridors and "corridor" not in ch.columns:
        ch = road_corridors(u, chains=ch, settings=cfg)
    acc, _, _ = accidents(joined, period=period)
    fields, _ = _fields(acc, cfg)
    pos = _chain_positions(ch, acc, u, include_intersections)
    table = _chain_table(ch)
    chain_len = table["length_m"].to_numpy(dtype=float)
    win = _windows(chain_len, np.full(len(chain_len), window), step)
    sums = _window_sums(pos, fields, win, chain_len)
    out = pd.concat([win, sums], axis=1)
    out.insert(1, "road", table["road"].to_numpy()[win["chain_id"].to_numpy()])
    corr = (
        ch.groupby("chain_id")["corridor"].first().to_numpy(dtype=bool)
        if "corridor" in ch.columns
        else np.zeros(len(table), dtype=bool)
    )
    out.insert(2, "corridor", corr[win["chain_id"].to_numpy()])
    return out


# -- black spots ----------------------------------------------------------------------------------


def _default_period(acc: pd.DataFrame, years: float) -> Period | None:
    """The latest ``years`` whole years of the data, never starting before the data does."""
    span = _data_period(acc)
    y = event_years(acc).dropna()
    if len(y) == 0 or span is None:
        return None
    end = pd.Timestamp(year=int(y.max()) + 1, month=1, day=1)
    if float(years).is_integer():
        start = pd.Timestamp(year=int(y.max()) - int(years) + 1, month=1, day=1)
    else:
        start = end - pd.Timedelta(days=round(years * 365.25))
    return Period(max(start, span.start), min(end, span.end))


def find_black_spots(
    units: gpd.GeoDataFrame,
    joined: pd.DataFrame,
    *,
    profile: str | BlackSpotProfile | Mapping[str, Any] = "default",
    period: Any = None,
    types: Iterable[str] = ("point", "section"),
    corridors: bool = True,
    settings: RiskSettings | None = None,
) -> gpd.GeoDataFrame:
    """Accident-prone points and sections by a named or user-defined profile.

    Parameters
    ----------
    units
        Traffic units (:func:`trafficunit.build_units`).
    joined
        Accidents joined to the units (:func:`trafficunit.assign`); a GeoDataFrame for points.
    profile
        ``"default"``, ``"kr-molit"``, ``"in-morth"``, ``"pt-ansr"``, a registered name, a
        :class:`~trafficunit.settings.BlackSpotProfile` or a mapping of its fields.
    period
        ``(start, end)``; default the latest ``profile.years`` whole years of data, never
        before the data's first day (a year of data is reported as that year, with a warning
        that the profile is defined over more); ``attrs["period_label"]`` says which.
    types
        ``"point"`` and/or ``"section"``.
    corridors
        Screen divided roads as one corridor (:func:`road_corridors`); False: every
        carriageway on its own.

    An accident counts in at most one point and at most one section (windows are chosen
    best first and give up the accidents of the sections already chosen); a point and a
    section may share accidents, and ``overlap_crashes`` / ``overlap_spot_ids`` say which.

    Returns
    -------
    geopandas.GeoDataFrame
        In the units' CRS, worst first: ``spot_id``, ``type``, ``road``, ``unit_ids``
        (';'-joined), ``length_m`` (0 for points), ``radius_m``, ``start_m``/``end_m`` along
        the road (sections), ``crashes``, ``K``..``O``, ``KA``, ``deaths``,
        ``serious_injuries``, ``minor_injuries``, ``epdo``, ``index``, ``rule``,
        ``explanation``, ``event_ids``, geometry (point or line). Sections also have
        ``segment_crashes`` (on the section's own segments) and ``junction_crashes`` (on the
        intersections inside it), ``corridor`` and ``carriageways``. Every spot has
        ``overlap_crashes`` (its accidents that are also in a spot of the other type) and
        ``overlap_spot_ids``. ``.attrs`` has the profile, period and a report.
    """
    cfg = settings or RiskSettings()
    p = get_profile(profile)
    types = tuple(types)
    bad = set(types) - {"point", "section"}
    if bad:
        raise ValidationError(f"unknown black-spot types {sorted(bad)}; use 'point', 'section'")
    u = _units_frame(units)
    acc_all, _, report = accidents(joined, period=None)
    per = as_period(period) if period is not None else _default_period(acc_all, p.years)
    if per is None:
        raise ValidationError("the accidents carry no time or year; give period=(start, end)")
    acc, _, report = accidents(joined, period=per)
    if abs(per.years - p.years) > 0.1 * p.years:
        warnings.warn(
            f"period {per.label()} is {per.years:.1f} years but profile {p.name!r} is defined "
            f"over {p.years:g}; thresholds are applied unchanged",
            TrafficUnitWarning,
            stacklevel=2,
        )
    fields, approx = _fields(acc, cfg)
    used_fields = {c.field for c in (*p.criteria, *(p.section_criteria or ()))}
    if "index" in used_fields:
        used_fields |= set(p.index_weights)
    approx_used = sorted(set(approx) & used_fields)
    if approx_used:
        warnings.warn(
            f"the accidents have no {approx_used} column(s); approximated by accident counts "
            f"({', '.join(f'{c}≈{_CASUALTY_PROXY[c]}' for c in approx_used)}), a lower bound",
            TrafficUnitWarning,
            stacklevel=2,
        )
    report["approximated_fields"] = approx_used  # type: ignore[assignment]
    frames = []
    if "point" in types:
        frames.append(_point_spots(acc, fields, u, p, per))
    if "section" in types:
        frames.append(_section_spots(acc, fields, u, p, per, cfg, corridors))
    frames = [f for f in frames if len(f)]
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame(columns=["type", "epdo", "crashes", "geometry"])
    out = out.sort_values(["epdo", "crashes"], ascending=False, kind="stable", ignore_index=True)
    prefix = np.where(out["type"] == "point", "BP", "BS")
    rank = out.groupby("type").cumcount() + 1 if len(out) else pd.Series(dtype=int)
    out.insert(0, "spot_id", [f"{a}{b:04d}" for a, b in zip(prefix, rank, strict=True)])
    # section-only columns: typed the same whatever the mix of spots (files share a schema)
    for col in ("segment_crashes", "junction_crashes", "carriageways"):
        out[col] = (
            pd.to_numeric(out[col], errors="coerce").astype("Int64")
            if col in out.columns
            else pd.array([pd.NA] * len(out), dtype="Int64")
        )
    corridor = out["corridor"] if "corridor" in out.columns else pd.Series(False, index=out.index)
    out["corridor"] = corridor.astype("boolean").fillna(False).astype(bool)
    out["overlap_crashes"], out["overlap_spot_ids"] = _overlaps(out)
    if len(out):
        out["explanation"] = _explain_spots(acc, out, u)
    else:
        out["explanation"] = pd.Series(dtype=object)
    gdf = gpd.GeoDataFrame(out, geometry="geometry", crs=u.crs)
    gdf.attrs = {
        "profile": {
            "name": p.name,
            "description": p.description,
            "source": p.source,
            "criteria": [str(c) for c in p.criteria],
            "combine": p.combine,
            "point_radius_m": p.point_radius_m,
            "window_m": p.window_m,
            "step_m": p.step_m,
        },
        "period": per.to_json(),
        "period_label": per.label()
        + (" (given)" if period is not None else f" (the latest {p.years:g} years of the data)"),
        "report": {
            k: (int(v) if isinstance(v, int | np.integer) else v) for k, v in report.items()
        },
    }
    return gdf


def _overlaps(spots: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per spot: accidents it shares with spots of the other type, and those spots' ids."""
    n = len(spots)
    counts = np.zeros(n, dtype=np.int64)
    other = np.full(n, "", dtype=object)
    if n == 0 or "event_ids" not in spots.columns:
        return counts, other
    ev = spots["event_ids"].fillna("").astype(str).str.split(";").explode()
    flat = pd.DataFrame(
        {
            "spot": ev.index.to_numpy(),
            "event": ev.to_numpy(dtype=object),
            "type": spots["type"].to_numpy(dtype=object)[ev.index.to_numpy()],
            "id": spots["spot_id"].to_numpy(dtype=object)[ev.index.to_numpy()],
        }
    )
    flat = flat.loc[flat["event"] != ""]
    pair = flat.merge(flat, on="event", suffixes=("", "_o"))
    pair = pair.loc[pair["type"] != pair["type_o"]]
    if len(pair) == 0:
        return counts, other
    counts = np.asarray(
        pair.drop_duplicates(["spot", "event"])
        .groupby("spot")
        .size()
        .reindex(range(n), fill_value=0),
        dtype=np.int64,
    )
    ids = pair.groupby("spot")["id_o"].agg(lambda s: ";".join(sorted(set(s))))
    other = ids.reindex(range(n)).fillna("").to_numpy(dtype=object)
    return counts, other


def _rule(
    p: BlackSpotProfile, per: Period, kind: str, criteria: tuple[Criterion, ...], extent: str
) -> str:
    return (
        f"{p.name} {kind}: {_rule_text(criteria, p.combine)} {extent} over {per.years:g} "
        f"year(s) ({per.label()})"
    )


def _sum_columns(sums: pd.DataFrame, p: BlackSpotProfile) -> pd.DataFrame:
    out = pd.DataFrame(index=sums.index)
    out["crashes"] = sums["crashes"].round().astype(np.int64)
    for s in SEVERITIES:
        out[s] = sums[s].round().astype(np.int64)
    out["KA"] = out["K"] + out["A"]
    for col in ("deaths", "serious_injuries", "minor_injuries"):
        out[col] = sums[col]
    out["epdo"] = sums["epdo"]
    out["index"] = _field_value(sums, "index", p)
    return out


def _point_spots(
    acc: pd.DataFrame, fields: pd.DataFrame, u: gpd.GeoDataFrame, p: BlackSpotProfile, per: Period
) -> pd.DataFrame:
    if not isinstance(acc, gpd.GeoDataFrame) or acc.crs is None or len(acc) == 0:
        if len(acc):
            warnings.warn(
                "joined has no geometry/CRS; point black spots skipped",
                TrafficUnitWarning,
                stacklevel=3,
            )
        return pd.DataFrame()
    geoms = acc.geometry.to_numpy()
    ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    acc = acc.loc[ok]
    fields = fields.loc[ok]
    mcrs = metric_crs(u)
    pts_m = gpd.GeoSeries(shapely.point_on_surface(acc.geometry.to_numpy()), crs=acc.crs).to_crs(
        mcrs
    )
    pts = pts_m.to_numpy()
    n = len(pts)
    if n == 0:
        return pd.DataFrame()
    tree = shapely.STRtree(pts)
    ci, mi = tree.query(pts, predicate="dwithin", distance=p.point_radius_m)
    order = np.lexsort((mi, ci))
    ci, mi = ci[order], mi[order]
    indptr = np.r_[0, np.cumsum(np.bincount(ci, minlength=n))]
    f = fields.to_numpy(dtype=float)
    cols = list(fields.columns)
    sums = np.column_stack(
        [np.bincount(ci, weights=f[mi, k], minlength=n) for k in range(f.shape[1])]
    )
    alive = np.ones(n, dtype=bool)
    chosen: list[tuple[int, np.ndarray]] = []
    epdo_k, crash_k = cols.index("epdo"), cols.index("crashes")
    while True:
        frame = {c: sums[:, k] for k, c in enumerate(cols)}
        q = _evaluate(frame, p, p.criteria) & alive
        if not q.any():
            break
        cand = np.flatnonzero(q)
        best = cand[np.lexsort((cand, -sums[cand, crash_k], -sums[cand, epdo_k]))[0]]
        members = mi[indptr[best] : indptr[best + 1]]
        members = members[alive[members]]
        chosen.append((int(best), members))
        alive[members] = False
        # remove the members from every circle that contains them (pairs are symmetric)
        starts, stops = indptr[members], indptr[members + 1]
        counts = stops - starts
        rows = np.repeat(members, counts)
        idx = np.concatenate([mi[a:b] for a, b in zip(starts, stops, strict=True)])
        for k in range(f.shape[1]):
            np.subtract.at(sums[:, k], idx, f[rows, k])
    if not chosen:
        return pd.DataFrame()
    ids = (
        acc["event_id"].astype(str).to_numpy()
        if "event_id" in acc.columns
        else acc.index.astype(str).to_numpy()
    )
    unit = acc["unit_id"].astype(object).to_numpy()
    member_rows = [m for _, m in chosen]
    spot_sums = pd.DataFrame([f[m].sum(axis=0) for m in member_rows], columns=cols)
    out = _sum_columns(spot_sums, p)
    out.insert(0, "type", "point")
    out.insert(1, "road", [_common_road(acc, m) for m in member_rows])
    out["unit_ids"] = [";".join(sorted({str(x) for x in unit[m]})) for m in member_rows]
    out["length_m"] = 0.0
    out["radius_m"] = p.point_radius_m
    out["start_m"] = np.nan
    out["end_m"] = np.nan
    out["rule"] = _rule(p, per, "point", p.criteria, f"within {p.point_radius_m:g} m")
    out["event_ids"] = [";".join(ids[m]) for m in member_rows]
    centre = gpd.GeoSeries(pts[[b for b, _ in chosen]], crs=mcrs).to_crs(u.crs)
    out["geometry"] = centre.to_numpy()
    return out


def _common_road(acc: pd.DataFrame, rows: np.ndarray) -> Any:
    if "road_name" not in acc.columns:
        return None
    v = acc["road_name"].iloc[rows].dropna().astype(str)
    return v.mode().iloc[0] if len(v) else None


def _select_windows(
    pos: pd.DataFrame,
    fields: pd.DataFrame,
    win: pd.DataFrame,
    chain_len: np.ndarray,
    p: BlackSpotProfile,
    criteria: tuple[Criterion, ...],
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Greedy peak selection in which an accident counts in one chosen window only.

    The best qualifying window (EPDO, then crashes) is taken; its accidents leave every other
    window, which is re-summed and re-tested when it comes up (a lazy greedy: sums only
    shrink, so a window whose re-summed value still beats the next candidate is the best one).
    Windows overlapping a chosen one on the same line are skipped. Returns the chosen window
    indices, their field sums and their accident rows (into ``fields``).
    """
    import heapq

    base = np.r_[0.0, np.cumsum(chain_len + 1.0)[:-1]]
    gpos = base[pos["chain_id"].to_numpy()] + pos["pos_m"].to_numpy()
    order = np.argsort(gpos, kind="stable")
    gpos = gpos[order]
    rows = pos["row"].to_numpy()[order]
    f = fields.to_numpy(dtype=float)
    cols = list(fields.columns)
    sums = _window_sums(pos, fields, win, chain_len).to_numpy(dtype=float, copy=True)
    q = _evaluate(dict(zip(cols, sums.T, strict=True)), p, criteria)
    cand = np.flatnonzero(q)
    wb = base[win["chain_id"].to_numpy()]
    lo = np.searchsorted(gpos, wb + win["start_m"].to_numpy() - 1e-6, side="left")
    hi = np.searchsorted(gpos, wb + win["end_m"].to_numpy() + 1e-6, side="right")
    ei, ci = cols.index("epdo"), cols.index("crashes")
    chain = win["chain_id"].to_numpy()
    a_m, b_m = win["start_m"].to_numpy(), win["end_m"].to_numpy()
    heap = [(-sums[w, ei], -sums[w, ci], int(chain[w]), float(a_m[w]), int(w), 0) for w in cand]
    heapq.heapify(heap)
    used = np.zeros(len(f), dtype=bool)
    n_used = 0
    taken: dict[int, list[tuple[float, float]]] = {}
    chosen: list[int] = []
    chosen_sums: list[np.ndarray] = []
    chosen_rows: list[np.ndarray] = []
    while heap:
        _, _, c, a, w, version = heapq.heappop(heap)
        spans = taken.get(c, [])
        if any(a < y - 1e-6 and x < b_m[w] - 1e-6 for x, y in spans):
            continue
        r = rows[lo[w] : hi[w]]
        r = r[~used[r]]
        if version != n_used:  # accidents were taken since this window was summed
            s = f[r].sum(axis=0)
            if not _evaluate(dict(zip(cols, s[:, None], strict=True)), p, criteria)[0]:
                continue
            if s[ei] < sums[w, ei] - 1e-9 or s[ci] < sums[w, ci] - 1e-9:
                sums[w] = s
                heapq.heappush(heap, (-s[ei], -s[ci], c, a, w, n_used))
                continue
        used[r] = True
        n_used += 1
        taken.setdefault(c, []).append((a, float(b_m[w])))
        chosen.append(w)
        chosen_sums.append(f[r].sum(axis=0))
        chosen_rows.append(r)
    out_sums = np.vstack(chosen_sums) if chosen_sums else np.zeros((0, len(cols)))
    return np.asarray(chosen, dtype=np.int64), out_sums, chosen_rows


def _section_spots(
    acc: pd.DataFrame,
    fields: pd.DataFrame,
    u: gpd.GeoDataFrame,
    p: BlackSpotProfile,
    per: Period,
    cfg: RiskSettings,
    corridors: bool = True,
) -> pd.DataFrame:
    chains = road_corridors(u, settings=cfg) if corridors else road_chains(u, settings=cfg)
    if "corridor" not in chains.columns:
        chains = chains.assign(carriageway=chains["chain_id"], corridor=False)
    table = _chain_table(chains)
    chain_len = table["length_m"].to_numpy(dtype=float)
    window = np.full(len(chain_len), p.window_m)
    if p.window_m_rural is not None and "rural" in u.columns:
        seg = chains.loc[chains["kind"] == "segment"]
        rural = u["rural"].reindex(seg["unit_id"]).fillna(False).astype(bool).to_numpy()
        lw = (seg["end_m"] - seg["start_m"]).to_numpy()
        share = pd.Series(rural * lw).groupby(seg["chain_id"].to_numpy()).sum() / pd.Series(
            lw
        ).groupby(seg["chain_id"].to_numpy()).sum().replace(0, np.nan)
        window = np.where(
            share.reindex(range(len(chain_len))).fillna(0).to_numpy() > 0.5,
            p.window_m_rural,
            window,
        )
    pos = _chain_positions(chains, acc, u, p.include_intersections)
    win = _windows(chain_len, window, p.step_m)
    criteria = p.section_criteria or p.criteria
    chosen, sums, member_rows = _select_windows(pos, fields, win, chain_len, p, criteria)
    if len(chosen) == 0:
        return pd.DataFrame()
    sel = win.iloc[chosen].reset_index(drop=True)
    out = _sum_columns(pd.DataFrame(sums, columns=fields.columns), p)
    out.insert(0, "type", "section")
    road = table["road"].to_numpy(dtype=object)[sel["chain_id"].to_numpy()]
    out.insert(1, "road", np.where(pd.isna(road), "(unnamed)", road))
    out["chain_id"] = sel["chain_id"].to_numpy()
    out["start_m"] = sel["start_m"].to_numpy()
    out["end_m"] = sel["end_m"].to_numpy()
    out["length_m"] = out["end_m"] - out["start_m"]
    out["radius_m"] = np.nan
    is_corr = chains.groupby("chain_id")["corridor"].first()
    out["corridor"] = is_corr.reindex(out["chain_id"]).fillna(False).to_numpy(dtype=bool)
    # the section's own accidents (on its segments) and those of the junctions on it
    flat_rows = np.concatenate(member_rows)
    spot_of = np.repeat(np.arange(len(member_rows)), [len(r) for r in member_rows])
    node_rows = pos.loc[pos["at_node"].to_numpy(), ["row", "chain_id"]]
    on_node = pd.MultiIndex.from_arrays([flat_rows, out["chain_id"].to_numpy()[spot_of]]).isin(
        pd.MultiIndex.from_frame(node_rows)
    )
    out["segment_crashes"] = np.bincount(spot_of[~on_node], minlength=len(out)).astype(np.int64)
    out["junction_crashes"] = np.bincount(spot_of[on_node], minlength=len(out)).astype(np.int64)
    # units inside each section
    members = chains.merge(
        out[["chain_id", "start_m", "end_m"]].reset_index(), on="chain_id", suffixes=("", "_w")
    )
    inside = np.where(
        members["kind"] == "segment",
        (members["end_m"] > members["start_m_w"] + 1e-6)
        & (members["start_m"] < members["end_m_w"] - 1e-6),
        (members["start_m"] >= members["start_m_w"] - 1e-6)
        & (members["start_m"] <= members["end_m_w"] + 1e-6),
    )
    members = members.loc[inside]
    out["unit_ids"] = (
        members.groupby("index")["unit_id"]
        .agg(lambda s: ";".join(dict.fromkeys(s)))
        .reindex(out.index)
    )
    out["carriageways"] = (
        members.loc[members["kind"] == "segment"]
        .groupby("index")["carriageway"]
        .nunique()
        .reindex(out.index)
        .fillna(0)
        .astype(np.int64)
    )
    ids = (
        acc["event_id"].astype(str).to_numpy()
        if "event_id" in acc.columns
        else acc.index.astype(str).to_numpy()
    )
    out["event_ids"] = [";".join(ids[r]) for r in member_rows]
    extent = f"within a {p.window_m:g} m window" + (
        f" ({p.window_m_rural:g} m rural)" if p.window_m_rural and "rural" in u.columns else ""
    )
    out["rule"] = _rule(p, per, "section", criteria, extent) + (
        "; each accident in one section; divided roads as one corridor"
        if corridors
        else "; each accident in one section"
    )
    out["geometry"] = _section_geometries(members, u, out)
    return out.drop(columns="chain_id")


def _section_geometries(members: pd.DataFrame, u: gpd.GeoDataFrame, out: pd.DataFrame) -> list[Any]:
    """The part of each section's segments inside the window, merged into one line."""
    seg = members.loc[members["kind"] == "segment"]
    geoms = u.geometry.reindex(seg["unit_id"]).to_numpy()
    length = (seg["end_m"] - seg["start_m"]).to_numpy()
    a = np.clip(seg["start_m_w"].to_numpy() - seg["start_m"].to_numpy(), 0, None)
    b = np.minimum(seg["end_m_w"].to_numpy(), seg["end_m"].to_numpy()) - seg["start_m"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        fa = np.where(length > 0, a / length, 0.0)
        fb = np.where(length > 0, b / length, 1.0)
    rev = seg["reversed"].to_numpy()
    f0 = np.where(rev, 1 - fb, fa)
    f1 = np.where(rev, 1 - fa, fb)
    pieces = [
        substring(g, x, y, normalized=True) if g is not None else None
        for g, x, y in zip(geoms, f0, f1, strict=True)
    ]
    by_spot: dict[int, list[Any]] = {}
    for i, piece in zip(seg["index"].to_numpy(), pieces, strict=True):
        if piece is not None and not piece.is_empty:
            by_spot.setdefault(int(i), []).append(piece)
    result: list[Any] = []
    for i in range(len(out)):
        parts = by_spot.get(i, [])
        if not parts:
            result.append(None)
            continue
        merged = shapely.line_merge(shapely.multilinestrings(parts)) if len(parts) > 1 else parts[0]
        result.append(merged)
    return result


def _explain_spots(acc: pd.DataFrame, spots: pd.DataFrame, units: pd.DataFrame) -> pd.Series:
    ids = acc["event_id"].astype(str) if "event_id" in acc.columns else acc.index.astype(str)
    per_spot = spots["event_ids"].fillna("").str.split(";").explode()
    per_spot = per_spot[per_spot != ""]
    pos = pd.Index(ids).get_indexer(pd.Index(per_spot.to_numpy()))
    ok = pos >= 0
    rows = acc.iloc[pos[ok]]
    groups = pd.Series(per_spot.index.to_numpy()[ok], index=rows.index)
    desc = describe_events(rows, groups)
    desc = desc.reindex(spots.index)
    text = desc["severity_mix"].fillna("").astype(str)
    text = text + dominant_phrases(desc)
    # attributes of the spot's units that stand out (speed limit, lighting, lanes...)
    notes = _attribute_notes(units.assign(reference_population=units["kind"]))
    per_unit = spots["unit_ids"].fillna("").str.split(";").explode()
    per_unit = per_unit[per_unit != ""]
    found = notes.reindex(pd.Index(per_unit.to_numpy())).to_numpy(dtype=object)
    flat = pd.DataFrame({"spot": per_unit.index.to_numpy(), "note": found}).dropna()
    flat = flat.assign(note=flat["note"].str.split("; ")).explode("note")
    flat = flat.loc[flat["note"].notna() & (flat["note"] != "")]
    # one note per kind ("speed limit # km/h ...", "# legs"): the first unit's
    flat = flat.assign(kind=flat["note"].str.replace(r"\d+(\.\d+)?", "#", regex=True))
    flat = flat.drop_duplicates(["spot", "kind"])
    attrs = flat.groupby("spot")["note"].agg(lambda s: "; ".join(list(s)[:3])).reindex(spots.index)
    text = text + np.where(attrs.notna(), "; " + attrs.fillna(""), "")
    return text.str.strip("; ")


# -- HSM peak searching ---------------------------------------------------------------------------


def peak_search(
    units: gpd.GeoDataFrame,
    risk: pd.DataFrame,
    *,
    window_m: float | None = None,
    max_cv: float | None = None,
    max_window_m: float | None = None,
    chains: pd.DataFrame | None = None,
    corridors: bool = True,
    settings: RiskSettings | None = None,
) -> pd.DataFrame:
    """HSM peak searching: the peak window of every road by EB excess, with a CV test.

    Along each road, windows of ``window_m`` (0.1 mi) move in steps of ``window_m``; a window's
    EB expected crashes, prediction and variance are the unit values (from :func:`score`)
    spread evenly along segments plus those of the intersections inside. A window is *valid*
    when ``CV = sqrt(variance) / expected <= max_cv`` (0.25). If no window of a size is valid,
    the window grows by ``window_m`` (up to ``max_window_m`` or the road's length); the valid
    window with the largest excess is the road's peak. Roads that never pass the test report
    their whole length with ``cv_ok`` False. A divided road is one corridor
    (:func:`road_corridors`) unless ``corridors`` is False.

    Returns
    -------
    pandas.DataFrame
        One row per road, highest excess first: ``chain_id``, ``road``, ``start_m``, ``end_m``,
        ``length_m``, ``expected``, ``predicted``, ``excess``, ``cv``, ``cv_ok``.
    """
    cfg = settings or RiskSettings()
    step = cfg.peak_window_m if window_m is None else float(window_m)
    limit = cfg.peak_max_cv if max_cv is None else float(max_cv)
    need = ["eb_expected", "eb_predicted", "eb_variance"]
    missing = [c for c in need if c not in risk.columns]
    if missing:
        raise ValidationError(f"risk lacks {missing}; compute it with tu.score first")
    u = _units_frame(units)
    ch = chains if chains is not None else road_chains(u, settings=cfg)
    if corridors and "corridor" not in ch.columns:
        ch = road_corridors(u, chains=ch, settings=cfg)
    table = _chain_table(ch)
    chain_len = table["length_m"].to_numpy(dtype=float)
    n_chain = len(chain_len)
    base = np.r_[0.0, np.cumsum(chain_len + 1.0)[:-1]]
    vals = risk[need].reindex(ch["unit_id"]).fillna(0.0).to_numpy(dtype=float)
    is_seg = (ch["kind"] == "segment").to_numpy()
    cb = base[ch["chain_id"].to_numpy()]
    # segments: values spread evenly along each segment; the cumulative sum along the global
    # coordinate is piecewise linear with a break at every segment end (segments may overlap:
    # the two carriageways of a corridor)
    s_start = cb[is_seg] + ch["start_m"].to_numpy()[is_seg]
    s_end = cb[is_seg] + ch["end_m"].to_numpy()[is_seg]
    sv = vals[is_seg]
    span = s_end - s_start
    spread = span > 1e-9
    dens = sv[spread] / span[spread][:, None]
    xp = np.r_[s_start[spread], s_end[spread]]
    order = np.argsort(xp, kind="stable")
    xp = xp[order]
    slope = np.cumsum(np.vstack([dens, -dens])[order], axis=0)
    if len(xp):
        fp_all = np.vstack([np.zeros((1, 3)), np.cumsum(slope[:-1] * np.diff(xp)[:, None], axis=0)])
    else:
        fp_all = np.zeros((0, 3))
    # point masses: intersections (and zero-length segments)
    p_pos = np.r_[cb[~is_seg] + ch["start_m"].to_numpy()[~is_seg], s_start[~spread]]
    p_val = np.vstack([vals[~is_seg], sv[~spread]])
    po = np.argsort(p_pos, kind="stable")
    p_pos = p_pos[po]
    p_cs = np.vstack([np.zeros((1, 3)), np.cumsum(p_val[po], axis=0)])

    def window_values(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ga, gb = base[c] + a, base[c] + b
        out = np.empty((len(c), 3))
        for k in range(3):
            fp = fp_all[:, k]
            out[:, k] = np.interp(gb, xp, fp) - np.interp(ga, xp, fp) if len(xp) else 0.0
        lo = np.searchsorted(p_pos, ga - 1e-6, side="left")
        hi = np.searchsorted(p_pos, gb + 1e-6, side="right")
        return out + (p_cs[hi] - p_cs[lo])

    done = np.zeros(n_chain, dtype=bool)
    res = np.zeros((n_chain, 6))  # start, end, expected, predicted, variance, cv_ok
    top_len = chain_len.max() if max_window_m is None else min(max_window_m, chain_len.max())
    size = step
    while not done.all():
        todo = np.flatnonzero(~done)
        w = np.minimum(np.full(len(todo), size), chain_len[todo])
        sub = _windows(chain_len[todo], w, step)
        c = todo[sub["chain_id"].to_numpy()]
        a, b = sub["start_m"].to_numpy(), sub["end_m"].to_numpy()
        v = window_values(c, a, b)
        expected, predicted, var = v[:, 0], v[:, 1], v[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            cv = np.where(expected > 0, np.sqrt(np.maximum(var, 0)) / expected, np.inf)
        valid = cv <= limit
        excess = expected - predicted
        last = size >= top_len - 1e-9
        whole = (w >= chain_len[todo] - 1e-9)[sub["chain_id"].to_numpy()]
        # per chain: best valid window; or, at the last size / whole-road window, the whole road
        df = pd.DataFrame(
            {
                "c": c,
                "a": a,
                "b": b,
                "e": expected,
                "p": predicted,
                "v": var,
                "x": np.where(valid, excess, -np.inf),
                "ok": valid,
                "whole": whole,
            }
        )
        best = (
            df.loc[df["ok"]]
            .sort_values(["c", "x", "a"], ascending=[True, False, True])
            .drop_duplicates("c")
        )
        res[best["c"].to_numpy()] = best[["a", "b", "e", "p", "v"]].assign(ok=1.0).to_numpy()
        done[best["c"].to_numpy()] = True
        give_up = df.loc[~df["c"].isin(best["c"]) & (df["whole"] | last)].drop_duplicates("c")
        if last:
            # whole road for every remaining chain
            rem = np.flatnonzero(~done)
            v_all = window_values(rem, np.zeros(len(rem)), chain_len[rem])
            res[rem, 0] = 0.0
            res[rem, 1] = chain_len[rem]
            res[rem, 2:5] = v_all
            res[rem, 5] = 0.0
            done[rem] = True
        else:
            gu = give_up.loc[give_up["whole"]]
            res[gu["c"].to_numpy()] = gu[["a", "b", "e", "p", "v"]].assign(ok=0.0).to_numpy()
            done[gu["c"].to_numpy()] = True
        size += step
    with np.errstate(divide="ignore", invalid="ignore"):
        cv_all = np.where(res[:, 2] > 0, np.sqrt(np.maximum(res[:, 4], 0)) / res[:, 2], np.inf)
    out = pd.DataFrame(
        {
            "chain_id": np.arange(n_chain),
            "road": table["road"].to_numpy(),
            "start_m": res[:, 0],
            "end_m": res[:, 1],
            "length_m": res[:, 1] - res[:, 0],
            "expected": res[:, 2],
            "predicted": res[:, 3],
            "excess": res[:, 2] - res[:, 3],
            "cv": cv_all,
            "cv_ok": res[:, 5] > 0,
        }
    )
    return out.sort_values("excess", ascending=False, kind="stable", ignore_index=True)
