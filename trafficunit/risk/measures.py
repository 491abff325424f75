"""Measures, percentiles and the four-colour levels; open hazards by unit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..settings import RISK_LEVELS, RiskSettings
from .inputs import _CHINESE_GRADES, _PER_KM, MEASURES, SEVERITIES


def _positions(unit_ids: pd.Series, index: pd.Index) -> np.ndarray:
    """Position of each unit id in the (unique) ``index``, -1 where absent or missing.

    ``index.get_indexer`` with Arrow's hash lookup: several times faster on millions of rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(unit_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    values = pa.array(unit_ids.astype("string").array)
    keys = pa.array(pd.Series(index, dtype="string").array)
    # the system allocator: the hash table and positions are freed at once, not kept by
    # Arrow's allocator into the next step's peak
    pool = pa.system_memory_pool()
    pos = pc.fill_null(pc.index_in(values, value_set=keys, memory_pool=pool), -1)
    return np.asarray(pos.to_numpy(zero_copy_only=False), dtype=np.int64)


def _counts(
    acc: pd.DataFrame, index: pd.Index, cfg: RiskSettings, pos: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-unit accident counts by severity, casualties and EPDO (``pos``: see _positions)."""
    if pos is None:
        pos = _positions(acc["unit_id"], index)
    ok = pos >= 0
    # compared as Arrow strings: no Python string per accident
    sev = acc["severity"].astype("string").fillna(cfg.unknown_severity)
    n = len(index)
    out: dict[str, np.ndarray] = {"crashes": np.bincount(pos[ok], minlength=n).astype(np.int64)}
    for letter in SEVERITIES:
        m = ok & (sev == letter).to_numpy(dtype=bool)
        out[letter] = np.bincount(pos[m], minlength=n).astype(np.int64)
    for col in _CASUALTIES:
        if col in acc.columns:
            v = pd.to_numeric(acc[col], errors="coerce").fillna(0).to_numpy(dtype=float)
            out[col] = np.bincount(pos[ok], weights=v[ok], minlength=n)
    return _counts_frame(out, index, cfg)


#: The casualty columns :func:`_counts` sums per unit (where the accidents have them).
_CASUALTIES = ("deaths", "serious_injuries", "minor_injuries")


def _counts_frame(
    out: Mapping[str, np.ndarray], index: pd.Index, cfg: RiskSettings
) -> pd.DataFrame:
    """The counts by unit (``crashes``, the severities, the casualties) as :func:`_counts`'
    frame, with the EPDO of the severities' counts."""
    w = np.array([cfg.epdo_weights.get(s, np.nan) for s in SEVERITIES])
    if not np.isfinite(w).all():
        raise ValidationError(f"epdo_weights must give a weight for each of {SEVERITIES}")
    epdo = np.asarray(sum(out[s] * cfg.epdo_weights[s] for s in SEVERITIES), dtype=float)
    cols = {"crashes": out["crashes"], **{s: out[s] for s in SEVERITIES}, "epdo": epdo}
    cols |= {c: out[c] for c in _CASUALTIES if c in out}
    # the arrays as they are, a block each: not copied into one 2-D block (a tenth of a
    # second at a million units, most of it faulting in new pages)
    return pd.DataFrame(cols, index=index, copy=False)


def _midrank_percentile(values: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mid-rank percentile (0-100) of each value within its group; NaN stays NaN.

    ``100 * (weight strictly below + half the weight of ties) / group weight``.
    """
    out = np.full(len(values), np.nan)
    valid = np.isfinite(values)
    if not valid.any():
        return out
    df = pd.DataFrame({"g": groups[valid], "v": values[valid], "w": weights[valid]})
    by = df.groupby(["g", "v"], sort=True)
    tie = by["w"].sum()
    cum = tie.groupby(level=0).cumsum()
    total = tie.groupby(level=0).transform("sum")
    pct = (100.0 * (cum - tie + 0.5 * tie) / total).to_numpy(dtype=float)
    # each row's (group, value) by its position among the sorted ties: no merge (a copy of
    # the rows and a hash join); rows without a group stay NaN
    at = by.ngroup().to_numpy(dtype=float)
    has = np.isfinite(at) & (at >= 0)
    got = np.full(len(at), np.nan)
    got[has] = pct[at[has].astype(np.int64)]
    out[valid] = got
    return out


def _level_measure(risk: pd.DataFrame, cfg: RiskSettings) -> tuple[np.ndarray, dict[str, str]]:
    """The value the level is banded on, per unit, and which measure each kind used."""
    used = {}
    values = np.full(len(risk), np.nan)
    for kind in ("segment", "intersection"):
        measure = cfg.measure
        if kind == "intersection":
            if cfg.intersection_measure is not None:
                measure = cfg.intersection_measure
            elif measure in _PER_KM:
                measure = "epdo"
        if measure not in risk.columns:
            raise ValidationError(
                f"measure {measure!r} is not a risk column; use one of {list(MEASURES)}"
            )
        sel = (risk["kind"] == kind).to_numpy()
        if sel.any():
            v = pd.to_numeric(risk.loc[sel, measure], errors="coerce").to_numpy(dtype=float)
            if np.isnan(v).all() and not (measure == "rate_mvkm" and kind == "intersection"):
                hint = " (it needs an 'aadt' unit column)" if measure == "rate_mvkm" else ""
                raise ValidationError(f"measure {measure!r} is NaN for every {kind}{hint}")
            values[sel] = v
            used[kind] = measure
    return values, used


def _levels(
    risk: pd.DataFrame, cfg: RiskSettings
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Crash level rank (1..4) and percentile per unit, the rule, and extra columns."""
    values, used = _level_measure(risk, cfg)
    # the populations as numbers (NaN where none): no Python string per unit; the ranks
    # within each population do not depend on how the populations are named or ordered
    codes, _ = pd.factorize(risk["reference_population"])
    groups = np.where(codes >= 0, codes, np.nan)
    seg = (risk["kind"] == "segment").to_numpy()
    crashes = risk["crashes"].to_numpy()
    extra: dict[str, np.ndarray] = {}
    scheme = cfg.scheme
    ones = np.ones(len(risk))
    if cfg.rank_among not in ("all", "with_crashes"):
        raise ValidationError(f"rank_among must be 'all' or 'with_crashes', got {cfg.rank_among!r}")
    ranked = values
    if cfg.rank_among == "with_crashes":
        ranked = np.where(crashes >= cfg.min_crashes, values, np.nan)
    pct = _midrank_percentile(ranked, groups, ones)
    bands: list[dict[str, Any]]
    if scheme == "percentile":
        e = _check_edges(cfg.percentile_bands, "percentile_bands")
        rank = 1 + (pct[:, None] >= np.array(e)[None, :]).sum(axis=1)
        bands = _bands_from_edges(e, "{m} percentile", pct=False)
    elif scheme == "fixed":
        if cfg.fixed_thresholds is None:
            raise ValidationError(
                "scheme 'fixed' needs fixed_thresholds=(yellow, orange, red) lower bounds on "
                f"the measure {cfg.measure!r}"
            )
        e = _check_edges(cfg.fixed_thresholds, "fixed_thresholds")
        with np.errstate(invalid="ignore"):
            rank = 1 + (values[:, None] >= np.array(e)[None, :]).sum(axis=1)
        bands = _bands_from_edges(e, "{m}", pct=False)
    elif scheme == "length_share":
        shares = np.asarray(cfg.length_shares, dtype=float)
        if len(shares) != len(cfg.length_share_levels) or abs(shares.sum() - 100.0) > 1e-6:
            raise ValidationError(
                "length_shares must sum to 100 and have one level per share, got "
                f"{cfg.length_shares} / {cfg.length_share_levels}"
            )
        bad = set(cfg.length_share_levels) - set(RISK_LEVELS)
        if bad:
            raise ValidationError(f"unknown levels {sorted(bad)} in length_share_levels")
        weight = np.where(seg, risk["length_m"].to_numpy(dtype=float), 1.0)
        pct = _midrank_percentile(ranked, groups, np.nan_to_num(weight, nan=0.0))
        edges = np.cumsum(shares)[:-1]
        cls = 1 + (pct[:, None] >= edges[None, :]).sum(axis=1)
        lut = np.array([RISK_LEVELS.index(lv) + 1 for lv in cfg.length_share_levels])
        rank = lut[cls - 1]
        extra["risk_class"] = np.where(np.isfinite(pct), cls, 0)
        bands = []
        lo = 0.0
        for i, (share, level) in enumerate(zip(shares, cfg.length_share_levels, strict=True)):
            bands.append(
                {
                    "level": level,
                    "class": i + 1,
                    "share_percent": float(share),
                    "label": f"class {i + 1}: {lo:g}-{lo + share:g} % of length, by {{m}}",
                }
            )
            lo += share
        bands = bands[::-1]
    elif scheme == "matrix":
        e = _check_edges(cfg.matrix_bands, "matrix_bands")
        freq = risk["crashes_per_year"].to_numpy(dtype=float)
        if cfg.rank_among == "with_crashes":
            freq = np.where(crashes >= cfg.min_crashes, freq, np.nan)
        fpct = _midrank_percentile(freq, groups, ones)
        likelihood = 1 + (fpct[:, None] >= np.array([20.0, 40.0, 60.0, 80.0])).sum(axis=1)
        sev = np.ones(len(risk), dtype=int)
        for score_, letter in zip((5, 4, 3, 2), ("K", "A", "B", "C"), strict=True):
            sev = np.where((sev == 1) & (risk[letter].to_numpy() > 0), score_, sev)
        product = likelihood * sev
        rank = 1 + (product[:, None] >= np.array(e)[None, :]).sum(axis=1)
        extra["likelihood"] = likelihood
        extra["severity_class"] = sev
        pct = fpct
        bands = _bands_from_edges(e, "likelihood x severity", pct=False)
    else:
        raise ValidationError(
            f"unknown scheme {scheme!r}; use 'percentile', 'fixed', 'length_share' or 'matrix'"
        )
    rank = np.asarray(rank, dtype=int)
    rank[~np.isfinite(values if scheme == "fixed" else pct)] = 1
    rank[crashes < cfg.min_crashes] = 1
    if cfg.positive_only and scheme in ("percentile", "length_share"):
        with np.errstate(invalid="ignore"):
            rank[~(values > 0)] = 1
    m = used.get("segment", cfg.measure)
    for b in bands:
        b["label"] = b["label"].replace("{m}", m)
        b["colour"] = cfg.colours[b["level"]]
    rule: dict[str, Any] = {
        "scheme": scheme,
        "measure": used,
        "bands": bands,
        "population": list(cfg.population),
        "min_population": cfg.min_population,
        "rank_among": cfg.rank_among,
        "guards": {
            "min_crashes": cfg.min_crashes,
            "positive_only": bool(cfg.positive_only and scheme in ("percentile", "length_share")),
            "text": f"fewer than {cfg.min_crashes} accident(s)"
            + (" or a measure <= 0" if cfg.positive_only else "")
            + " stays blue on the crash score",
        },
    }
    return rank, pct, rule, extra


def _check_edges(edges: Sequence[float], name: str) -> list[float]:
    e = [float(x) for x in edges]
    if len(e) != 3 or not (e[0] <= e[1] <= e[2]):
        raise ValidationError(
            f"{name} must be three increasing lower bounds (yellow, orange, red), got {edges}"
        )
    return e


def _bands_from_edges(e: list[float], what: str, *, pct: bool) -> list[dict[str, Any]]:
    unit = " %" if pct else ""
    return [
        {"level": "red", "min": e[2], "max": None, "label": f"{what} >= {e[2]:g}{unit}"},
        {"level": "orange", "min": e[1], "max": e[2], "label": f"{what} {e[1]:g}-{e[2]:g}{unit}"},
        {"level": "yellow", "min": e[0], "max": e[1], "label": f"{what} {e[0]:g}-{e[1]:g}{unit}"},
        {"level": "blue", "min": None, "max": e[0], "label": f"{what} < {e[0]:g}{unit}"},
    ]


def _hazard_counts(
    hazards: pd.DataFrame | None, index: pd.Index, cfg: RiskSettings
) -> pd.DataFrame:
    n = len(index)
    out = pd.DataFrame(
        {
            "open_hazards": np.zeros(n, dtype=np.int64),
            "open_major_hazards": np.zeros(n, dtype=np.int64),
            "hazard_raise": np.zeros(n, dtype=np.int64),
        },
        index=index,
    )
    if hazards is None or len(hazards) == 0:
        return out
    hz = hazards.loc[hazards["unit_id"].notna()]
    if "status" in hz.columns:
        status = hz["status"].astype("string").str.strip().str.lower()
        closed = {s.lower() for s in cfg.closed_hazard_status}
        hz = hz.loc[~status.isin(closed).fillna(False).to_numpy(dtype=bool)]
    grade = (
        hz["grade"].astype("string").str.strip().replace(_CHINESE_GRADES).str.lower()
        if "grade" in hz.columns
        else pd.Series("general", index=hz.index, dtype="string")
    )
    ids = hz["event_id"] if "event_id" in hz.columns else pd.Series(hz.index, index=hz.index)
    pairs = pd.DataFrame({"unit_id": hz["unit_id"].astype(object), "id": ids, "grade": grade})
    pairs = pairs.drop_duplicates(["unit_id", "id"])
    default = cfg.hazard_raise.get("general", 0)
    pairs["raise"] = pairs["grade"].map(lambda g: cfg.hazard_raise.get(g, default)).astype(int)
    pos = index.get_indexer(pd.Index(pairs["unit_id"]))
    ok = pos >= 0
    major = ok & (pairs["grade"] == "major").fillna(False).to_numpy(dtype=bool)
    out["open_hazards"] = np.bincount(pos[ok], minlength=n)
    out["open_major_hazards"] = np.bincount(pos[major], minlength=n)
    rs = np.zeros(n, dtype=np.int64)
    np.maximum.at(rs, pos[ok], pairs["raise"].to_numpy()[ok])
    out["hazard_raise"] = rs
    return out


def _jsonable(obj: Any) -> Any:
    """Plain Python types only (numpy scalars cleaned, NaN -> None), so attrs survive Parquet."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    return str(obj)
