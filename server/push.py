"""Push: alerts as server-sent events, and webhooks with signed bodies and durable retries.

``GET /alerts/stream`` sends each new alert as an SSE event whose id is the alert's sequence
number; a client that reconnects with ``Last-Event-ID`` gets every alert after it.

``POST /subscriptions`` registers a webhook. Each new alert queues one delivery per
subscription in the same database transaction that stores the alert (so a restart loses
none). A delivery worker in every server process posts due deliveries:

- the body is the alert as JSON, signed ``X-TrafficUnit-Signature: sha256=<hex HMAC-SHA256 of
  the body with the subscription's secret>``; ``Idempotency-Key`` is fixed per alert and
  subscriber, so a receiver can drop a repeat (delivery is at least once);
- a failure (non-2xx, timeout, refused) is retried with exponential back-off and jitter
  (``base * 2^attempt``, capped, times 1-1.5); every attempt is logged
  (``GET /subscriptions/{id}/deliveries``);
- after ``max_failures`` consecutive failures the subscription is paused with the reason;
  its deliveries keep queueing and resume with ``POST /subscriptions/{id}/resume``.

Deliveries are claimed with a lease (their ``next_at`` moved ahead in a write transaction), so
several server processes never post the same delivery at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from trafficunit.errors import clip
from trafficunit.ledger import Database, NotFoundError, Principal

from . import alerts as alerts_mod
from .errors import BadRequest
from .ledger import LedgerService, ReaderDep, needs, service_of

log = logging.getLogger("trafficunit.server.push")
router = APIRouter(tags=["alerts"])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class SubscriptionIn(BaseModel):
    """A webhook subscription."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000, description="http(s) URL the alerts are POSTed to")
    secret: str | None = Field(
        default=None, min_length=16, max_length=200, description="HMAC key (default: generated)"
    )
    rules: list[str] | None = Field(default=None, description="Only these rule ids")
    label: str | None = Field(default=None, max_length=200)


def _sub(r: dict[str, Any], *, secret: bool = False) -> dict[str, Any]:
    out = {
        "id": int(r["pk"]),
        "url": r["url"],
        "rules": json.loads(r["rules"]) if r["rules"] else None,
        "label": r["label"],
        "state": r["state"],
        "paused_reason": r["paused_reason"],
        "failures": int(r["failures"]),
        "created_at": r["created_at"],
    }
    if secret:
        out["secret"] = r["secret"]
    return out


def create_subscription(db: Database, body: SubscriptionIn, who: Principal) -> dict[str, Any]:
    u = urlparse(body.url)
    if u.scheme not in ("http", "https") or not u.netloc:
        raise BadRequest(f"url must be an http(s) URL, got {body.url!r}")
    key = body.secret or secrets.token_urlsafe(32)
    with db.transaction(write=True) as tx:
        new = tx.one(
            "INSERT INTO subscriptions (url, secret, rules, label, state, paused_reason, "
            "failures, created_at, created_by) VALUES (?, ?, ?, ?, 'active', NULL, 0, ?, ?) "
            "RETURNING pk",
            (
                body.url,
                key,
                json.dumps(body.rules) if body.rules else None,
                body.label,
                _now(),
                who.name,
            ),
        )
        assert new is not None
        row = tx.one("SELECT * FROM subscriptions WHERE pk = ?", (new["pk"],))
    assert row is not None
    return _sub(row, secret=True)


def _get_sub(db: Database, sub_id: int) -> dict[str, Any]:
    with db.transaction() as tx:
        row = tx.one("SELECT * FROM subscriptions WHERE pk = ? AND state != 'deleted'", (sub_id,))
    if row is None:
        raise NotFoundError(f"no subscription {sub_id}")
    return row


def deliveries(db: Database, sub_id: SubId, limit: int) -> list[dict[str, Any]]:
    """A subscription's deliveries with their attempts (the delivery log)."""
    _get_sub(db, sub_id)
    with db.transaction() as tx:
        rows = tx.all(
            "SELECT pk, alert_id, idempotency_key, state, attempts, next_at, last_status, "
            "last_error, created_at, delivered_at FROM deliveries WHERE subscription = ? "
            f"ORDER BY pk LIMIT {int(limit)}",
            (sub_id,),
        )
        for r in rows:
            r["log"] = tx.all(
                "SELECT at, status, error, duration_ms FROM delivery_attempts "
                "WHERE delivery = ? ORDER BY pk",
                (r["pk"],),
            )
            r["id"] = r.pop("pk")
    return rows


