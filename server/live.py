"""The live loop inside the server: accidents posted, levels kept current, a level history.

:class:`LiveService` holds a :class:`trafficunit.live.LiveRisk` over the data folder's units
and keeps the served units current:

- ``POST /accidents`` parses GeoJSON with :func:`trafficunit.read_events`, joins it with
  :func:`trafficunit.assign` (the ledger's unit index), stores the new accidents in the
  ledger's database (SQLite or PostgreSQL; acknowledged only once committed) and applies them;
- a store hook (run before every request is answered) replays accidents stored by other
  server processes (by change sequence) and re-reads the ledger's open hazards when a hazard
  was written, so a major hazard raises its unit by two levels at once;
- changed units are written back into the units table (its frame and pre-serialised GeoJSON,
  the legend counts) and the ``live-units`` tile layer (new columns, same geometry index); the
  data version moves with the ledger's change sequence, so ETags and tile caches turn over;
- level changes are recorded in ``level_history`` (unit, from, to, at, reason).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import threading
import time
import warnings
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

import trafficunit as tu
from trafficunit.errors import TrafficUnitError
from trafficunit.ledger import Principal
from trafficunit.ledger import accidents as acc_db
from trafficunit.live import LIVE_MEASURES, LevelChange, LiveRisk
from trafficunit.tiles import json_values
from trafficunit.warnings import Engine, load_rules

from . import alerts as alerts_mod
from .errors import BadRequest
from .ledger import LedgerService, needs
from .store import LIST_EXCLUDE, DataStore, Table, _json_ready

log = logging.getLogger("trafficunit.server.live")

router = APIRouter(tags=["live"])

#: Columns every live units table carries (added when a hand-made units table lacks them).
CORE_COLUMNS = ("crashes", "epdo", "open_hazards", "open_major_hazards", "level_rank", "level")
_OFFSET = re.compile(r"(Z|[+-]\d\d:?\d\d)$", re.IGNORECASE)
_MAX_ITEMS = 10_000
_NO_TIME = np.iinfo(np.int64).max // 2  # counted (after any period start)


class LiveService:
    """Live levels over the store's units, fed by the ledger's database."""

    def __init__(self, svc: LedgerService) -> None:
        self.svc = svc
        self.db = svc.ledger.db
        self.app_state: Any = None  # the app's state: its operations service names road chiefs
        self.risk: LiveRisk | None = None
        self._table: Table | None = None
        self._lock = threading.RLock()
        self._acc_seq = 0
        self._hz_seq = -1
        self._seen = -1
        self._base_ids = pd.Index([], dtype=object)
        self._layer_pos: np.ndarray | None = None
        self._splice: _Splice | None = None
        path = svc.settings.ledger.warning_rules
        self.rules = load_rules(path)  # invalid rules stop the server with the reason
        self.engine: Engine | None = None
        self.assignees: dict[str, str | None] = {}
        self._wz_seq = -1
        self._wz_tick = 0.0
        self._wz_frame: pd.DataFrame | None = None
        self._wz_base: Any = None

    # -- binding to the store's units
    def _bind(self, store: DataStore, table: Table | None) -> None:
        self._table = table
        self.risk = None
        self._acc_seq, self._hz_seq, self._seen = 0, -1, -1
        if table is None:
            return
        if "level" not in table.frame.columns and "level_rank" not in table.frame.columns:
            # unscored units get no level from the live loop either (never a made-up blue):
            # accidents are still stored and counted once the folder is scored
            log.warning("units are not scored (run `trafficunit risk`): live levels are off")
            return
        rule = store.rule()
        self.risk = LiveRisk(table.frame, rule if rule.get("scheme") else rule or None)
        self.engine = Engine(self.rules, table.frame, epdo_weights=self.risk.cfg.epdo_weights)
        self.engine.workzone_pairs = _alerted_pairs(self.db)
        self._wz_seq = -1
        self.assignees = alerts_mod.assignees(self.svc, table.frame)
        acc = store.tables.get("accidents")
        ids = acc.frame["event_id"].astype(str).to_numpy(dtype=object) if acc is not None else []
        self._base_ids = pd.Index(ids).unique()
        f = table.frame
        missing = [c for c in CORE_COLUMNS if c not in f.columns]
        rows = np.arange(len(f))
        if missing:
            cols = self.risk.columns(rows)
            for c in missing:
                f[c] = cols[c]
        self._splice = _Splice(table)
        layer = store.live.get("units")
        if layer is not None:
            self._layer_pos = self.risk.positions(layer.frame["unit_id"].astype(str).to_numpy())

    def _assignees(self, store: DataStore, fired: list[dict[str, Any]]) -> dict[str, str | None]:
        """Who gets each alert: the road chief appointed now (the registry), else the unit's own
        ``road_chief`` column or jurisdiction (:func:`trafficunit_server.alerts.assignees`)."""
        out = dict(self.assignees)
        ops = getattr(self.app_state, "ops", None)
        ids = {str(a["unit_ids"][0]) for a in fired if a.get("unit_ids")}
        if ops is None or not ids:
            return out
        units = ops.units(store)
        if units is None:
            return out
        from trafficunit.ledger import roadchiefs as rc

        chiefs = rc.chiefs_for_units(
            rc.list_chiefs(ops.ledger), units, unit_zones=ops.unit_zones(store)
        )
        named = chiefs["road_chief"].reindex(list(ids))
        out.update({str(u): str(c) for u, c in named.dropna().items()})
        return out

    def _in_base(self, ids: pd.Series) -> np.ndarray:
        """Which ids are accidents of the data folder's own table (already counted)."""
        if not len(self._base_ids):
            return np.zeros(len(ids), dtype=bool)
        values = ids.astype(str).to_numpy(dtype=object)
        return np.asarray(self._base_ids.get_indexer(pd.Index(values)) >= 0)

    # -- keeping current
    def hook(self, store: DataStore) -> None:
        """Store hook: bind to new units, replay new accidents and hazard changes."""
        table = store.tables.get("units")
        seq = self.svc._known_seq
        if table is self._table and seq == self._seen:
            return
        tick = time.monotonic() - self._wz_tick >= WORKZONE_CHECK_S
        if table is self._table and seq == self._seen and not tick:
            return
        with self._lock:
            if table is not self._table:
                self._bind(store, table)
            if self.risk is None:
                return
            if seq != self._seen:
                self._apply(store, seq)
            self._check_workzones(store)

    def workzones(self, store: DataStore) -> pd.DataFrame | None:
        """The data folder's work zones and those registered through the API (site_code,
        unit_id ``;``-joined, start, end, night_works); re-read when a site is written."""
        with self.db.transaction() as tx:
            seq = int(tx.scalar("SELECT COALESCE(MAX(change_seq), 0) AS s FROM workzones") or 0)
        base = store.tables.get("workzones")
        if seq == self._wz_seq and base is self._wz_base:
            return self._wz_frame
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT site_code, unit_ids, start_at, end_at, night_works FROM workzones "
                "ORDER BY site_code"
            )
        reg = pd.DataFrame(
            {
                "site_code": [r["site_code"] for r in rows],
                "unit_id": [r["unit_ids"] for r in rows],
                "start": pd.to_datetime([r["start_at"] for r in rows], utc=True),
                "end": pd.to_datetime([r["end_at"] for r in rows], utc=True),
                "night_works": pd.array(
                    [None if r["night_works"] is None else bool(r["night_works"]) for r in rows],
                    dtype="boolean",
                ),
            }
        )
        parts = [reg] if len(reg) else []
        if base is not None and {"unit_id", "start", "end"} <= set(base.frame.columns):
            f = base.frame
            cols = [c for c in ("site_code", "event_id", "unit_id", "start", "end") if c in f]
            own = pd.DataFrame(f[cols]).copy()
            if "site_code" not in own:
                own["site_code"] = own.get("event_id")
            own["night_works"] = (
                f["night_works"].astype("boolean").to_numpy()
                if "night_works" in f
                else pd.array([pd.NA] * len(f), dtype="boolean")
            )
            for c in ("start", "end"):
                own[c] = pd.to_datetime(own[c], utc=True, errors="coerce")
            parts.append(own[["site_code", "unit_id", "start", "end", "night_works"]])
        frame = pd.concat(parts, ignore_index=True) if parts else None
        self._wz_seq, self._wz_base, self._wz_frame = seq, base, frame
        return frame

    def _check_workzones(self, store: DataStore) -> None:
        """night-workzone-on-red now (wall clock): a night work zone registered on, or
        become active on, a unit that is red already."""
        self._wz_tick = time.monotonic()
        risk, engine = self.risk, self.engine
        if risk is None or engine is None:
            return
        red = risk.ids[risk.levels() == "red"]
        fired = engine.workzones_on_red(red, time.time_ns(), self.workzones(store))
        if fired:
            alerts_mod.store_alerts(self.db, fired, self._assignees(store, fired))

    def _apply(self, store: DataStore, seq: int) -> list[LevelChange]:
        risk = self.risk
        assert risk is not None
        changes: list[LevelChange] = []
        new = acc_db.accidents_since(self.db, self._acc_seq)
        fired: list[dict[str, Any]] = []
        engine = self.engine
        assert engine is not None
        wz = self.workzones(store)
        if len(new):
            new = new[~self._in_base(new["event_id"])]
            new["_t"] = new["t_ns"].astype("Int64") // 1_000_000_000
            new["_eid"] = new["event_id"].astype(str)
            for cseq, grp in new.groupby("change_seq", sort=True):
                grp = grp.sort_values(["_t", "_eid"], kind="stable")
                ev = _events(grp)
                fired += engine.feed(ev)
                t_s = grp["_t"].astype("float64").to_numpy()
                got = risk.add_accidents(
                    grp["unit_id"].astype(object).to_numpy(),
                    grp["severity"].astype(object).to_numpy(),
                    np.where(np.isnan(t_s), np.iinfo(np.int64).max // 2, t_s * 1e9).astype(
                        np.int64
                    ),
                    reason="accident",
                )
                if got:
                    ids = ", ".join(grp["event_id"].astype(str).head(3))
                    more = f" and {len(grp) - 3} more" if len(grp) > 3 else ""
                    got = [
                        LevelChange(c.unit_id, c.from_level, c.to_level, f"accident {ids}{more}")
                        for c in got
                    ]
                    acc_db.record_levels(self.db, got, int(cast(int, cseq)))
                    changes += got
                    fired += engine.level_changes(
                        got,
                        int(np.nanmax(t_s)) * 1_000_000_000,
                        evidence=grp["_eid"].tolist()[-10:],
                        workzones=wz,
                    )
                if np.isfinite(t_s).any():  # as in batch (tu.warnings.evaluate): per write
                    red = risk.ids[risk.levels() == "red"]
                    t_ns = int(np.nanmax(t_s)) * 1_000_000_000
                    fired += engine.workzones_on_red(red, t_ns, wz)
            self._acc_seq = int(new["change_seq"].max()) if len(new) else self._acc_seq
        hz_seq = acc_db.hazard_seq(self.db)
        if hz_seq != self._hz_seq:
            frame = self.svc.ledger.frame()
            open_ = frame[
                frame["status"].isin(("reported", "registered", "assigned", "rectifying"))
            ]
            got = risk.set_hazards(pd.DataFrame(open_.drop(columns="geometry")), reason="hazard")
            if got and self._hz_seq >= 0:
                got = [
                    LevelChange(c.unit_id, c.from_level, c.to_level, _hazard_reason(c, open_))
                    for c in got
                ]
                acc_db.record_levels(self.db, got, hz_seq)
                changes += got
            fired += engine.hazards(frame)
            self._hz_seq = hz_seq
        if fired:
            alerts_mod.store_alerts(self.db, fired, self._assignees(store, fired))
        self._seen = seq
        rows = risk.drain()
        if len(rows) and self._table is not None:
            self._writeback(store, self._table, rows)
        return changes

    def _writeback(self, store: DataStore, table: Table, rows: np.ndarray) -> None:
        risk = self.risk
        assert risk is not None
        f = table.frame
        cols = risk.columns(rows)
        present = {c: v for c, v in cols.items() if c in f.columns}
        for c, v in present.items():
            f.iloc[rows, f.columns.get_loc(c)] = v
        if self._splice is not None:
            self._splice.update(table, rows)
        table.extra.pop("priority", None)
        layer = store.live.get("units")
        if layer is not None and self._layer_pos is not None:
            pos = self._layer_pos
            ok = pos >= 0
            updates: dict[str, Any] = {}
            names = {c.name for c in layer.columns}
            for c in ("level", "level_rank", "colour", "crashes", "epdo"):
                if c not in names:
                    continue
                full = layer.frame[c].to_numpy(copy=True)
                vals = risk.columns(pos[ok])[c]
                full[ok] = vals
                updates[c] = pd.Series(full, index=layer.frame.index).astype(layer.frame[c].dtype)
            if updates:
                store.live["units"] = layer.with_columns(updates)

    # -- ingest
    def ingest(
        self,
        store: DataStore,
        body: Any,
        *,
        actor: str,
        all_or_nothing: bool,
        tz: str | None,
    ) -> tuple[int, dict[str, Any]]:
        """Parse, join, store and apply posted accidents: (status, response body)."""
        feats = _features(body)
        n = len(feats)
        if n > _MAX_ITEMS:
            raise BadRequest(f"{n} features in one request; send at most {_MAX_ITEMS}")
        items: list[dict[str, Any]] = [{"index": i} for i in range(n)]
        props: list[dict[str, Any]] = []
        lon = np.full(n, np.nan)
        lat = np.full(n, np.nan)
        for i, feat in enumerate(feats):
            reason, p, xy = _check_feature(feat, tz)
            items[i]["event_id"] = p.get("event_id") if isinstance(p, dict) else None
            if reason:
                items[i]["reason"] = reason
                props.append({})
                continue
            props.append(p)
            lon[i], lat[i] = xy
        ok = np.array(["reason" not in it for it in items], dtype=bool)
        frame = pd.DataFrame([props[i] for i in np.flatnonzero(ok)])
        frame["_row"] = np.flatnonzero(ok)
        frame["_lon"] = lon[ok]
        frame["_lat"] = lat[ok]
        events = None
        if ok.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    # event_id is named: the reader takes an unnamed id column only when its
                    # ids are unique, and a batch may repeat one (a duplicate, reported below)
                    events = tu.read_events(
                        frame,
                        kind="accident",
                        x="_lon",
                        y="_lat",
                        crs=4326,
                        tz=tz,
                        event_id="event_id" if "event_id" in frame else None,
                    )
                except TrafficUnitError as exc:
                    raise BadRequest(str(exc)) from exc
            for r, why in events.attrs.get("dropped_rows", {}).items():
                i = int(frame["_row"].iloc[int(r)])
                if why == "duplicate id":  # repeated in the batch: stored once
                    items[i]["status"] = "duplicate"
                else:
                    items[i]["reason"] = why
        joined = None
        if events is not None and len(events):
            if "severity" not in events or events["severity"].isna().any():
                for i in events.loc[events["severity"].isna(), "_row"]:
                    items[int(i)]["reason"] = "no severity (KABCO letter or a known class)"
            index = self.svc.ledger._units
            if index is None:
                raise BadRequest("the server has no units to join accidents to")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                joined = tu.assign(index, events.drop(columns=["_lon", "_lat"], errors="ignore"))
            joined = joined.drop_duplicates("event_id")
            for i, uid in zip(joined["_row"], joined["unit_id"], strict=True):
                if pd.isna(uid):
                    items[int(i)].setdefault("reason", "no unit within the join distance")
                else:
                    items[int(i)]["unit_id"] = str(uid)
        bad = [it for it in items if "reason" in it]
        for it in bad:
            it["status"] = "rejected"
        if bad and all_or_nothing:
            return 422, _summary(items, stored=0, all_or_nothing=True)
        stored_n = 0
        if joined is not None and len(joined):
            good = joined[joined["_row"].map(lambda i: "reason" not in items[int(i)])]
            base_dup = self._in_base(good["event_id"])
            for i in good.loc[base_dup, "_row"]:
                items[int(i)]["status"] = "duplicate"
            good = good.loc[~base_dup]
            rows = _rows(good)
            batch = acc_db.store_accidents(self.db, rows, actor=actor)
            for i, new in zip(good["_row"], batch.stored, strict=True):
                items[int(i)]["status"] = "stored" if new else "duplicate"
            stored_n = int(batch.stored.sum())
            if stored_n:
                self.svc.note_write()
                store.check()  # hooks: the new accidents are applied before we answer
        for it in items:
            it.setdefault("status", "duplicate" if "reason" not in it else "rejected")
        status = (
            200 if not bad or stored_n or any(it["status"] == "duplicate" for it in items) else 422
        )
        return status, _summary(items, stored=stored_n, all_or_nothing=all_or_nothing)


