"""Warning rules as data, evaluated on a stream of accidents (live) or a replay (batch).

A rule counts the accidents that pass its filters inside a sliding time window per scope and
fires when the window's count (or EPDO) **crosses** its threshold from below; it fires again
only after the total fell back under the threshold. Rules are YAML or JSON::

    - id: cluster-rear-end
      scope: unit            # unit | corridor (chained units along a road) | zone (grid cell
      window: 30d            # s, m, h, d or w             # or a column)
      where: {severity: [K, A, B], collision_type: rear_end}
      threshold: {count: 3}  # or {epdo: 100}
    - id: turned-red         # built-ins: turned-red, night-workzone-on-red, hazard-overdue
    - id: night-workzone-on-red
    - id: hazard-overdue

A ``corridor`` rule counts along road chains (:func:`trafficunit.blackspots.road_corridors`:
segments chained into continuous roads, the two carriageways of a divided road as one, the
intersections on it included; an accident at an intersection counts on every road through
it). With ``length_m: 500`` a window of that length slides along the road: an accident fires
the rule when it brings some 500 m stretch around it to the threshold (within the time
window) for the first time; the evidence is that stretch's accidents. Without ``length_m``
the whole chain is one window. A unit's position on its chain is its middle (an
intersection's: its node), the same in batch and live.

Filters: ``severity`` (KABCO letters), ``collision_type``, ``light`` (values compared without
case, ``_``/``-``/space alike), ``hour`` (a band ``[start, end)``, wrapping past midnight:
``[19, 7]``) and ``road_class`` (the unit's).

:class:`Engine` keeps the windows between calls, so feeding the same events in the same order
gives the same alerts whether they come in one call (:func:`evaluate`, ``trafficunit warn``)
or one POST at a time (the server). Window counts are vectorised (``numpy`` sorts and
``searchsorted``), not a loop over events. The level built-ins (``turned-red``,
``night-workzone-on-red``) look at the level after each write: replay with the same write
batches (``trafficunit warn --batch-size``) to get the same alerts as the server.
``night-workzone-on-red`` fires when a unit turns red under an active night work zone, and
when a night work zone is active on a unit that is red already (registered on it, or its
period began): :meth:`Engine.workzones_on_red`, checked after each write at the write's
latest event time (batch and server alike) and by the server at the wall-clock time when a
site is registered, on ``GET /alerts`` and once a minute.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._errors import ValidationError
from .settings import EPDO_WEIGHTS_HSM
from .warnrules import (
    BUILTINS,
    DEFAULT_RULES,
    Rule,
    _norm,
    load_rules,
)
from .warnrules import (
    FILTERS as FILTERS,
)
from .warnrules import (
    SCOPES as SCOPES,
)

__all__ = [
    "Rule",
    "Engine",
    "BUILTINS",
    "DEFAULT_RULES",
    "load_rules",
    "evaluate",
]

_SHIFT = np.int64(1) << np.int64(34)  # seconds since 1970 fit in 34 bits until 2514


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
    pos: np.ndarray = field(default_factory=lambda: np.zeros(0, float))
    units: np.ndarray = field(default_factory=lambda: np.zeros(0, object))


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
        #: (site, unit) pairs of night work zones active on red units already alerted
        self.workzone_pairs: set[tuple[str, str]] = set()
        self.units = _unit_lookup(units)
        self.chains: pd.DataFrame | None = None
        corridor = [r.id for r in self.rules if r.scope == "corridor"]
        if corridor:
            self.chains = _chain_index(units, corridor[0])
        for r in self.rules:
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

    def _on_chains(self, sel: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Accidents on road chains: one row per (accident, chain), the chain key, position."""
        ch = self.chains
        assert ch is not None
        uid = sel["unit_id"].astype(str).to_numpy(dtype=object)
        hit = pd.DataFrame({"row": np.arange(len(sel)), "unit_id": uid}).merge(
            ch, on="unit_id", how="inner", sort=False
        )
        hit = hit.sort_values(["row", "chain_id"], kind="stable")
        rows = hit["row"].to_numpy(dtype=np.int64)
        return sel.iloc[rows], hit["key"].to_numpy(dtype=object), hit["pos_m"].to_numpy(float)

    def _window_rule(self, rule: Rule, ev: pd.DataFrame) -> list[dict[str, Any]]:
        mask = self._mask(rule, ev)
        if rule.scope == "corridor":
            if not mask.any():
                return []
            sel, sid, new_pos = self._on_chains(ev.loc[mask])
            if not len(sel):
                return []
        else:
            scopes = self._scope_ids(rule, ev)
            mask &= pd.notna(scopes)
            if not mask.any():
                return []
            sel = ev.loc[mask]
            sid = scopes[mask]
            new_pos = np.zeros(len(sel))
        codes_of = self._codes[rule.id]
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
        new_units = sel["unit_id"].astype(str).to_numpy(dtype=object)
        h = self._hist[rule.id]
        nh = len(h.codes)
        codes = np.concatenate([h.codes, new_codes])
        t = np.concatenate([h.t, new_t])
        v = np.concatenate([h.v, new_v])
        ids = np.concatenate([h.ids, new_ids])
        pos = np.concatenate([h.pos, new_pos])
        units = np.concatenate([h.units, new_units])
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
        if rule.length_m is not None:  # only where the whole chain reaches it can a stretch
            crossing = total >= rule.threshold
        alerts: list[dict[str, Any]] = []
        for i in np.flatnonzero(crossing):  # the few that fire; the sums above are vectorised
            idx = order[lb[i] : p[i] + 1]
            scope_id = str(sid[i])
            if rule.length_m is not None:
                got = _stretch(pos[idx], v[idx], float(new_pos[i]), rule.length_m)
                best, lo_m, inside = got
                if not (best >= rule.threshold and best - v[nh + i] < rule.threshold):
                    continue
                idx = idx[inside]
                total[i] = best
                scope_id = f"{scope_id}:{lo_m:.0f}-{lo_m + rule.length_m:.0f}m"
            ev_ids = [str(x) for x in ids[idx]]
            trigger = str(new_ids[i])
            days, rest = divmod(rule.window_s, 86400)
            unit_ids = [str(new_units[i])]
            if rule.scope == "corridor":  # the trigger's unit first, then the others along
                along = idx[np.argsort(pos[idx], kind="stable")]
                unit_ids += [str(u) for u in dict.fromkeys(units[along]) if u != unit_ids[0]]
            alerts.append(
                {
                    "id": alert_id(rule.id, scope_id, trigger),
                    "rule": rule.id,
                    "scope": rule.scope,
                    "scope_id": scope_id,
                    "unit_ids": unit_ids
                    if rule.scope == "corridor"
                    else self._units_of(rule, scope_id, sel, int(i)),
                    "time": _iso(int(new_t[i])),
                    "evidence": ev_ids,
                    "detail": f"{rule.metric} {total[i]:g} >= {rule.threshold:g} within "
                    + (f"{days}d" if not rest else f"{rule.window_s}s"),
                }
            )
        # keep only what a later window can still see
        keep = t > (t.max() - rule.window_s)
        h.codes, h.t, h.v, h.ids = codes[keep], t[keep], v[keep], ids[keep]
        h.pos, h.units = pos[keep], units[keep]
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
            on = _night_zones(workzones, t_ns)
            on = on[on["unit_id"].isin(red)]
            for uid, site in zip(on["unit_id"], on["site"], strict=True):
                self.workzone_pairs.add((site, uid))
                out.append(
                    {
                        "id": alert_id(rule.id, uid, f"{site}@{stamp}"),
                        "rule": rule.id,
                        "scope": "unit",
                        "scope_id": uid,
                        "unit_ids": [uid],
                        "time": stamp,
                        "evidence": [*ev, site],
                        "detail": f"night work zone {site} active on a unit turned red",
                    }
                )
        return out

    def workzones_on_red(
        self, red_units: Any, t_ns: int, workzones: pd.DataFrame | None
    ) -> list[dict[str, Any]]:
        """``night-workzone-on-red`` for night work zones active at ``t_ns`` on units that are
        red already (the zone became active, or was registered, on a red unit): once per site
        and unit while both last (:attr:`workzone_pairs`); the alert id is stable per site,
        unit and the zone's start, so a replay or a restart stores it once."""
        if not any(r.id == "night-workzone-on-red" and r.builtin for r in self.rules):
            return []
        if workzones is None or not len(workzones):
            self.workzone_pairs = set()
            return []
        on = _night_zones(workzones, t_ns)
        on = on[on["unit_id"].isin(pd.Index(np.asarray(red_units, dtype=object)))]
        now = set(zip(on["site"], on["unit_id"], strict=True))
        out = []
        for site, uid, start in zip(on["site"], on["unit_id"], on["start"], strict=True):
            if (site, uid) in self.workzone_pairs:
                continue
            begun = pd.Timestamp(start).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.append(
                {
                    "id": alert_id("night-workzone-on-red", uid, f"{site}@start {begun}"),
                    "rule": "night-workzone-on-red",
                    "scope": "unit",
                    "scope_id": uid,
                    "unit_ids": [uid],
                    "time": _iso(t_ns // 1_000_000_000),  # when seen (the zone is active then)
                    "evidence": [site],
                    "detail": f"night work zone {site} active on a red unit",
                }
            )
        self.workzone_pairs = now
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


def _stretch(
    pos: np.ndarray, v: np.ndarray, at: float, length: float
) -> tuple[float, float, np.ndarray]:
    """The stretch ``[lo, lo + length]`` containing ``at`` with the largest sum of ``v`` over
    accidents at ``pos``: (sum, lo, which accidents lie in it); ``lo`` is its first accident.
    Ties: the stretch furthest back along the road. Candidate stretches start at an accident
    or end at one (the maximum is reached at one of them); vectorised over candidates x
    accidents."""
    eps = 1e-6
    starts = np.concatenate(
        [pos[(pos >= at - length) & (pos <= at)], pos[(pos >= at) & (pos <= at + length)] - length]
    )
    starts = np.unique(starts)
    inside = (pos[None, :] >= starts[:, None] - eps) & (
        pos[None, :] <= starts[:, None] + length + eps
    )
    sums = inside.astype(float) @ v
    k = int(np.argmax(sums))  # the first maximum: the smallest start
    # reported from its first accident (the same accidents: weights are positive)
    return float(sums[k]), float(pos[inside[k]].min()), inside[k]


def _chain_index(units: Any, rid: str) -> pd.DataFrame:
    """unit_id -> (chain key, position along the chain) for scope corridor."""
    from .blackspots import road_corridors

    geom = getattr(units, "geometry", None) if units is not None else None
    if units is None or geom is None or not len(units):
        raise ValidationError(
            f"rule {rid!r}: scope corridor needs the units (with geometry) to chain into roads"
        )
    try:
        ch = road_corridors(units)
    except ValidationError as exc:
        raise ValidationError(f"rule {rid!r}: scope corridor: {exc}") from exc
    road = ch["road"].astype(object).where(ch["road"].notna(), None)
    key = [
        f"{r}#{c}" if r is not None else f"chain{c}"
        for r, c in zip(road.to_numpy(), ch["chain_id"].to_numpy(), strict=True)
    ]
    out = pd.DataFrame(
        {
            "unit_id": ch["unit_id"].astype(str).to_numpy(dtype=object),
            "chain_id": ch["chain_id"].to_numpy(dtype=np.int64),
            "key": np.array(key, dtype=object),
            "pos_m": ((ch["start_m"] + ch["end_m"]) / 2).to_numpy(dtype=float),
        }
    )
    # segments inside a complex junction count at their junction
    frame = units.reset_index() if "unit_id" not in units.columns else units
    if "junction_id" in frame.columns:
        inner = frame[(frame["kind"] == "segment") & frame["junction_id"].notna()]
        extra = pd.DataFrame(
            {
                "unit_id": inner["unit_id"].astype(str).to_numpy(dtype=object),
                "junction": inner["junction_id"].astype(str).to_numpy(dtype=object),
            }
        ).merge(out, left_on="junction", right_on="unit_id", suffixes=("", "_j"))
        out = pd.concat([out, extra[out.columns]], ignore_index=True)
    return out.drop_duplicates(["unit_id", "chain_id"]).reset_index(drop=True)


def _night_zones(workzones: pd.DataFrame, t_ns: int) -> pd.DataFrame:
    """(site, unit_id, start) of the night work zones active at ``t_ns``, sorted; a zone
    without ``night_works`` counts when the table has no such column."""
    t = pd.Timestamp(t_ns, tz="UTC")
    start = pd.to_datetime(workzones["start"], utc=True, errors="coerce")
    end = pd.to_datetime(workzones["end"], utc=True, errors="coerce")
    active = (start <= t) & (end.isna() | (end >= t))
    if "night_works" in workzones:
        active &= workzones["night_works"].astype("boolean").fillna(False).astype(bool)
    z = workzones.loc[active.to_numpy()]
    site_col = "site_code" if "site_code" in z else "event_id"
    out = pd.DataFrame(
        {
            "site": z[site_col].astype(str).to_numpy(dtype=object),
            "unit_id": z["unit_id"].astype(str).str.split(";").to_numpy(dtype=object),
            "start": start[active.to_numpy()].to_numpy(),
        }
    ).explode("unit_id")
    out = out[out["unit_id"].notna() & (out["unit_id"] != "")]
    return out.sort_values(["site", "unit_id"], kind="stable").reset_index(drop=True)


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
            t_ns = int(chunk["_t"].max()) * 1_000_000_000
            alerts += engine.level_changes(
                changes,
                t_ns,
                evidence=chunk["event_id"].astype(str).tolist()[-10:],
                workzones=workzones,
            )
            red = live.ids[live.levels() == "red"]
            alerts += engine.workzones_on_red(red, t_ns, workzones)
    if hazards is not None:
        alerts += engine.hazards(hazards)
    return alerts


def to_json(alerts: Sequence[Mapping[str, Any]]) -> str:
    """Alerts as JSON text."""
    return json.dumps(list(alerts), ensure_ascii=False, indent=2)
