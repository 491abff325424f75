"""Live risk: a scored units frame kept current as accidents arrive and hazards change.

:class:`LiveRisk` holds the per-unit measures of a batch build (:func:`trafficunit.score`) in
numpy arrays and updates only what a write touches:

- an accident adds to its unit's counts (KABCO) and EPDO; the empirical-Bayes estimate is
  recomputed with the build's fitted safety performance function held fixed (its prediction
  ``eb_predicted`` and weight ``eb_weight`` per unit, over the build's ``years``) until the
  next build;
- the crash level is recomputed for the reference populations the write touched only, with the
  same banding code as :func:`trafficunit.score` (percentiles are per population, so the rest
  of the city is unchanged);
- open hazards raise the level by their grade (the rule's ``hazard_raise``, capped at red).

Every level change is returned as a :class:`LevelChange` (unit, from, to, reason) so a server
can record a level history and fire "turned red" warnings.

The batch build and the live state agree: scoring the same accidents (inside the build's
period) and the same open hazards with the build's SPFs gives the same levels. Accidents after
the build period's end are counted too (the live window is open-ended) with per-year measures
still over the build's ``years``; the next build re-fits over its own period. Accidents before
the period's start are not counted, as in the batch.

Units without the scoring columns (hand-made levels, no ``rule``) keep their crash level; only
counts, EPDO and the hazard raise change.

>>> import geopandas as gpd, pandas as pd
>>> from shapely.geometry import Point
>>> units = gpd.GeoDataFrame({"kind": ["intersection"], "level": ["blue"], "level_rank": [1]},
...     geometry=[Point(0, 0)], index=pd.Index(["I1"], name="unit_id"), crs=4326)
>>> live = LiveRisk(units)
>>> hz = pd.DataFrame({"event_id": ["H1"], "unit_id": ["I1"], "grade": ["major"],
...                    "status": ["reported"]})
>>> [(c.unit_id, c.from_level, c.to_level) for c in live.set_hazards(hz)]
[('I1', 'blue', 'orange')]
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._errors import ValidationError
from .risk import SEVERITIES, _hazard_counts, _levels
from .settings import RISK_LEVELS, RiskSettings

__all__ = ["LiveRisk", "LevelChange", "settings_from_rule", "LIVE_MEASURES"]

#: Unit columns :class:`LiveRisk` keeps current (written back to a units table after a change).
LIVE_MEASURES: tuple[str, ...] = (
    "crashes",
    *SEVERITIES,
    "epdo",
    "crashes_per_year",
    "crashes_per_km_year",
    "epdo_per_km",
    "rate_mvkm",
    "eb_expected",
    "eb_excess",
    "eb_variance",
    "risk_measure",
    "score_percentile",
    "crash_level_rank",
    "open_hazards",
    "open_major_hazards",
    "level_rank",
    "level",
    "colour",
)
#: The measures the levels are computed from (those of :data:`LIVE_MEASURES` up to EB excess).
_LEVEL_INPUTS = LIVE_MEASURES[: LIVE_MEASURES.index("eb_excess") + 1]
_SCORING = ("reference_population", "eb_predicted", "eb_weight", "kind", "length_m")
_LEVELS = np.array(RISK_LEVELS, dtype=object)


@dataclass(frozen=True)
class LevelChange:
    """A unit's level moved: ``from_level`` -> ``to_level`` because of ``reason``."""

    unit_id: str
    from_level: str
    to_level: str
    reason: str


