"""Warning rules as data, evaluated on a stream of accidents (live) or a replay (batch).

A rule counts the accidents that pass its filters inside a sliding time window per scope and
fires when the window's count (or EPDO) **crosses** its threshold from below; it fires again
only after the total fell back under the threshold. Rules are YAML or JSON::

    - id: cluster-rear-end
      scope: unit            # unit | corridor (a named road) | zone (a grid cell or a column)
      window: 30d            # s, m, h, d or w
      where: {severity: [K, A, B], collision_type: rear_end}
      threshold: {count: 3}  # or {epdo: 100}
    - id: turned-red         # built-ins: turned-red, night-workzone-on-red, hazard-overdue
    - id: night-workzone-on-red
    - id: hazard-overdue

Filters: ``severity`` (KABCO letters), ``collision_type``, ``light`` (values compared without
case, ``_``/``-``/space alike), ``hour`` (a band ``[start, end)``, wrapping past midnight:
``[19, 7]``) and ``road_class`` (the unit's).

:class:`Engine` keeps the windows between calls, so feeding the same events in the same order
gives the same alerts whether they come in one call (:func:`evaluate`, ``trafficunit warn``)
or one POST at a time (the server). Window counts are vectorised (``numpy`` sorts and
``searchsorted``), not a loop over events. The level built-ins (``turned-red``,
``night-workzone-on-red``) look at the level after each write: replay with the same write
batches (``trafficunit warn --batch-size``) to get the same alerts as the server.

>>> rules = load_rules([{"id": "two", "scope": "unit", "window": "1d",
...                      "threshold": {"count": 2}}])
>>> events = pd.DataFrame({"event_id": ["a", "b", "c"], "unit_id": ["U1", "U1", "U1"],
...     "severity": ["O", "O", "O"],
...     "time": pd.to_datetime(["2020-01-01 08:00", "2020-01-01 09:00", "2020-01-03 09:00"],
...                            utc=True)})
>>> [(a["rule"], a["scope_id"], a["evidence"]) for a in evaluate(rules, events)]
[('two', 'U1', ['a', 'b'])]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._errors import ValidationError
from .risk import SEVERITIES
from .settings import EPDO_WEIGHTS_HSM

__all__ = [
    "Rule",
    "Engine",
    "BUILTINS",
    "DEFAULT_RULES",
    "load_rules",
    "evaluate",
]

#: Built-in rules (no window or threshold of their own).
BUILTINS = ("turned-red", "night-workzone-on-red", "hazard-overdue")
SCOPES = ("unit", "corridor", "zone")
FILTERS = ("severity", "collision_type", "light", "hour", "road_class")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SHIFT = np.int64(1) << np.int64(34)  # seconds since 1970 fit in 34 bits until 2514

#: The rules shipped as defaults (the four of the issue).
DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "id": "cluster-rear-end",
        "scope": "unit",
        "window": "30d",
        "where": {"severity": ["K", "A", "B"], "collision_type": "rear_end"},
        "threshold": {"count": 3},
    },
    {"id": "turned-red"},
    {"id": "night-workzone-on-red", "hour": [19, 7]},
    {"id": "hazard-overdue"},
]


def _norm(v: Any) -> str:
    return re.sub(r"[\s_\-]+", "-", str(v).strip().lower())


@dataclass(frozen=True)
class Rule:
    """One validated rule."""

    id: str
    scope: str = "unit"
    window_s: int = 0
    where: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "count"
    threshold: float = 0.0
    grid_m: float = 1000.0
    zone_field: str | None = None
    hour: tuple[int, int] = (19, 7)
    builtin: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The rule as data (what :func:`load_rules` reads)."""
        if self.builtin:
            return {"id": self.id}
        return {
            "id": self.id,
            "scope": self.scope,
            "window": f"{self.window_s}s",
            "where": dict(self.where),
            "threshold": {self.metric: self.threshold},
        }


def _parse_window(value: Any, rid: str) -> int:
    m = _WINDOW.match(str(value))
    if m is None:
        raise ValidationError(
            f"rule {rid!r}: window {value!r} is not a duration like 30d, 12h, 2w, 90m"
        )
    secs = float(m.group(1)) * _UNITS[m.group(2)]
    if secs <= 0:
        raise ValidationError(f"rule {rid!r}: window must be positive")
    return int(secs)