class Deliverer:
    """Posts due webhook deliveries; retries with back-off; pauses failing subscriptions."""

    def __init__(
        self,
        db: Database,
        *,
        base_s: float,
        cap_s: float,
        timeout_s: float,
        max_failures: int,
        lease_s: float = 30.0,
    ) -> None:
        self.db = db
        self.base_s = base_s
        self.cap_s = cap_s
        self.timeout_s = timeout_s
        self.max_failures = max_failures
        self.lease_s = lease_s

    def claim(self, limit: int = 50) -> list[dict[str, Any]]:
        """Due deliveries of active subscriptions, leased to this process."""
        now = time.time()
        with self.db.transaction(write=True) as tx:
            rows = tx.all(
                "SELECT d.pk, d.alert_id, d.idempotency_key, d.attempts, s.pk AS sub, s.url, "
                "s.secret FROM deliveries d JOIN subscriptions s ON s.pk = d.subscription "
                "WHERE d.state = 'pending' AND s.state = 'active' AND d.next_at <= ? "
                f"ORDER BY d.pk LIMIT {int(limit)}",
                (now,),
            )
            for r in rows:
                tx.execute(
                    "UPDATE deliveries SET next_at = ? WHERE pk = ?", (now + self.lease_s, r["pk"])
                )
        return rows

    def post(self, d: dict[str, Any]) -> tuple[int | None, str | None, float]:
        """POST one delivery: (HTTP status or None, error text or None, milliseconds)."""
        alert = alerts_mod.get_alert(self.db, d["alert_id"])
        alert.pop("history", None)
        body = json.dumps(
            {"type": "alert", "idempotency_key": d["idempotency_key"], "alert": alert},
            ensure_ascii=False,
            sort_keys=True,
        ).encode()
        sig = hmac.new(d["secret"].encode(), body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(
            d["url"],
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-TrafficUnit-Signature": f"sha256={sig}",
                "Idempotency-Key": d["idempotency_key"],
                "X-TrafficUnit-Delivery": str(d["pk"]),
                "User-Agent": "trafficunit-webhooks",
            },
        )
        t = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                status = int(resp.status)
            err = None if 200 <= status < 300 else f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            status, err = int(exc.code), f"HTTP {exc.code}"
        except Exception as exc:  # timeouts, refused connections, DNS
            status, err = None, f"{type(exc).__name__}: {exc}"
        return status, err, (time.perf_counter() - t) * 1000.0

    def record(self, d: dict[str, Any], status: int | None, err: str | None, ms: float) -> None:
        now = _now()
        attempts = int(d["attempts"]) + 1
        with self.db.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO delivery_attempts (delivery, at, status, error, duration_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                (d["pk"], now, status, err, ms),
            )
            if err is None:
                tx.execute(
                    "UPDATE deliveries SET state = 'delivered', attempts = ?, last_status = ?, "
                    "last_error = NULL, delivered_at = ? WHERE pk = ?",
                    (attempts, status, now, d["pk"]),
                )
                tx.execute("UPDATE subscriptions SET failures = 0 WHERE pk = ?", (d["sub"],))
                return
            delay = min(self.cap_s, self.base_s * 2 ** (attempts - 1))
            delay *= 1.0 + 0.5 * random.random()  # jitter
            tx.execute(
                "UPDATE deliveries SET attempts = ?, last_status = ?, last_error = ?, "
                "next_at = ? WHERE pk = ?",
                (attempts, status, err, time.time() + delay, d["pk"]),
            )
            tx.execute("UPDATE subscriptions SET failures = failures + 1 WHERE pk = ?", (d["sub"],))
            fails = tx.scalar("SELECT failures FROM subscriptions WHERE pk = ?", (d["sub"],))
            if int(fails) >= self.max_failures:
                tx.execute(
                    "UPDATE subscriptions SET state = 'paused', paused_reason = ? "
                    "WHERE pk = ? AND state = 'active'",
                    (f"{int(fails)} consecutive failed deliveries; last: {err}", d["sub"]),
                )

    def run_once(self) -> int:
        """Claim and post what is due; how many were posted."""
        due = self.claim()
        for d in due:
            status, err, ms = self.post(d)
            self.record(d, status, err, ms)
        return len(due)