#: Seconds between checks for night work zones that became active on red units.
WORKZONE_CHECK_S = 60.0


def _alerted_pairs(db: Any) -> set[tuple[str, str]]:
    """(site, unit) of stored night-workzone-on-red alerts (not fired again after a restart)."""
    rows = alerts_mod.list_alerts(db, rule="night-workzone-on-red", limit=100_000)
    return {(str(a["evidence"][-1]), str(a["scope_id"])) for a in rows if a["evidence"]}


def _events(grp: pd.DataFrame) -> pd.DataFrame:
    """Stored accidents as the warning engine reads them (properties unpacked)."""
    props = pd.DataFrame([json.loads(p) for p in grp["properties"]], index=grp.index)
    ev = pd.DataFrame(
        {
            "event_id": grp["_eid"],
            "unit_id": grp["unit_id"],
            "severity": grp["severity"],
            "_t": grp["_t"],
            "hour": grp["hour"],
        }
    )
    for c in ("collision_type", "light"):
        ev[c] = props.get(c, None)
    return ev


def _summary(items: list[dict[str, Any]], *, stored: int, all_or_nothing: bool) -> dict[str, Any]:
    counts = {"stored": 0, "duplicate": 0, "rejected": 0}
    for it in items:
        counts[it.get("status", "rejected")] = counts.get(it.get("status", "rejected"), 0) + 1
    out: dict[str, Any] = {
        "received": len(items),
        "stored": stored,
        "duplicates": counts["duplicate"],
        "rejected": counts["rejected"],
        "items": items,
    }
    if all_or_nothing and counts["rejected"]:
        out["detail"] = (
            f"{counts['rejected']} of {len(items)} accidents are invalid; nothing was stored "
            "(all_or_nothing=true)"
        )
    return out