def _hour_band(value: Any, rid: str) -> tuple[int, int]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(h, int) and 0 <= h <= 24 for h in value)
    ):
        raise ValidationError(f"rule {rid!r}: hour must be [start, end) hours 0-24, e.g. [19, 7]")
    return int(value[0]), int(value[1])


def _rule(raw: Any, k: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"rule #{k + 1} is not a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid.strip():
        raise ValidationError(f"rule #{k + 1} has no id")
    if rid in BUILTINS and set(raw) <= {"id", "hour", "description"}:
        hour = _hour_band(raw["hour"], rid) if "hour" in raw else (19, 7)
        return Rule(rid, builtin=True, hour=hour)
    unknown = set(raw) - {
        "id",
        "scope",
        "window",
        "where",
        "threshold",
        "grid_m",
        "zone_field",
        "description",
    }
    if unknown:
        raise ValidationError(f"rule {rid!r}: unknown key(s) {sorted(unknown)}")
    scope = raw.get("scope", "unit")
    if scope not in SCOPES:
        raise ValidationError(
            f"rule {rid!r}: scope must be one of {', '.join(SCOPES)}, got {scope!r}"
        )
    if "window" not in raw:
        raise ValidationError(f"rule {rid!r}: no window (e.g. window: 30d)")
    window_s = _parse_window(raw["window"], rid)
    thr = raw.get("threshold")
    if not isinstance(thr, Mapping) or len(thr) != 1 or next(iter(thr)) not in ("count", "epdo"):
        raise ValidationError(f"rule {rid!r}: threshold must be {{count: N}} or {{epdo: X}}")
    metric, value = next(iter(thr.items()))
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValidationError(f"rule {rid!r}: threshold {metric} must be a positive number")
    where = raw.get("where") or {}
    if not isinstance(where, Mapping):
        raise ValidationError(f"rule {rid!r}: where must be a mapping of filters")
    bad = set(where) - set(FILTERS)
    if bad:
        raise ValidationError(
            f"rule {rid!r}: unknown filter(s) {sorted(bad)}; filters are {', '.join(FILTERS)}"
        )
    clean: dict[str, Any] = {}
    for key, val in where.items():
        if key == "hour":
            clean[key] = _hour_band(val, rid)
            continue
        vals = [val] if isinstance(val, str | int) else list(val)
        if not vals:
            raise ValidationError(f"rule {rid!r}: filter {key} is empty")
        if key == "severity":
            letters = [str(v).upper() for v in vals]
            wrong = [v for v in letters if v not in SEVERITIES]
            if wrong:
                raise ValidationError(f"rule {rid!r}: severities {wrong} are not KABCO letters")
            clean[key] = tuple(letters)
        else:
            clean[key] = tuple(_norm(v) for v in vals)
    grid_m = raw.get("grid_m", 1000.0)
    if isinstance(grid_m, bool) or not isinstance(grid_m, int | float) or not grid_m > 0:
        raise ValidationError(f"rule {rid!r}: grid_m must be a positive number of metres")
    zone_field = raw.get("zone_field")
    if zone_field is not None and scope != "zone":
        raise ValidationError(f"rule {rid!r}: zone_field needs scope: zone")
    return Rule(
        rid,
        scope=scope,
        window_s=window_s,
        where=clean,
        metric=metric,
        threshold=float(value),
        grid_m=float(grid_m),
        zone_field=zone_field,
    )


def load_rules(source: Any = None) -> list[Rule]:
    """Validated rules from a YAML/JSON file, a YAML/JSON text, or a list of mappings.

    ``None`` gives :data:`DEFAULT_RULES`. Errors name the rule and what is wrong.
    """
    if source is None:
        raw: Any = DEFAULT_RULES
    elif isinstance(source, str | os.PathLike) and Path(source).suffix.lower() in (
        ".yaml",
        ".yml",
        ".json",
    ):
        path = Path(source)
        if not path.exists():
            raise ValidationError(f"{path}: no such rules file")
        raw = _parse_text(path.read_text(encoding="utf-8"), str(path))
    elif isinstance(source, str):
        raw = _parse_text(source, "rules")
    else:
        raw = source
    if isinstance(raw, Mapping) and "rules" in raw:
        raw = raw["rules"]
    if not isinstance(raw, list):
        raise ValidationError("rules must be a list of rules")
    rules = [_rule(r, k) for k, r in enumerate(raw)]
    ids = [r.id for r in rules]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValidationError(f"rule ids must be unique; repeated: {dup}")
    return rules


def _parse_text(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{name}: not valid YAML/JSON ({exc})") from exc


def alert_id(rule: str, scope_id: str, trigger: str) -> str:
    """A stable alert id (the same in batch and live)."""
    digest = hashlib.blake2b(f"{rule}\0{scope_id}\0{trigger}".encode(), digest_size=8)
    return "W" + digest.hexdigest()


@dataclass
class _History:
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    t: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    v: np.ndarray = field(default_factory=lambda: np.zeros(0, float))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, object))