@contextlib.asynccontextmanager
async def push_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the delivery worker while the app runs."""
    svc: LedgerService | None = getattr(app.state, "ledger", None)
    if svc is None:
        yield
        return
    ls = svc.settings.ledger
    worker = Deliverer(
        svc.ledger.db,
        base_s=ls.webhook_backoff_s,
        cap_s=ls.webhook_backoff_cap_s,
        timeout_s=ls.webhook_timeout_s,
        max_failures=ls.webhook_max_failures,
    )
    app.state.deliverer = worker
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                n = await run_in_threadpool(worker.run_once)
            except Exception:
                log.exception("webhook delivery failed")
                n = 0
            if not n:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), ls.webhook_poll_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5 + ls.webhook_timeout_s)


# -- routes


@router.get(
    "/alerts/stream",
    summary="New alerts as server-sent events (resumable with Last-Event-ID)",
    description="Each event: `id` the alert's sequence number, `event: alert`, `data` the "
    "alert as JSON. Reconnect with `Last-Event-ID` (or `?after=`) to get every alert after "
    "it (both given: the later). `data.geometry`: where a map draws it (GeoJSON point, null). "
    "`limit` closes the stream after that many events.",
)
async def stream(
    request: Request,
    _: ReaderDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=2**53, description="Start after this event id")
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=10**9, description="Close after this many events")
    ] = None,
) -> StreamingResponse:
    svc = service_of(request)
    start = after
    if last_event_id:
        try:
            resumed = int(last_event_id)
            if not 0 <= resumed <= 2**53:
                raise ValueError(last_event_id)
        except ValueError as exc:
            raise BadRequest(
                f"Last-Event-ID must be an event id, got {clip(last_event_id)}"
            ) from exc
        # a browser reconnects to the same URL (?after=) with the last id it got: resume there
        start = resumed if start is None else max(start, resumed)
    poll = svc.settings.ledger.webhook_poll_s
    stopping: asyncio.Event = getattr(request.app.state, "stopping", None) or asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        cursor = start if start is not None else await run_in_threadpool(_latest, svc.ledger.db)
        sent = 0
        idle = 0.0
        yield b"retry: 2000\n\n"
        while True:
            rows = await run_in_threadpool(
                alerts_mod.list_alerts, svc.ledger.db, after_n=cursor, limit=500
            )
            for a in rows:
                cursor = a["n"]
                a["geometry"] = alerts_mod.point_of(request, a)  # where a map draws it
                data = json.dumps(a, ensure_ascii=False)
                yield f"id: {a['n']}\nevent: alert\ndata: {data}\n\n".encode()
                sent += 1
                if limit is not None and sent >= limit:
                    return
            if rows:
                idle = 0.0
                continue
            if await request.is_disconnected() or stopping.is_set():
                return
            # the server stopping ends the stream at once (the browser resumes elsewhere)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), poll)
            idle += poll
            if idle >= 15.0:
                idle = 0.0
                yield b": keep-alive\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _latest(db: Database) -> int:
    with db.transaction() as tx:
        return int(tx.scalar("SELECT COALESCE(MAX(pk), 0) AS n FROM alerts") or 0)


SupervisorDep = Annotated[Principal, Depends(needs("close"))]
SubId = Annotated[int, PathParam(ge=1, le=2**53, description="Subscription id")]


@router.post("/subscriptions", summary="Register a webhook for alerts", status_code=201)
async def post_subscription(
    request: Request, body: SubscriptionIn, who: SupervisorDep
) -> JSONResponse:
    svc = service_of(request)
    out = await run_in_threadpool(create_subscription, svc.ledger.db, body, who)
    return JSONResponse(out, status_code=201, headers={"Location": f"/subscriptions/{out['id']}"})


@router.get("/subscriptions", summary="Webhook subscriptions")
async def get_subscriptions(request: Request, who: SupervisorDep) -> JSONResponse:
    svc = service_of(request)

    def rows() -> list[dict[str, Any]]:
        with svc.ledger.db.transaction() as tx:
            return [
                _sub(r)
                for r in tx.all("SELECT * FROM subscriptions WHERE state != 'deleted' ORDER BY pk")
            ]

    return JSONResponse({"subscriptions": await run_in_threadpool(rows)})


@router.get("/subscriptions/{sub_id}", summary="One webhook subscription")
async def get_subscription(request: Request, sub_id: SubId, who: SupervisorDep) -> JSONResponse:
    svc = service_of(request)
    return JSONResponse(_sub(await run_in_threadpool(_get_sub, svc.ledger.db, sub_id)))


@router.get("/subscriptions/{sub_id}/deliveries", summary="The delivery log of a subscription")
async def get_deliveries(
    request: Request,
    sub_id: SubId,
    who: SupervisorDep,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> JSONResponse:
    svc = service_of(request)
    rows = await run_in_threadpool(deliveries, svc.ledger.db, sub_id, limit)
    return JSONResponse({"deliveries": rows})


@router.post("/subscriptions/{sub_id}/resume", summary="Resume a paused subscription")
async def resume(request: Request, sub_id: SubId, who: SupervisorDep) -> JSONResponse:
    svc = service_of(request)

    def run() -> dict[str, Any]:
        _get_sub(svc.ledger.db, sub_id)
        with svc.ledger.db.transaction(write=True) as tx:
            tx.execute(
                "UPDATE subscriptions SET state = 'active', paused_reason = NULL, failures = 0 "
                "WHERE pk = ?",
                (sub_id,),
            )
            tx.execute(
                "UPDATE deliveries SET next_at = 0 WHERE subscription = ? AND state = 'pending'",
                (sub_id,),
            )
        return _sub(_get_sub(svc.ledger.db, sub_id))

    return JSONResponse(await run_in_threadpool(run))


@router.delete("/subscriptions/{sub_id}", summary="Delete a subscription", status_code=204)
async def delete_subscription(request: Request, sub_id: SubId, who: SupervisorDep) -> Response:
    svc = service_of(request)

    def run() -> None:
        _get_sub(svc.ledger.db, sub_id)
        with svc.ledger.db.transaction(write=True) as tx:
            tx.execute("UPDATE subscriptions SET state = 'deleted' WHERE pk = ?", (sub_id,))

    await run_in_threadpool(run)
    return Response(status_code=204)