def _hazard_reason(change: LevelChange, open_: pd.DataFrame) -> str:
    on = open_[
        open_["unit_id"]
        .astype("string")
        .str.split(";")
        .map(lambda ids: isinstance(ids, list) and change.unit_id in ids)
    ]
    if not len(on):
        return "hazard closed"
    grades = on["grade"].fillna("general").astype(str)
    ids = ", ".join(on["event_id"].astype(str).head(3))
    return f"open hazard(s) {ids} ({', '.join(sorted(set(grades)))})"


def _features(body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a GeoJSON Feature or FeatureCollection object")
    kind = body.get("type")
    if kind == "Feature":
        return [body]
    if kind == "FeatureCollection":
        feats = body.get("features")
        if not isinstance(feats, list):
            raise BadRequest("a FeatureCollection needs a 'features' array")
        return feats
    raise BadRequest(f"the body must be a GeoJSON Feature or FeatureCollection, got type {kind!r}")


def _check_feature(feat: Any, tz: str | None) -> tuple[str | None, dict[str, Any], Any]:
    """(reason it is unusable or None, its properties, (lon, lat))."""
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        return "not a GeoJSON Feature", {}, None
    p = feat.get("properties")
    if not isinstance(p, dict):
        return "no properties object", {}, None
    p = dict(p)
    if feat.get("id") is not None and p.get("event_id") is None:
        p["event_id"] = feat["id"]
    if p.get("event_id") in (None, ""):
        return "no event_id (accidents are idempotent by event_id)", p, None
    p["event_id"] = str(p["event_id"])
    g = feat.get("geometry")
    if not isinstance(g, dict) or g.get("type") != "Point":
        return "the geometry must be a GeoJSON Point", p, None
    c = g.get("coordinates")
    if (
        not isinstance(c, list)
        or len(c) < 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in c[:2])
        or not all(math.isfinite(v) for v in c[:2])
        or not (-180 <= c[0] <= 180 and -90 <= c[1] <= 90)
    ):
        return "the Point needs finite [lon, lat] coordinates in EPSG:4326", p, None
    t = p.get("time")
    if t in (None, ""):
        return "no time", p, None
    if not isinstance(t, str):
        return "time must be ISO 8601 text", p, None
    if tz is None and "T" in t and not _OFFSET.search(t.strip()):
        return "time has no UTC offset; add one (e.g. +02:00) or pass ?tz=Area/City", p, None
    return None, p, (float(c[0]), float(c[1]))


