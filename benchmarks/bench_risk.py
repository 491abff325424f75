"""Benchmark: scoring and sliding windows on >= 100,000 units, beside naive pandas peers.

Run on demand: ``.venv/bin/python benchmarks/bench_risk.py [--grid 224] [--crashes 300000]``.

A generated grid city (``grid`` x ``grid`` junctions 100 m apart, streets named by row and
column) gives ~1.5 grid^2 units (224 -> ~150,000: ~100,000 segments, ~50,000 intersections).
Accidents are drawn at random on the units. Measured in the same run:

- ``tu.score`` (counts, EPDO, rates, negative-binomial SPF per population, EB, levels) against
  a naive pandas peer doing only counts + EPDO + percentile bands with ``groupby().apply``;
- ``tu.blackspots.sliding_windows`` (road chains + one vectorised searchsorted) against the
  textbook pandas approach: 1 m bins per road and ``groupby().rolling(window).sum()``; the two
  must give the same counts;
- Getis-Ord Gi* (``tu.risk.hotspots``, PySAL esda) for reference;
- ``tu.find_black_spots(types=["point"])`` (greedy 50 m circles, a lazy heap) with the accidents
  placed on their units; ``--rescan`` also times the previous greedy, which rescanned every
  circle per point chosen (O(n) per point: 100k accidents ~5 s, 300k ~150 s). ``--spots-only``
  runs this part alone; it prints a digest of the spots (equal digests: identical results).

Times are the best of 3 runs (the naive scorer, over a minute, runs once).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import time
import warnings
from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

import trafficunit as tu
from trafficunit import blackspots as bs
from trafficunit import risk as rk

EPDO = {"K": 542.0, "A": 29.0, "B": 11.0, "C": 6.0, "O": 1.0}


def _time(fn: Callable[[], Any], repeat: int = 1) -> tuple[Any, float]:
    """Result and the best wall time of ``repeat`` runs (the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def grid_units(g: int, block: float = 100.0) -> gpd.GeoDataFrame:
    """Units of a g x g grid: intersections at the junctions, one segment per block side."""
    r, c = np.divmod(np.arange(g * g), g)
    iid = np.char.add("I", np.char.zfill(np.arange(g * g).astype(str), 7)).astype(object)

    def node(rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
        return np.asarray(iid[rr * g + cc])

    # horizontal segments (r, c) -> (r, c+1), vertical (r, c) -> (r+1, c)
    hr, hc = np.divmod(np.arange(g * (g - 1)), g - 1)
    vr, vc = np.divmod(np.arange((g - 1) * g), g)
    x0 = np.r_[hc, vc] * block
    y0 = np.r_[hr, vr] * block
    x1 = np.r_[hc + 1, vc] * block
    y1 = np.r_[hr, vr + 1] * block
    n_seg = len(x0)
    coords = np.stack([np.c_[x0, y0], np.c_[x1, y1]], axis=1)
    lines = shapely.linestrings(coords)
    sid = np.char.add("S", np.char.zfill(np.arange(n_seg).astype(str), 7)).astype(object)
    f_node = np.r_[node(hr, hc), node(vr, vc)]
    t_node = np.r_[node(hr, hc + 1), node(vr + 1, vc)]
    name = np.r_[np.char.add("H", hr.astype(str)), np.char.add("V", vc.astype(str))].astype(object)
    major = np.r_[hr % 10 == 0, vc % 10 == 0]
    seg = pd.DataFrame(
        {
            "unit_id": sid,
            "kind": "segment",
            "length_m": block,
            "road_class": np.where(major, "primary", "residential"),
            "name": name,
            "direction": "both",
            "from_unit": f_node,
            "to_unit": t_node,
            "degree": 0,
        }
    )
    ends = pd.DataFrame({"i": np.r_[f_node, t_node], "s": np.r_[sid, sid]})
    seg_nb = ends.groupby("i")["s"].agg(";".join)
    inter = pd.DataFrame(
        {
            "unit_id": iid,
            "kind": "intersection",
            "length_m": 0.0,
            "road_class": np.where((r % 10 == 0) | (c % 10 == 0), "primary", "residential"),
            "name": np.char.add(np.char.add("H", r.astype(str)), np.char.add(";V", c.astype(str))),
            "direction": None,
            "from_unit": None,
            "to_unit": None,
            "degree": ends.groupby("i").size().reindex(iid).to_numpy(),
        }
    )
    seg["neighbours"] = pd.Series(f_node) + ";" + pd.Series(t_node)
    inter["neighbours"] = seg_nb.reindex(iid).to_numpy()
    df = pd.concat([seg, inter], ignore_index=True)
    geoms = np.r_[lines, shapely.points(c * block, r * block)]
    return gpd.GeoDataFrame(df, geometry=geoms, crs="EPSG:32633").set_index("unit_id")


def random_crashes(units: gpd.GeoDataFrame, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # accidents concentrate: a gamma-distributed risk per unit, primary roads 3x
    w = rng.gamma(0.5, 1.0, len(units)) * np.where(units["road_class"] == "primary", 3.0, 1.0)
    pick = rng.choice(len(units), size=n, p=w / w.sum())
    return pd.DataFrame(
        {
            "event_id": np.char.add("e", np.arange(n).astype(str)),
            "kind": "accident",
            "unit_id": units.index.to_numpy()[pick],
            # whole metres, so the naive 1 m bins see exactly the same positions
            "measure_m": np.floor(rng.uniform(0, 1, n) * units["length_m"].to_numpy()[pick]),
            "severity": rng.choice(list("KABCO"), size=n, p=[0.005, 0.03, 0.12, 0.15, 0.695]),
            "year": rng.integers(2016, 2023, n),
        }
    )


def naive_score(units: pd.DataFrame, joined: pd.DataFrame) -> pd.DataFrame:
    """What a pandas user writes first: apply per unit, rank per population with apply."""
    acc = joined.loc[joined["unit_id"].notna()]
    per_unit = (
        acc[["unit_id", "severity"]]
        .groupby("unit_id")["severity"]
        .apply(lambda s: pd.Series({"crashes": len(s), "epdo": s.map(EPDO).sum()}))
        .unstack()
    )
    out = (
        units[["kind", "road_class", "length_m"]].join(per_unit).fillna({"crashes": 0, "epdo": 0.0})
    )
    out["pop"] = out["kind"] + ":" + out["road_class"]
    out["pct"] = out.groupby("pop")["epdo"].apply(lambda s: s.rank(pct=True) * 100).droplevel(0)
    out["level"] = pd.cut(
        out["pct"], [-1, 65, 85, 95, 101], labels=["blue", "yellow", "orange", "red"], right=False
    )
    return out


def idiomatic_score(units: pd.DataFrame, joined: pd.DataFrame) -> pd.DataFrame:
    """A careful pandas user: crosstab of severities, vectorised EPDO, groupby().rank()."""
    acc = joined.loc[joined["unit_id"].notna()]
    counts = pd.crosstab(acc["unit_id"], acc["severity"]).reindex(units.index, fill_value=0)
    out = units[["kind", "road_class"]].copy()
    out["crashes"] = counts.sum(axis=1)
    out["epdo"] = sum(counts.get(k, 0) * w for k, w in EPDO.items())
    pop = out["kind"] + ":" + out["road_class"]
    out["pct"] = out.groupby(pop)["epdo"].rank(pct=True) * 100
    out["level"] = pd.cut(
        out["pct"], [-1, 65, 85, 95, 101], labels=["blue", "yellow", "orange", "red"], right=False
    )
    return out


def naive_windows(
    chains: pd.DataFrame, pos: pd.DataFrame, window: float, step: float
) -> pd.DataFrame:
    """1 m bins per road, groupby().rolling(window).sum(), every ``step``-th window."""
    table = chains.groupby("chain_id")["chain_length_m"].first()
    lengths = np.ceil(table.to_numpy()).astype(int) + 1
    chain = np.repeat(table.index.to_numpy(), lengths)
    metre = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    bins = pd.DataFrame({"chain_id": chain, "m": metre, "crashes": 0.0, "epdo": 0.0})
    idx = np.repeat(np.cumsum(lengths) - lengths, 1)[pos["chain_id"].to_numpy()] + np.floor(
        pos["pos_m"].to_numpy()
    ).astype(int)
    np.add.at(bins["crashes"].to_numpy(), idx, 1.0)
    np.add.at(bins["epdo"].to_numpy(), idx, pos["epdo"].to_numpy())
    rolled = (
        bins.groupby("chain_id")[["crashes", "epdo"]]
        .rolling(int(window) + 1, min_periods=1)  # bins end-window .. end: [start, end]
        .sum()
        .reset_index(level=0)
    )
    rolled["end_m"] = bins["m"].to_numpy()
    out = rolled.loc[(rolled["end_m"] >= window) & ((rolled["end_m"] - window) % step == 0)]
    return out.assign(start_m=out["end_m"] - window)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=224, help="junctions per side (224: ~150k units)")
    ap.add_argument("--crashes", type=int, default=300_000)
    ap.add_argument("--moran", action="store_true", help="also time local Moran (slow)")
    ap.add_argument("--spots-only", action="store_true", help="only time point black spots")
    ap.add_argument("--rescan", action="store_true", help="also time the previous greedy")
    args = ap.parse_args()
    units, t_units = _time(lambda: grid_units(args.grid))
    joined = random_crashes(units, args.crashes)
    if args.spots_only:
        point_spots(units, joined, args.rescan)
        return
    n_seg = int((units["kind"] == "segment").sum())
    print(
        f"grid {args.grid} x {args.grid}: {len(units):,} units ({n_seg:,} segments, "
        f"{len(units) - n_seg:,} intersections), {len(joined):,} accidents; "
        f"generated in {t_units:.1f} s"
    )
    period = ("2016-01-01", "2022-12-31")
    # import heavy dependencies first: their one-off import time is not scoring time
    _, t_import = _time(lambda: (__import__("statsmodels.api"), __import__("esda")))
    print(f"(imports of statsmodels + esda/libpysal, excluded below: {t_import:.1f} s)")

    # -- scoring -------------------------------------------------------------------------------
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        risk, t_score = _time(lambda: tu.score(units, joined, period=period), repeat=3)
        naive, t_naive = _time(lambda: naive_score(units, joined))
        tidy, t_tidy = _time(lambda: idiomatic_score(units, joined), repeat=3)
    assert np.allclose(naive["epdo"].to_numpy(), risk["epdo"].to_numpy())
    assert np.allclose(tidy["epdo"].to_numpy(), risk["epdo"].to_numpy())
    print("\n== scoring")
    print(
        f"tu.score (counts, EPDO, rates, NB SPF x {len(risk.attrs['spf'])} populations, EB, "
        f"levels): {t_score:.2f} s ({len(units) / t_score:,.0f} units/s)"
    )
    print(f"naive pandas groupby.apply (counts + EPDO + percentile bands only): {t_naive:.2f} s")
    print(f"ratio naive / tu.score: {t_naive / t_score:.1f}x (tu.score also fits SPFs and EB)")
    print(
        f"idiomatic pandas crosstab + groupby.rank (same subset): {t_tidy:.2f} s; "
        f"ratio tu.score / idiomatic: {t_score / t_tidy:.1f}x (the price of SPFs, EB, guards)"
    )
    print("levels:", risk["level"].value_counts().to_dict())

    # -- sliding windows -----------------------------------------------------------------------
    window, step = 500.0, 100.0
    chains, t_chain = _time(lambda: bs.road_chains(units), repeat=3)
    wins, t_win = _time(
        lambda: bs.sliding_windows(units, joined, window_m=window, step_m=step, chains=chains),
        repeat=3,
    )
    acc, _, _ = rk.accidents(joined)
    pos = bs._chain_positions(chains, acc, units, True)
    pos["epdo"] = acc["severity"].map(EPDO).to_numpy()[pos["row"].to_numpy()]
    ref, t_ref = _time(lambda: naive_windows(chains, pos, window, step), repeat=3)
    print("\n== sliding windows (500 m, 100 m step)")
    print(
        f"road_chains: {chains['chain_id'].nunique():,} roads in {t_chain:.2f} s; "
        f"sliding_windows: {len(wins):,} windows in {t_win:.2f} s"
    )
    print(f"naive pandas 1 m bins + groupby().rolling(): {len(ref):,} windows in {t_ref:.2f} s")
    print(f"ratio naive / trafficunit (windows only): {t_ref / t_win:.1f}x")
    both = wins.merge(ref, on=["chain_id", "start_m"], suffixes=("", "_naive"))
    same = np.allclose(both["crashes"], both["crashes_naive"]) and np.allclose(
        both["epdo"], both["epdo_naive"]
    )
    print(f"check: {len(both):,} windows compared, identical counts and EPDO: {same}")

    # -- hotspots ------------------------------------------------------------------------------
    hot, t_hot = _time(lambda: rk.hotspots(risk, permutations=0), repeat=2)
    print("\n== Getis-Ord Gi* (esda on a libpysal Graph, analytic z)")
    print(f"{t_hot:.2f} s; hot units {int((hot['hotspot'] == 'hot').sum()):,}")
    if args.moran:
        hm, t_m = _time(lambda: rk.hotspots(risk, permutations=99))
        print(f"Gi* + local Moran with 99 permutations: {t_m:.2f} s")
    point_spots(units, joined, args.rescan)


def point_spots(units: gpd.GeoDataFrame, joined: pd.DataFrame, rescan: bool) -> None:
    """Time point black spots (lazy heap; the previous rescan with ``rescan``), same result."""
    from trafficunit.blackspots import spots as sp

    geo = units.geometry.to_numpy()[units.index.get_indexer(joined["unit_id"])]
    pts = geo.copy()
    line = shapely.get_type_id(geo) == 1
    pts[line] = shapely.line_interpolate_point(geo[line], joined["measure_m"].to_numpy()[line])
    acc = gpd.GeoDataFrame(joined, geometry=pts, crs=units.crs)
    period = ("2016-01-01", "2022-12-31")

    def run() -> gpd.GeoDataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tu.find_black_spots(units, acc, types=["point"], period=period)

    print(f"\n== point black spots ({len(acc):,} accidents, default profile, 50 m circles)")
    spots, t_heap = _time(run)
    print(f"find_black_spots (lazy heap): {len(spots):,} points in {t_heap:.2f} s")
    print(f"digest of spots, ranks, members, centres: {spots_digest(spots)}")
    if rescan:
        lazy = sp._greedy_circles
        sp._greedy_circles = functools.partial(lazy, rescan=True)  # type: ignore[assignment]
        try:
            ref, t_ref = _time(run)
        finally:
            sp._greedy_circles = lazy
        same = ref.drop(columns="geometry").equals(spots.drop(columns="geometry")) and bool(
            ref.geometry.geom_equals_exact(spots.geometry, 0).all()
        )
        print(f"previous greedy (rescan per point): {t_ref:.2f} s; ratio {t_ref / t_heap:.1f}x")
        print(f"check: identical spots, ranks, members: {same}")


def spots_digest(spots: gpd.GeoDataFrame) -> str:
    """SHA-256 of every column (floats by repr) and the centres' WKB: equal iff the same spots."""
    h = hashlib.sha256(spots.drop(columns="geometry").to_csv(float_format=repr).encode())
    for wkb in shapely.to_wkb(spots.geometry.to_numpy()):
        h.update(wkb)
    return h.hexdigest()[:16]


if __name__ == "__main__":
    main()