class Engine:
    """Rules evaluated incrementally over accidents fed in order.

    Parameters
    ----------
    rules
        :func:`load_rules` output (or anything it accepts).
    units
        The units (``unit_id`` index or column; ``road_class``, ``name``, geometry for zones).
    epdo_weights
        EPDO weight per KABCO letter (default HSM).
    """

    def __init__(
        self,
        rules: Any = None,
        units: pd.DataFrame | None = None,
        *,
        epdo_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.rules = rules if _is_rule_list(rules) else load_rules(rules)
        self.weights = dict(epdo_weights or EPDO_WEIGHTS_HSM)
        self._hist: dict[str, _History] = {r.id: _History() for r in self.rules}
        self._codes: dict[str, dict[str, int]] = {r.id: {} for r in self.rules}
        self._seen_overdue: set[str] = set()
        self.units = _unit_lookup(units)
        for r in self.rules:
            if r.scope == "corridor" and "name" not in self.units:
                raise ValidationError(f"rule {r.id!r}: scope corridor needs a unit 'name' column")
            if r.zone_field is not None and r.zone_field not in self.units:
                raise ValidationError(f"rule {r.id!r}: the units have no column {r.zone_field!r}")

    # -- accidents
    def feed(self, events: pd.DataFrame) -> list[dict[str, Any]]:
        """Alerts of the window rules for ``events`` (``event_id``, ``unit_id``, ``time``,
        ``severity`` and the filtered fields), taken in time order (ties by ``event_id``)."""
        if not len(events):
            return []
        ev = _prepare(events)
        alerts: list[dict[str, Any]] = []
        for rule in self.rules:
            if not rule.builtin:
                alerts += self._window_rule(rule, ev)
        return alerts

    def _scope_ids(self, rule: Rule, ev: pd.DataFrame) -> np.ndarray:
        uid = ev["unit_id"].astype(object).to_numpy()
        if rule.scope == "unit":
            return uid
        u = self.units
        pos = u.index.get_indexer(pd.Index(uid))
        out = np.full(len(ev), None, dtype=object)
        ok = pos >= 0
        if rule.scope == "corridor":
            names = u["name"].to_numpy(dtype=object)[pos[ok]]
            out[ok] = pd.Series(names, dtype=object).where(pd.notna(names), None).to_numpy()
            return out
        if rule.zone_field is not None:
            vals = u[rule.zone_field].to_numpy(dtype=object)[pos[ok]]
            out[ok] = pd.Series(vals, dtype=object).where(pd.notna(vals), None).to_numpy()
            return out
        gx = np.floor(u["_x"].to_numpy()[pos[ok]] / rule.grid_m).astype(np.int64)
        gy = np.floor(u["_y"].to_numpy()[pos[ok]] / rule.grid_m).astype(np.int64)
        out[ok] = [f"grid{int(rule.grid_m)}:{a}:{b}" for a, b in zip(gx, gy, strict=True)]
        return out

    def _mask(self, rule: Rule, ev: pd.DataFrame) -> np.ndarray:
        keep = ev["unit_id"].notna().to_numpy() & ev["_t"].notna().to_numpy()
        for key, vals in rule.where.items():
            if key == "hour":
                h = pd.to_numeric(ev["hour"], errors="coerce").to_numpy(dtype=float)
                a, b = vals
                inside = (h >= a) & (h < b) if a <= b else (h >= a) | (h < b)
                keep &= inside & ~np.isnan(h)
            elif key == "severity":
                keep &= ev["severity"].astype(object).isin(vals).to_numpy()
            elif key == "road_class":
                u = self.units
                rc = u["road_class"] if "road_class" in u else pd.Series(dtype=object)
                got = ev["unit_id"].map(rc).astype(object)
                keep &= (
                    got.map(lambda v: _norm(v) if isinstance(v, str) else None)
                    .isin(vals)
                    .to_numpy()
                )
            else:
                col = ev[key] if key in ev else pd.Series(None, index=ev.index, dtype=object)
                normed = col.astype(object).map(lambda v: None if pd.isna(v) else _norm(v))
                keep &= normed.isin(vals).to_numpy()
        return np.asarray(keep, dtype=bool)

    def _window_rule(self, rule: Rule, ev: pd.DataFrame) -> list[dict[str, Any]]:
        mask = self._mask(rule, ev)
        scopes = self._scope_ids(rule, ev)
        mask &= pd.notna(scopes)
        if not mask.any():
            return []
        codes_of = self._codes[rule.id]
        sel = ev.loc[mask]
        sid = scopes[mask]
        for s in sid:
            if s not in codes_of:
                codes_of[s] = len(codes_of)
        new_codes = np.array([codes_of[s] for s in sid], dtype=np.int64)
        new_t = sel["_t"].to_numpy(dtype=np.int64)
        new_v: np.ndarray = (
            np.ones(len(sel))
            if rule.metric == "count"
            else sel["severity"].map(self.weights).fillna(self.weights["O"]).to_numpy(float)
        )
        new_ids = sel["event_id"].astype(str).to_numpy(dtype=object)
        h = self._hist[rule.id]
        nh = len(h.codes)
        codes = np.concatenate([h.codes, new_codes])
        t = np.concatenate([h.t, new_t])
        v = np.concatenate([h.v, new_v])
        ids = np.concatenate([h.ids, new_ids])
        seq = np.arange(len(codes))
        order = np.lexsort((seq, t, codes))
        comp = codes[order] * _SHIFT + t[order]
        cs = np.concatenate([[0.0], np.cumsum(v[order])])
        where = np.empty(len(order), dtype=np.int64)
        where[order] = np.arange(len(order))
        p = where[nh:]  # sorted positions of the new events
        lb = np.searchsorted(comp, codes[nh:] * _SHIFT + (t[nh:] - rule.window_s), side="right")
        total = cs[p + 1] - cs[lb]
        # fires when the window total crosses the threshold from below (so a scope fires
        # again only after its total fell back under the threshold)
        crossing = (total >= rule.threshold) & (total - v[nh:] < rule.threshold)
        alerts: list[dict[str, Any]] = []
        for i in np.flatnonzero(crossing):  # the few that fire; the sums above are vectorised
            ev_ids = [str(x) for x in ids[order[lb[i] : p[i] + 1]]]
            scope_id = str(sid[i])
            trigger = str(new_ids[i])
            days, rest = divmod(rule.window_s, 86400)
            alerts.append(
                {
                    "id": alert_id(rule.id, scope_id, trigger),
                    "rule": rule.id,
                    "scope": rule.scope,
                    "scope_id": scope_id,
                    "unit_ids": self._units_of(rule, scope_id, sel, int(i)),
                    "time": _iso(int(new_t[i])),
                    "evidence": ev_ids,
                    "detail": f"{rule.metric} {total[i]:g} >= {rule.threshold:g} within "
                    + (f"{days}d" if not rest else f"{rule.window_s}s"),
                }
            )
        # keep only what a later window can still see
        keep = t > (t.max() - rule.window_s)
        h.codes, h.t, h.v, h.ids = codes[keep], t[keep], v[keep], ids[keep]
        return alerts

    def _units_of(self, rule: Rule, scope_id: str, sel: pd.DataFrame, i: int) -> list[str]:
        if rule.scope == "unit":
            return [scope_id]
        return [str(sel["unit_id"].iloc[i])]

    # -- level built-ins
    def level_changes(
        self,
        changes: Sequence[Any],
        t_ns: int,
        *,
        evidence: Sequence[str] = (),
        workzones: pd.DataFrame | None = None,
    ) -> list[dict[str, Any]]:
        """Alerts of ``turned-red`` and ``night-workzone-on-red`` for level changes made by a
        write whose latest event is at ``t_ns``."""
        out: list[dict[str, Any]] = []
        ids = {r.id: r for r in self.rules if r.builtin}
        red = sorted({c.unit_id for c in changes if c.to_level == "red" and c.from_level != "red"})
        if not red:
            return out
        stamp = _iso(t_ns // 1_000_000_000)
        ev = [str(e) for e in evidence]
        if "turned-red" in ids:
            for uid in red:
                out.append(
                    {
                        "id": alert_id("turned-red", uid, stamp),
                        "rule": "turned-red",
                        "scope": "unit",
                        "scope_id": uid,
                        "unit_ids": [uid],
                        "time": stamp,
                        "evidence": ev,
                        "detail": "the unit's level rose to red",
                    }
                )
        rule = ids.get("night-workzone-on-red")
        if rule is not None and workzones is not None and len(workzones):
            t = pd.Timestamp(t_ns, tz="UTC")
            active = workzones[
                (pd.to_datetime(workzones["start"], utc=True) <= t)
                & (pd.to_datetime(workzones["end"], utc=True) >= t)
            ]
            if "night_works" in active:
                active = active[active["night_works"].fillna(False).astype(bool)]
            for uid in red:
                on = active[
                    active["unit_id"].astype(str).str.split(";").map(lambda s, u=uid: u in s)
                ]
                for site in on.get("site_code", on.get("event_id", pd.Series(dtype=object))):
                    out.append(
                        {
                            "id": alert_id(rule.id, uid, f"{site}@{stamp}"),
                            "rule": rule.id,
                            "scope": "unit",
                            "scope_id": uid,
                            "unit_ids": [uid],
                            "time": stamp,
                            "evidence": [*ev, str(site)],
                            "detail": f"night work zone {site} active on a unit turned red",
                        }
                    )
        return out

    def hazards(self, hazards: pd.DataFrame) -> list[dict[str, Any]]:
        """``hazard-overdue`` alerts for hazards newly overdue (``overdue`` column true)."""
        if not any(r.id == "hazard-overdue" and r.builtin for r in self.rules):
            return []
        if hazards is None or not len(hazards) or "overdue" not in hazards:
            return []
        due = hazards[hazards["overdue"].fillna(False).astype(bool)]
        out = []
        for row in due.itertuples(index=False):
            hid = str(row.event_id)
            if hid in self._seen_overdue:
                continue
            self._seen_overdue.add(hid)
            units = [u for u in str(getattr(row, "unit_id", "") or "").split(";") if u]
            deadline = getattr(row, "deadline", None)
            out.append(
                {
                    "id": alert_id("hazard-overdue", hid, str(deadline)),
                    "rule": "hazard-overdue",
                    "scope": "unit",
                    "scope_id": units[0] if units else hid,
                    "unit_ids": units,
                    "time": pd.Timestamp(deadline).isoformat() if deadline is not None else None,
                    "evidence": [hid],
                    "hazard_id": hid,
                    "detail": f"hazard {hid} passed its rectification deadline",
                }
            )
        return out


def _is_rule_list(rules: Any) -> bool:
    return isinstance(rules, list) and all(isinstance(r, Rule) for r in rules) and bool(rules)


def _unit_lookup(units: pd.DataFrame | None) -> pd.DataFrame:
    if units is None:
        return pd.DataFrame(index=pd.Index([], dtype=object))
    frame = units.reset_index() if "unit_id" not in units.columns else units
    cols = [c for c in ("road_class", "name") if c in frame]
    out = pd.DataFrame(
        {c: frame[c].to_numpy() for c in cols}, index=pd.Index(frame["unit_id"].astype(str))
    )
    for c in frame.columns:
        if c not in out and c not in ("geometry", "unit_id") and frame[c].dtype == object:
            out[c] = frame[c].to_numpy()
    geom = getattr(frame, "geometry", None)
    if geom is not None and getattr(frame, "crs", None) is not None and len(frame):
        import geopandas as gpd

        pts = gpd.GeoSeries(geom, crs=frame.crs).to_crs(3857).representative_point()
        out["_x"] = pts.x.to_numpy()
        out["_y"] = pts.y.to_numpy()
    return out[~out.index.duplicated()]


def _prepare(events: pd.DataFrame) -> pd.DataFrame:
    ev = events.reset_index(drop=True).copy()
    if "event_id" not in ev or "unit_id" not in ev:
        raise ValidationError("events need event_id and unit_id (joined with tu.assign)")
    if "_t" not in ev:
        t = pd.to_datetime(ev["time"], utc=True, errors="coerce")
        ev["_t"] = (t.dt.as_unit("s").astype("int64")).where(t.notna(), None)
    if "hour" not in ev and "time" in ev:
        ev["hour"] = pd.to_datetime(ev["time"], errors="coerce").dt.hour
    ev["_eid"] = ev["event_id"].astype(str)
    ev = ev.sort_values(["_t", "_eid"], kind="stable", na_position="last")
    return ev.reset_index(drop=True)


def _iso(t_s: int) -> str:
    return pd.Timestamp(int(t_s), unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def evaluate(
    rules: Any,
    accidents: pd.DataFrame,
    units: pd.DataFrame | None = None,
    *,
    start: Any = None,
    end: Any = None,
    live: Any = None,
    batch_size: int | None = None,
    workzones: pd.DataFrame | None = None,
    hazards: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Replay ``accidents`` (joined) in time order through ``rules``; the alerts, in order.

    Parameters
    ----------
    rules
        Rules (:func:`load_rules` input or output).
    accidents
        Joined accidents (``event_id``, ``unit_id``, ``time``, ``severity``...).
    units
        Units (scopes corridor/zone, the road_class filter).
    start, end
        Only accidents in ``[start, end]`` (end inclusive for a date).
    live
        A :class:`trafficunit.live.LiveRisk` to count the accidents into: level built-ins
        fire on its level changes. Without it only the window rules and hazard-overdue run.
    batch_size
        Accidents per write when ``live`` is given (the server evaluates per POST).
    workzones, hazards
        For ``night-workzone-on-red`` and ``hazard-overdue``.
    """
    engine = Engine(
        rules, units, epdo_weights=getattr(getattr(live, "cfg", None), "epdo_weights", None)
    )
    ev = _prepare(accidents)
    ev = ev[ev["_t"].notna()]
    if start is not None:
        ev = ev[ev["_t"] >= pd.Timestamp(start, tz="UTC").value // 1_000_000_000]
    if end is not None:
        e = pd.Timestamp(end, tz="UTC")
        if isinstance(end, str) and len(end) <= 10:
            e = e + pd.Timedelta(days=1)
            ev = ev[ev["_t"] < e.value // 1_000_000_000]
        else:
            ev = ev[ev["_t"] <= e.value // 1_000_000_000]
    alerts: list[dict[str, Any]] = []
    size = batch_size or max(len(ev), 1)
    for lo in range(0, len(ev), size):
        chunk = ev.iloc[lo : lo + size]
        alerts += engine.feed(chunk)
        if live is not None:
            changes = live.add_accidents(
                chunk["unit_id"].astype(object).to_numpy(),
                chunk["severity"].astype(object).to_numpy(),
                chunk["_t"].to_numpy(dtype=np.int64) * 1_000_000_000,
            )
            alerts += engine.level_changes(
                changes,
                int(chunk["_t"].max()) * 1_000_000_000,
                evidence=chunk["event_id"].astype(str).tolist()[-10:],
                workzones=workzones,
            )
    if hazards is not None:
        alerts += engine.hazards(hazards)
    return alerts


def to_json(alerts: Sequence[Mapping[str, Any]]) -> str:
    """Alerts as JSON text."""
    return json.dumps(list(alerts), ensure_ascii=False, indent=2)