def _rows(good: pd.DataFrame) -> pd.DataFrame:
    t = pd.to_datetime(good["time"], utc=True, errors="coerce")
    t_ns = t.dt.as_unit("ns").astype("int64").where(t.notna(), None)
    geoms = np.asarray(good.geometry.array)
    xy = shapely.get_coordinates(geoms)
    keep = [c for c in good.columns if c not in ("geometry", "_row", "unit_id", "match")]
    recs = _json_ready(pd.DataFrame(good[keep])).to_dict("records")
    return pd.DataFrame(
        {
            "event_id": good["event_id"].astype(str).to_numpy(),
            "unit_id": good["unit_id"].astype(object).to_numpy(),
            "severity": good["severity"].astype(object).to_numpy(),
            "time": t.dt.strftime("%Y-%m-%dT%H:%M:%S%z").where(t.notna(), None).to_numpy(),
            "t_ns": t_ns.to_numpy(),
            "hour": good["hour"].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            if "hour" in good
            else np.nan,
            "lon": xy[:, 0],
            "lat": xy[:, 1],
            "distance_m": good["distance_m"].to_numpy(dtype=float, na_value=np.nan)
            if "distance_m" in good
            else np.nan,
            "properties": [acc_db.properties_json({str(k): v for k, v in r.items()}) for r in recs],
        }
    )