def settings_from_rule(rule: Mapping[str, Any], base: RiskSettings | None = None) -> RiskSettings:
    """The :class:`RiskSettings` a build used, from its ``rule`` (``risk.attrs["rule"]``)."""
    cfg = base or RiskSettings()
    try:
        measure = rule["measure"]
        scheme = str(rule["scheme"])
        bands = list(rule["bands"])
    except (KeyError, TypeError) as exc:
        raise ValidationError(f"the rule has no {exc} (not a rule of trafficunit.score)") from exc
    if isinstance(measure, Mapping):
        seg = measure.get("segment")
        inter = measure.get("intersection")
        changes: dict[str, Any] = {"measure": seg or inter, "intersection_measure": inter}
    else:
        changes = {"measure": str(measure)}
    changes["scheme"] = scheme
    by_level = {b.get("level"): b for b in bands}
    if scheme in ("percentile", "fixed", "matrix"):
        edges = tuple(float(by_level[lv]["min"]) for lv in ("yellow", "orange", "red"))
        key = {"percentile": "percentile_bands", "fixed": "fixed_thresholds"}.get(
            scheme, "matrix_bands"
        )
        changes[key] = edges
    elif scheme == "length_share":
        ordered = sorted(bands, key=lambda b: int(b["class"]))
        changes["length_shares"] = tuple(float(b["share_percent"]) for b in ordered)
        changes["length_share_levels"] = tuple(str(b["level"]) for b in ordered)
    guards = rule.get("guards", {}) or {}
    if "min_crashes" in guards:
        changes["min_crashes"] = int(guards["min_crashes"])
    if "positive_only" in guards and scheme in ("percentile", "length_share"):
        changes["positive_only"] = bool(guards["positive_only"])
    for key in ("population",):
        if key in rule:
            changes[key] = tuple(rule[key])
    for key in ("min_population", "rank_among"):
        if key in rule:
            changes[key] = rule[key]
    for key in ("hazard_raise", "epdo_weights", "colours"):
        if isinstance(rule.get(key), Mapping):
            changes[key] = {str(k): v for k, v in rule[key].items()}
    return cfg.with_(**changes)


