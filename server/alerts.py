"""Warning alerts: stored, listed (JSON, GeoJSON, CSV), moved through their states, turned into
hazard investigations.

An alert is what a warning rule (:mod:`trafficunit.warnings`) fired: the rule, the scope and
its id, the units, the evidence (accident ids), the time of the triggering event, and a state
``new -> acknowledged -> dispatched -> resolved`` (every step kept in ``alert_events`` with who
and when). Alert ids are stable (a hash of rule, scope and trigger), so several server
processes evaluating the same accidents store each alert once. The assignee is the unit's
``road_chief`` when the units carry one, else the jurisdiction (``TRAFFICUNIT_LEDGER_
JURISDICTIONS``) the unit lies in. ``POST /alerts/{id}/hazard`` opens a hazard investigation in
the ledger linked both ways (the hazard's external id is ``alert:<id>``; the alert keeps the
hazard id).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypedDict, Unpack

import geopandas as gpd
import shapely
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import ConflictError, Database, NotFoundError, PermissionDenied, Principal
from trafficunit.ledger.lifecycle import allowed

from .errors import BadRequest
from .ledger import PrincipalDep, ReaderDep, ReportDep, acting, service_of

router = APIRouter(tags=["alerts"])

STATES = ("new", "acknowledged", "dispatched", "resolved")
#: The ledger action a role needs to move an alert to each later state (as for hazards:
#: engineers register and assign, supervisors close).
_ACTION_TO = {"acknowledged": "register", "dispatched": "assign", "resolved": "close"}
#: (from, to) -> action: an alert may move on to any later state (the nearest step listed first).
TRANSITIONS = {
    (a, b): action
    for i, (b, action) in enumerate(_ACTION_TO.items(), start=1)
    for a in reversed(STATES[:i])
}
_COLS = (
    "pk, alert_id, rule, scope, scope_id, unit_ids, evidence, detail, time, created_at, state, "
    "assignee, hazard_id, version, change_seq"
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def store_alerts(
    db: Database, alerts: list[dict[str, Any]], assignees: dict[str, str | None]
) -> int:
    """Insert alerts not stored yet (by id); how many were new."""
    if not alerts:
        return 0
    n = 0
    with db.transaction(write=True) as tx:
        seq = tx.next_change()
        now = _now()
        subs = tx.all("SELECT pk, rules FROM subscriptions WHERE state != 'deleted'")
        for a in alerts:
            uid = a["unit_ids"][0] if a["unit_ids"] else None
            added = tx.execute(
                f"INSERT INTO alerts ({_COLS[4:]}) VALUES ({', '.join('?' * 14)}) "
                "ON CONFLICT (alert_id) DO NOTHING",
                (
                    a["id"],
                    a["rule"],
                    a["scope"],
                    a["scope_id"],
                    json.dumps(a["unit_ids"]),
                    json.dumps(a["evidence"]),
                    a.get("detail"),
                    a.get("time"),
                    now,
                    "new",
                    assignees.get(uid) if uid else None,
                    a.get("hazard_id"),
                    1,
                    seq,
                ),
            )
            n += added
            if added:  # queue a webhook delivery per subscription, in the same transaction
                for sub in subs:
                    wanted = json.loads(sub["rules"]) if sub["rules"] else None
                    if wanted is not None and a["rule"] not in wanted:
                        continue
                    tx.execute(
                        "INSERT INTO deliveries (subscription, alert_id, idempotency_key, state, "
                        "attempts, next_at, created_at) VALUES (?, ?, ?, 'pending', 0, 0, ?) "
                        "ON CONFLICT (subscription, alert_id) DO NOTHING",
                        (sub["pk"], a["id"], f"{a['id']}:{sub['pk']}", now),
                    )
    return n


def _record(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": r["alert_id"],
        "rule": r["rule"],
        "scope": r["scope"],
        "scope_id": r["scope_id"],
        "unit_ids": json.loads(r["unit_ids"]),
        "evidence": json.loads(r["evidence"]),
        "detail": r["detail"],
        "time": r["time"],
        "created_at": r["created_at"],
        "state": r["state"],
        "assignee": r["assignee"],
        "hazard_id": r["hazard_id"],
        "version": int(r["version"]),
        "seq": int(r["change_seq"]),
        "n": int(r["pk"]),
    }


class AlertFilters(TypedDict, total=False):
    """What :func:`list_alerts` keeps (a filter absent, None or empty keeps every alert).

    Attributes
    ----------
    rule, state
        Comma lists of rule ids and of states.
    unit_id
        Only alerts on this unit.
    start, end
        Earliest and latest event time.
    after_seq, after_n
        Only alerts changed after this change number, or stored after this alert number.
    """

    rule: str | None
    state: str | None
    unit_id: str | None
    start: str | None
    end: str | None
    after_seq: int | None
    after_n: int | None


#: The filters of :func:`list_alerts` that compare one column with their value.
_COMPARED = {
    "start": "time >= ?",
    "end": "time <= ?",
    "after_seq": "change_seq > ?",
    "after_n": "pk > ?",
}


def list_alerts(
    db: Database, *, limit: int = 1000, newest_first: bool = False, **filters: Unpack[AlertFilters]
) -> list[dict[str, Any]]:
    """Stored alerts, oldest first (newest first with ``newest_first``), kept by ``filters``."""
    unknown = sorted(set(filters) - AlertFilters.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    where: list[str] = []
    params: list[Any] = []
    for col, val in (("rule", filters.get("rule")), ("state", filters.get("state"))):
        if val:
            vals = [v.strip() for v in val.split(",") if v.strip()]
            where.append(f"{col} IN ({','.join('?' * len(vals))})")
            params += vals
    if unit_id := filters.get("unit_id"):
        where.append("unit_ids LIKE ?")
        params.append(f'%"{unit_id}"%')
    for key, condition in _COMPARED.items():
        value = filters.get(key)
        if value is not None and value != "":  # a time must not be empty; a number may be 0
            where.append(condition)
            params.append(value)
    sql = f"SELECT {_COLS} FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += f" ORDER BY pk{' DESC' if newest_first else ''} LIMIT {int(limit)}"
    with db.transaction() as tx:
        return [_record(r) for r in tx.all(sql, params)]


def get_alert(db: Database, alert_id: str) -> dict[str, Any]:
    with db.transaction() as tx:
        r = tx.one(f"SELECT {_COLS} FROM alerts WHERE alert_id = ?", (alert_id,))
        if r is None:
            raise NotFoundError(f"no alert {alert_id!r}")
        out = _record(r)
        out["history"] = tx.all(
            "SELECT from_state, to_state, actor, role, at, comment FROM alert_events "
            "WHERE alert_id = ? ORDER BY pk",
            (alert_id,),
        )
    return out


def transition(
    db: Database, alert_id: str, to: str, who: Principal, comment: str | None, assignee: str | None
) -> dict[str, Any]:
    """Move an alert to ``to``; 403 unless the role may, 409 for an illegal step."""
    if to not in STATES:
        raise BadRequest(f"unknown state {to!r}; states are {', '.join(STATES)}")
    with db.transaction(write=True) as tx:
        r = tx.one(f"SELECT {_COLS} FROM alerts WHERE alert_id = ?", (alert_id,))
        if r is None:
            raise NotFoundError(f"no alert {alert_id!r}")
        action = TRANSITIONS.get((r["state"], to))
        if action is None:
            nxt = [b for (a, b) in TRANSITIONS if a == r["state"]]
            raise ConflictError(
                f"an alert in state {r['state']!r} cannot go to {to!r}; "
                f"allowed: {', '.join(nxt) or 'nothing'}"
            )
        if not allowed(who.role, action):
            raise PermissionDenied(f"role {who.role!r} may not move an alert to {to!r}")
        seq = tx.next_change()
        tx.execute(
            "UPDATE alerts SET state = ?, version = version + 1, change_seq = ?, "
            "assignee = COALESCE(?, assignee) WHERE alert_id = ?",
            (to, seq, assignee, alert_id),
        )
        tx.execute(
            "INSERT INTO alert_events (alert_id, from_state, to_state, actor, role, at, comment) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (alert_id, r["state"], to, who.name, who.role, _now(), comment),
        )
    return get_alert(db, alert_id)


def point_of(request: Request, alert: dict[str, Any]) -> dict[str, Any] | None:
    """Where ``alert`` is drawn (its first unit's middle), as a GeoJSON geometry or None."""
    pt = _centroids(request, [alert])[0]
    return None if pt is None else dict(json.loads(shapely.to_geojson(pt)))


def _centroids(request: Request, alerts: list[dict[str, Any]]) -> list[Any]:
    store = request.app.state.store
    units = store.tables.get("units")
    out: list[Any] = []
    if units is None:
        return [None] * len(alerts)
    idx = units.extra.get("by_id")
    if idx is None:
        import pandas as pd

        idx = pd.Index(units.frame["unit_id"].astype(str))
        units.extra["by_id"] = idx
    geoms = units.frame.geometry.to_numpy()
    for a in alerts:
        pos = idx.get_indexer(a["unit_ids"][:1])[0] if a["unit_ids"] else -1
        if pos < 0:
            out.append(None)
            continue
        g = geoms[pos]
        is_line = g.geom_type in ("LineString", "MultiLineString")
        # the middle of a segment (its ends are intersections), else a point inside
        mid = shapely.line_interpolate_point(g, 0.5, normalized=True) if is_line else None
        out.append(mid if mid is not None else shapely.point_on_surface(g))
    return out


class TransitionIn(BaseModel):
    """An alert's next state."""

    model_config = ConfigDict(extra="forbid")
    to: Literal["acknowledged", "dispatched", "resolved"]
    comment: str | None = Field(default=None, max_length=4000)
    assignee: str | None = Field(default=None, max_length=200, description="dispatched: to whom")


class HazardIn(BaseModel):
    """The hazard investigation an alert opens."""

    model_config = ConfigDict(extra="forbid")
    category: str = Field(default="environment.other", max_length=100)
    grade: Literal["general", "major", "一般", "重大"] | None = None
    description: str | None = Field(default=None, max_length=4000)


@router.get("/alerts", summary="Warning alerts (JSON, GeoJSON or CSV), oldest first")
async def get_alerts(
    request: Request,
    _: ReaderDep,
    rule: Annotated[str | None, Query(description="Rule ids, comma list")] = None,
    state: Annotated[str | None, Query(description="new,acknowledged,dispatched,resolved")] = None,
    unit_id: Annotated[str | None, Query()] = None,
    from_: Annotated[str | None, Query(alias="from", description="Earliest event time")] = None,
    to: Annotated[str | None, Query(description="Latest event time")] = None,
    format: Annotated[Literal["json", "geojson", "csv"], Query()] = "json",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    order: Annotated[
        Literal["oldest", "newest"],
        Query(description="oldest first (default) or newest first (with limit: the latest)"),
    ] = "oldest",
) -> Response:
    svc = service_of(request)
    # the live hooks first: writes of other processes, work zones become active meanwhile
    await run_in_threadpool(request.app.state.store.check)
    rows = await run_in_threadpool(
        list_alerts,
        svc.ledger.db,
        rule=rule,
        state=state,
        unit_id=unit_id,
        start=from_,
        end=to,
        limit=limit,
        newest_first=order == "newest",
    )
    if format == "csv":
        buf = io.StringIO()
        cols = [
            "id",
            "rule",
            "scope",
            "scope_id",
            "unit_ids",
            "evidence",
            "time",
            "state",
            "assignee",
            "hazard_id",
            "detail",
        ]
        w = csv.writer(buf)
        w.writerow(cols)
        for a in rows:
            w.writerow([";".join(a[c]) if isinstance(a[c], list) else a[c] for c in cols])
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
    if format == "geojson":
        pts = _centroids(request, rows)
        feats = [
            {
                "type": "Feature",
                "id": a["id"],
                "properties": {k: v for k, v in a.items() if k != "id"},
                "geometry": None if p is None else json.loads(shapely.to_geojson(p)),
            }
            for a, p in zip(rows, pts, strict=True)
        ]
        return JSONResponse({"type": "FeatureCollection", "features": feats})
    return JSONResponse({"alerts": rows})


@router.get("/alerts/{alert_id}", summary="One alert with its history")
async def get_one(request: Request, alert_id: str, _: ReaderDep) -> JSONResponse:
    svc = service_of(request)
    return JSONResponse(await run_in_threadpool(get_alert, svc.ledger.db, alert_id))


@router.post("/alerts/{alert_id}/transitions", summary="Move an alert to its next state")
async def post_transition(
    request: Request, alert_id: str, body: TransitionIn, who: PrincipalDep
) -> JSONResponse:
    svc = service_of(request)
    out = await run_in_threadpool(
        transition, svc.ledger.db, alert_id, body.to, who, body.comment, body.assignee
    )
    svc.note_write()
    return JSONResponse(out)


def _open_hazard(request: Request, alert_id: str, body: HazardIn, who: Principal) -> dict[str, Any]:
    svc = service_of(request)
    db = svc.ledger.db
    alert = get_alert(db, alert_id)
    if alert["hazard_id"]:
        raise ConflictError(f"alert {alert_id} already opened hazard {alert['hazard_id']}")
    pts = _centroids(request, [alert])
    if pts[0] is None:
        raise BadRequest(f"alert {alert_id} has no unit to place a hazard on")
    text = body.description or f"investigation of alert {alert_id} ({alert['rule']}: " + (
        f"{alert['detail']}; evidence {', '.join(alert['evidence'][:10])})"
    )
    res = svc.ledger.report(
        pts[0],
        category=body.category,
        **acting(who),
        grade=body.grade,
        description=text,
        source="crash_analysis",
        external_id=f"alert:{alert_id}",
        link_duplicates=False,
    )
    hid = res.hazard.id
    with db.transaction(write=True) as tx:
        seq = tx.next_change()
        tx.execute(
            "UPDATE alerts SET hazard_id = ?, version = version + 1, change_seq = ? "
            "WHERE alert_id = ?",
            (hid, seq, alert_id),
        )
    svc.note_write()
    out = get_alert(db, alert_id)
    out["hazard"] = res.hazard.to_feature()
    return out


@router.post(
    "/alerts/{alert_id}/hazard",
    summary="Open a hazard investigation from an alert (linked both ways)",
    status_code=201,
)
async def post_hazard(
    request: Request,
    alert_id: str,
    body: HazardIn,
    who: ReportDep,
) -> JSONResponse:
    out = await run_in_threadpool(_open_hazard, request, alert_id, body, who)
    return JSONResponse(out, status_code=201)


def assignees(svc: Any, units: gpd.GeoDataFrame | None) -> dict[str, str | None]:
    """Unit id -> assignee: the unit's road chief, else its jurisdiction (when configured)."""
    if units is None or not len(units):
        return {}
    ids = units["unit_id"].astype(str).to_numpy()
    if "road_chief" in units:
        chief = units["road_chief"].astype(object).where(units["road_chief"].notna(), None)
        return dict(zip(ids, chief.to_numpy(), strict=True))
    # the data folder's jurisdiction tree: the unit's zone at the deepest administrative level
    # it has (in a nested tree, deeper levels have more zones)
    admin = [c for c in units.columns if str(c).startswith("zone_admin_")]
    if admin:
        deepest_first = sorted(admin, key=lambda c: units[c].nunique(), reverse=True)
        codes = units[deepest_first].astype(object).bfill(axis=1).iloc[:, 0]
        return {
            u: (None if z is None or z != z else str(z)) for u, z in zip(ids, codes, strict=True)
        }
    zones = getattr(svc, "zones", None)
    if zones is None:
        return {}
    pts = gpd.GeoDataFrame(
        {"unit_id": ids}, geometry=units.geometry.representative_point().to_numpy(), crs=units.crs
    ).to_crs(4326)
    hit = gpd.sjoin(pts, zones[[svc.zone_field, zones.geometry.name]], predicate="within")
    hit = hit.drop_duplicates("unit_id")
    return dict(zip(hit["unit_id"], hit[svc.zone_field].astype(str), strict=True))