class _Splice:
    """The units' GeoJSON texts as ``head + live properties + tail`` per row, so the live
    columns of many rows are re-serialised at once with Arrow kernels (no per-row Python).

    Built once per units table: the texts are rebuilt with the live columns last among the
    properties; ``head`` ends where they start and ``tail`` holds the rest of the feature.
    """

    def __init__(self, table: Table) -> None:
        f = table.frame
        props = _json_ready(f.drop(columns=[f.geometry.name]))
        self.live = [c for c in LIVE_MEASURES if c in props.columns]
        static = [c for c in props.columns if c not in self.live]
        geoms = np.asarray(f.geometry.array)
        geo = pa.array(shapely.to_geojson(shapely.set_precision(geoms, 1e-7)), pa.string())
        ids = json_values(f["unit_id"].astype(str))
        self.parts: dict[str, tuple[pa.Array, pa.Array]] = {}
        for attr, cols in (
            ("features_all", static),
            ("features", [c for c in static if c not in LIST_EXCLUDE]),
        ):
            if attr == "features_all" and table.features_all is None:
                continue
            head = ['{"type":"Feature","id":', ids, ',"properties":{']
            for k, col in enumerate(cols):
                head += [("," if k else "") + json.dumps(str(col)) + ":", json_values(props[col])]
            if cols and self.live:
                head.append(",")
            head_arr = pc.binary_join_element_wise(*head, "")
            tail_arr = pc.binary_join_element_wise('},"geometry":', geo, "}", "")
            self.parts[attr] = (head_arr, tail_arr)
        self.update(table, np.arange(len(f)))

    def update(self, table: Table, rows: np.ndarray) -> None:
        """Re-serialise the live properties of ``rows`` from the table's frame."""
        if not len(rows):
            return
        sub = _json_ready(table.frame[self.live].iloc[rows])
        pieces: list[Any] = []
        for k, col in enumerate(self.live):
            pieces += [("," if k else "") + json.dumps(col) + ":", json_values(sub[col])]
        live = pc.binary_join_element_wise(*pieces, "") if pieces else pa.array([""] * len(rows))
        take = pa.array(rows)
        for attr, (head, tail) in self.parts.items():
            texts = pc.binary_join_element_wise(head.take(take), live, tail.take(take), "")
            out = getattr(table, attr)
            out = out.copy() if len(rows) < len(out) else np.empty(len(out), dtype=object)
            out[rows] = np.asarray(texts.cast(pa.binary()).to_numpy(zero_copy_only=False))
            setattr(table, attr, out)