def _int_col(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    if col not in frame:
        return np.zeros(n, dtype=np.int64)
    return pd.to_numeric(frame[col], errors="coerce").fillna(0).to_numpy(dtype=np.int64, copy=True)


def _float_col(frame: pd.DataFrame, col: str, n: int) -> np.ndarray:
    if col not in frame:
        return np.full(n, np.nan)
    values = pd.to_numeric(frame[col], errors="coerce")
    return values.to_numpy(dtype=float, na_value=np.nan, copy=True)


class LiveRisk:
    """Per-unit measures and levels of a build, updated in place by accidents and hazards.

    Parameters
    ----------
    units
        Scored units (:func:`trafficunit.score`, indexed by ``unit_id`` or with a ``unit_id``
        column), or plain units carrying ``level``/``level_rank``.
    rule
        The build's rule (``risk.attrs["rule"]``, ``manifest.json``'s ``rule``). Without one
        (or without the scoring columns) crash levels are held and only hazards move levels.
    settings
        Base :class:`RiskSettings` the rule is applied over (colours, closed statuses...).
    """

    def __init__(
        self,
        units: pd.DataFrame,
        rule: Mapping[str, Any] | None = None,
        *,
        settings: RiskSettings | None = None,
    ) -> None:
        frame = units.reset_index() if "unit_id" not in units.columns else units
        if "unit_id" not in frame.columns:
            raise ValidationError("the units need a unit_id (index or column)")
        n = len(frame)
        self.ids = pd.Index(frame["unit_id"].astype(str).to_numpy())
        self.n = n
        self._lock = threading.RLock()
        rule = rule or {}
        self.rescore = bool(rule.get("scheme")) and all(c in frame for c in _SCORING)
        self.cfg = (
            settings_from_rule(rule, settings) if self.rescore else (settings or RiskSettings())
        )
        if not self.rescore and isinstance(rule.get("hazard_raise"), Mapping):
            self.cfg = self.cfg.with_(hazard_raise=dict(rule["hazard_raise"]))
        self.years = float(rule.get("years") or 1.0)
        period = rule.get("period") or {}
        if isinstance(period, Mapping):
            start = period.get("start")
        else:
            start = period[0] if isinstance(period, Sequence) and len(period) else None
        self.start_ns = pd.Timestamp(start, tz="UTC").value if start else None
        # the measures, one array each
        self.a: dict[str, np.ndarray] = {}
        for col in ("crashes", *SEVERITIES):
            self.a[col] = _int_col(frame, col, n)
        for col in LIVE_MEASURES[len(SEVERITIES) + 1 :]:
            if col in ("level", "colour", "level_rank", "crash_level_rank"):
                continue
            if col in ("open_hazards", "open_major_hazards"):
                self.a[col] = _int_col(frame, col, n)
            else:
                self.a[col] = _float_col(frame, col, n)
        if "epdo" not in frame:
            self.a["epdo"] = np.zeros(n)
        if "level_rank" in frame:
            rank = _int_col(frame, "level_rank", n)
        elif "level" in frame:
            lv = frame["level"].astype(str).to_numpy()
            rank = np.array([RISK_LEVELS.index(v) + 1 if v in RISK_LEVELS else 1 for v in lv])
        else:
            rank = np.ones(n, dtype=np.int64)
        rank = np.clip(rank, 1, len(RISK_LEVELS)).astype(np.int64)
        # hand-made levels (no crash_level_rank): the level is the crash level
        crash = _int_col(frame, "crash_level_rank", n) if "crash_level_rank" in frame else rank
        if "hazard_raise" in frame:
            raise_ = _int_col(frame, "hazard_raise", n)
        else:  # older builds: what the hazards added (exact unless capped at red)
            raise_ = np.maximum(rank - crash, 0)
        self.a["crash_level_rank"] = np.clip(crash, 1, len(RISK_LEVELS)).astype(np.int64)
        self.a["hazard_raise"] = raise_
        self.a["level_rank"] = rank
        self.kind = frame["kind"].astype(str).to_numpy() if "kind" in frame else np.full(n, "")
        self.length_m = _float_col(frame, "length_m", n)
        self.aadt = _float_col(frame, "aadt", n)
        if self.rescore:
            self.population = frame["reference_population"].astype(str).to_numpy()
            self.eb_predicted = _float_col(frame, "eb_predicted", n)
            self.eb_weight = _float_col(frame, "eb_weight", n)
        self._dirty: list[np.ndarray] = []
        self.version = 0

    # -- reading
    def levels(self) -> np.ndarray:
        """Level name per unit."""
        return np.asarray(_LEVELS[self.a["level_rank"] - 1])

    def positions(self, unit_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Positions of ``unit_ids`` (-1 for unknown ids)."""
        return np.asarray(self.ids.get_indexer(pd.Index(np.asarray(unit_ids, dtype=object))))

    def columns(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The live columns (:data:`LIVE_MEASURES`) of ``rows``."""
        out = {}
        for col in LIVE_MEASURES:
            if col == "level":
                out[col] = np.asarray(_LEVELS[self.a["level_rank"][rows] - 1])
            elif col == "colour":
                lut = np.array([self.cfg.colours.get(v) for v in RISK_LEVELS], dtype=object)
                out[col] = lut[self.a["level_rank"][rows] - 1]
            else:
                out[col] = self.a[col][rows]
        return out

    # -- writing
    def add_accidents(
        self,
        unit_ids: Sequence[str] | np.ndarray,
        severities: Sequence[str] | np.ndarray,
        times_ns: Sequence[int] | np.ndarray | None = None,
        *,
        reason: str = "accident",
        remove: bool = False,
    ) -> list[LevelChange]:
        """Count accidents on their units (or take them off, ``remove=True``); the level
        changes they cause.

        ``severities`` are KABCO letters (others count as the rule's unknown severity);
        accidents before the build period's start (``times_ns``) are not counted.
        """
        pos = self.positions(unit_ids)
        sev = np.asarray(severities, dtype=object)
        ok = pos >= 0
        if times_ns is not None and self.start_ns is not None:
            t = np.asarray(times_ns, dtype=np.int64)
            ok &= t >= self.start_ns
        pos, sev = pos[ok], sev[ok]
        if not len(pos):
            return []
        sev = np.where(np.isin(sev, SEVERITIES), sev, self.cfg.unknown_severity)
        one = -1 if remove else 1
        with self._lock:
            np.add.at(self.a["crashes"], pos, one)
            w = np.zeros(len(pos))
            for letter in SEVERITIES:
                m = sev == letter
                if m.any():
                    np.add.at(self.a[letter], pos[m], one)
                    w[m] = self.cfg.epdo_weights[letter] * one
            np.add.at(self.a["epdo"], pos, w)
            touched = np.unique(pos)
            self._measures(touched)
            return self._relevel(touched, reason)

    def set_hazards(
        self, hazards: pd.DataFrame | None, *, reason: str = "hazard"
    ) -> list[LevelChange]:
        """Replace the open hazards (joined rows: ``unit_id`` ``;``-joined, ``grade``,
        ``status``); the level changes."""
        if hazards is not None and len(hazards) and "unit_id" in hazards:
            hz = hazards.loc[hazards["unit_id"].notna()]
            if len(hz) and hz["unit_id"].astype(str).str.contains(";").any():
                hz = hz.assign(unit_id=hz["unit_id"].astype(str).str.split(";")).explode("unit_id")
        else:
            hz = None
        counts = _hazard_counts(hz, self.ids, self.cfg)
        with self._lock:
            raise_ = counts["hazard_raise"].to_numpy(dtype=np.int64)
            oh = counts["open_hazards"].to_numpy(dtype=np.int64)
            om = counts["open_major_hazards"].to_numpy(dtype=np.int64)
            touched = np.flatnonzero(
                (raise_ != self.a["hazard_raise"])
                | (oh != self.a["open_hazards"])
                | (om != self.a["open_major_hazards"])
            )
            self.a["hazard_raise"] = raise_
            self.a["open_hazards"] = oh
            self.a["open_major_hazards"] = om
            if not len(touched):
                return []
            return self._level_from_ranks(touched, reason)

    # -- internals
    def drain(self) -> np.ndarray:
        """Positions of the units whose live columns changed since the last call."""
        with self._lock:
            rows = np.unique(np.concatenate(self._dirty)) if self._dirty else np.zeros(0, int)
            self._dirty = []
        return rows

    def _measures(self, rows: np.ndarray) -> None:
        self._dirty.append(rows)
        a = self.a
        years = self.years
        crashes = a["crashes"][rows].astype(float)
        seg = self.kind[rows] == "segment"
        km = self.length_m[rows] / 1000.0
        with np.errstate(divide="ignore", invalid="ignore"):
            seg_km = np.where(seg & (km > 0), km, np.nan)
            a["crashes_per_year"][rows] = crashes / years
            a["crashes_per_km_year"][rows] = crashes / (seg_km * years)
            a["epdo_per_km"][rows] = a["epdo"][rows] / seg_km
            aadt = self.aadt[rows]
            mvkm = np.where(aadt > 0, aadt, np.nan) * 365.25 * years * seg_km / 1e6
            a["rate_mvkm"][rows] = crashes / mvkm
        if self.rescore:
            w = self.eb_weight[rows]
            pred = self.eb_predicted[rows]
            expected = w * pred + (1.0 - w) * crashes
            a["eb_expected"][rows] = expected
            a["eb_excess"][rows] = expected - pred
            a["eb_variance"][rows] = (1.0 - w) * expected

    def _relevel(self, rows: np.ndarray, reason: str) -> list[LevelChange]:
        """Re-band the populations of ``rows`` (crash level), then apply the hazard raise."""
        if self.rescore:
            pops = np.unique(self.population[rows])
            members = np.flatnonzero(np.isin(self.population, pops))
            data: dict[str, np.ndarray] = {
                "kind": self.kind[members],
                "reference_population": self.population[members],
                "length_m": self.length_m[members],
                "eb_predicted": self.eb_predicted[members],
            }
            for c in _LEVEL_INPUTS:
                data[c] = self.a[c][members]
            sub = pd.DataFrame(data)
            rank, pct, _, _ = _levels(sub, self.cfg)
            values = _measure_values(sub, self.cfg)
            a = self.a
            moved = (
                (a["crash_level_rank"][members] != rank)
                | ~_same(a["score_percentile"][members], pct)
                | ~_same(a["risk_measure"][members], values)
            )
            a["crash_level_rank"][members] = rank
            a["score_percentile"][members] = pct
            a["risk_measure"][members] = values
            rows = np.union1d(rows, members[moved])
        return self._level_from_ranks(rows, reason)

    def _level_from_ranks(self, rows: np.ndarray, reason: str) -> list[LevelChange]:
        old = self.a["level_rank"][rows].copy()
        new = np.minimum(
            self.a["crash_level_rank"][rows] + self.a["hazard_raise"][rows], len(RISK_LEVELS)
        )
        self.a["level_rank"][rows] = new
        self._dirty.append(rows)
        self.version += 1
        moved = np.flatnonzero(old != new)
        return [
            LevelChange(
                str(self.ids[rows[i]]), RISK_LEVELS[old[i] - 1], RISK_LEVELS[new[i] - 1], reason
            )
            for i in moved
        ]


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality with NaN equal to NaN."""
    return np.asarray((a == b) | (np.isnan(a) & np.isnan(b)), dtype=bool)


def _measure_values(sub: pd.DataFrame, cfg: RiskSettings) -> np.ndarray:
    from .risk import _level_measure

    values, _ = _level_measure(sub, cfg)
    return values


def level_counts(levels: np.ndarray) -> dict[str, int]:
    """Units per level name."""
    names, counts = np.unique(np.asarray(levels, dtype=object).astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}