# -- wiring


def live_of(request: Request) -> LiveService:
    """The app's live service (503 before the ledger is open)."""
    live: LiveService | None = getattr(request.app.state, "live", None)
    if live is None:
        raise BadRequest("the live loop is not running (no ledger)")
    return live


@contextlib.asynccontextmanager
async def live_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the live service after the ledger (its hook runs after the ledger's)."""
    svc: LedgerService | None = getattr(app.state, "ledger", None)
    store: DataStore = app.state.store
    if svc is None:
        yield
        return
    live = LiveService(svc)
    live.app_state = app.state
    app.state.live = live
    store.hooks.append(live.hook)
    try:
        await run_in_threadpool(store.check)
        yield
    finally:
        with contextlib.suppress(ValueError):
            store.hooks.remove(live.hook)


@router.post(
    "/accidents",
    summary="Post accidents (GeoJSON Feature or FeatureCollection); idempotent by event_id",
    description="Fields and severity vocabulary as `tu.read_events` (KABCO letters, English and "
    "Chinese classes); each accident needs `event_id`, `time` (ISO 8601 with a UTC offset, or "
    "pass `tz`) and a Point. Accidents are joined to units as `tu.assign` does, stored in the "
    "ledger's database, then counted in the units' measures and levels before the answer. "
    "Per item: `stored`, `duplicate` or `rejected` with a reason; with `all_or_nothing=true` "
    "one bad item refuses the batch (422). Role `ingest`, `engineer` or above.",
    status_code=200,
)
async def post_accidents(
    request: Request,
    who: Annotated[Principal, Depends(needs("ingest"))],
    all_or_nothing: Annotated[
        bool, Query(description="Refuse the batch if any item is bad")
    ] = False,
    tz: Annotated[str | None, Query(description="Time zone of times without an offset")] = None,
) -> JSONResponse:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON ({exc})") from exc
    live = live_of(request)
    store: DataStore = request.app.state.store
    status, out = await run_in_threadpool(
        live.ingest, store, body, actor=who.name, all_or_nothing=all_or_nothing, tz=tz
    )
    return JSONResponse(out, status_code=status, headers={"X-Data-Version": store.version})


@router.get("/levels/history", summary="Level changes of the units (newest first)")
async def get_level_history(
    request: Request,
    unit_id: Annotated[str | None, Query(description="Only this unit")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> JSONResponse:
    live = live_of(request)
    rows = await run_in_threadpool(acc_db.level_history, live.db, unit_id, limit=limit)
    return JSONResponse({"changes": rows})
