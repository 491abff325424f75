"""Heavy-vehicle route permits: request (route computed), lifecycle with If-Match, QR code and
page, a GeoJSON layer and a live vector tileset of the active permits' routes
(``/tiles/live-permits``), and GPS traces checked against a permit."""

from __future__ import annotations

import html
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import pandas as pd
import shapely
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from trafficunit.errors import InputFileError, ValidationError
from trafficunit.ledger import qr_png
from trafficunit.ledger.permits import PERMIT_STATES, PermitStore, parse_permit_id
from trafficunit.mvt import LiveLayer

from ..errors import BadRequest, ServerError
from ..layers import PERMITS
from ..ledger import (
    EtagRule,
    ReaderDep,
    ReportDep,
    ServiceDep,
    VersionedWrite,
    acting,
    geojson,
    links,
    made_once,
    public_base,
    responses,
    versioned,
)

router = APIRouter(tags=["permits"])
_lock = threading.Lock()


class Unavailable(ServerError):
    """The data folder has no units to route on."""

    status = 503


class PermitIn(BaseModel):
    """A permit request: the route is computed from ``from`` to ``to`` over the units."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    vehicle: str = Field(min_length=1, max_length=32, examples=["粤B12345"])
    operator: str | None = Field(default=None, max_length=200)
    origin: tuple[float, float] = Field(alias="from", description="[lon, lat] (WGS84)")
    destination: tuple[float, float] = Field(alias="to", description="[lon, lat] (WGS84)")
    windows: list[tuple[str, str]] = Field(
        default_factory=list, max_length=12, description='Daily windows [["22:00","06:00"]]'
    )
    tz: str = Field(default="UTC", max_length=64, examples=["Asia/Shanghai"])
    valid_from: str | None = Field(default=None, max_length=40)
    valid_to: str | None = Field(default=None, max_length=40)
    avoid: list[str] = Field(default_factory=list, max_length=6, examples=[["red", "workzones"]])
    speed_caps_kmh: dict[str, float] = Field(default_factory=dict, max_length=20)
    weight: str = Field(default="length", pattern="^(length|time)$")


class PermitTransitionIn(BaseModel):
    """Move a permit to another state."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(description=f"One of {', '.join(PERMIT_STATES)}")
    comment: str | None = Field(default=None, max_length=2000)


def _store(svc: Any) -> PermitStore:
    return made_once(svc, "_permit_store", lambda: PermitStore(svc.ledger.db))


#: Properties of the permits carried by the live tiles (``/tiles/live-permits``).
TILE_COLUMNS = list(PERMITS.columns)


class LazyPermitLayer:
    """Active permits' routes as a live tile layer (:class:`trafficunit.mvt.LiveLayer`), rebuilt
    on first use after a permit changed or expired; attributes are the current layer's."""

    name = "permits"

    def __init__(self, svc: Any) -> None:
        self._svc = svc
        self._built: tuple[Any, LiveLayer] | None = None  # (data key, layer)
        self._build_lock = threading.Lock()

    def data_key(self) -> tuple[int, int]:
        """What the layer's tiles depend on (part of their cache key)."""
        return _store(self._svc).data_key()

    def get(self) -> LiveLayer:
        """The current layer (built again only when the permits changed)."""
        key = self.data_key()
        with self._build_lock:
            built = self._built
            if built is None or built[0] != key:
                frame = self._frame()
                built = self._built = (key, LiveLayer(self.name, frame, columns=TILE_COLUMNS))
        return built[1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def __len__(self) -> int:
        return len(self.get())

    def _frame(self) -> gpd.GeoDataFrame:
        permits = _store(self._svc).list_permits(state="active", limit=100_000)
        rows = []
        for p in permits:
            props = p.properties()
            rows.append(
                {
                    "event_id": p.id,
                    "state": p.state,
                    "state_zh": props["state_zh"],
                    "vehicle": p.vehicle,
                    "operator": p.operator or "",
                    "windows": ", ".join(f"{a}-{b}" for a, b in props["windows"]),
                    "valid_to": str(props["valid_to"] or ""),
                    "length_m": float(p.length_m or 0.0),
                    "units": len(p.unit_ids),
                    "geometry": shapely.geometry.shape(p.route) if p.route else None,
                }
            )
        frame = pd.DataFrame(rows, columns=[*TILE_COLUMNS, "geometry"])
        frame = frame.astype({"length_m": float, "units": "int64"})
        return gpd.GeoDataFrame(frame, geometry="geometry", crs=4326)


def attach_layer(svc: Any, store: Any) -> None:
    """Serve the permits layer from the store's live tilesets (called by the ledger's hook)."""
    layer = made_once(svc, "_permit_layer", lambda: LazyPermitLayer(svc))
    if store.live.get("permits") is not layer:
        store.live["permits"] = layer


def _graph(request: Request) -> Any:
    from trafficunit.routing import UnitGraph

    table = request.app.state.store.tables.get("units")
    if table is None:
        raise Unavailable("the data folder has no units.parquet; permits need units to route on")
    cached = getattr(request.app.state, "permit_graph", None)
    if cached is None or cached[0] is not table:
        with _lock:
            cached = getattr(request.app.state, "permit_graph", None)
            if cached is None or cached[0] is not table:
                cached = (table, UnitGraph(table.frame))
                request.app.state.permit_graph = cached
    return cached[1]


def _workzones(request: Request, svc: Any) -> pd.DataFrame:
    """Registered sites and the data folder's work zones: unit_id, start, end."""
    rows = []
    _, zones = svc.ledger.list_workzones(limit=100_000)
    for z in zones:
        for u in z.unit_ids:
            rows.append({"unit_id": u, "start": z.start, "end": z.end})
    out = pd.DataFrame(rows, columns=["unit_id", "start", "end"])
    table = request.app.state.store.tables.get("workzones")
    if table is not None and {"unit_id", "start", "end"} <= set(table.frame.columns):
        out = pd.concat([out, pd.DataFrame(table.frame[["unit_id", "start", "end"]])])
    for c in ("start", "end"):
        out[c] = pd.to_datetime(out[c], utc=True)
    return out.dropna(subset=["unit_id"])


def _feature(p: Any, request: Request, svc: Any) -> dict[str, Any]:
    f = p.to_feature()
    f["links"] = links(public_base(request, svc), f"/permits/{p.id}", ["page", "qr.png", "history"])
    return f


def _response(p: Any, request: Request, svc: Any, status: int = 200) -> JSONResponse:
    return geojson(
        _feature(p, request, svc), status=status, etag=p.etag, location=f"/permits/{p.id}"
    )


@router.post(
    "/permits",
    status_code=201,
    summary="Request a route permit; the route is computed over the units (any token)",
    responses=responses(_400="Origin or destination off the network, no route, bad field"),
)
def request_permit(
    body: PermitIn,
    request: Request,
    svc: ServiceDep,
    who: ReportDep,
) -> JSONResponse:
    from trafficunit.routing import check_tz, daily_intervals, route

    graph = _graph(request)
    check_tz(body.tz)
    try:
        start = pd.Timestamp(body.valid_from or pd.Timestamp.now(tz=body.tz).normalize())
        end = pd.Timestamp(body.valid_to) if body.valid_to else start + pd.Timedelta(days=7)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"valid_from / valid_to: unreadable date ({exc})") from exc
    # the windows a work zone must not be active in; without windows, the whole period
    windows = body.windows or [("00:00", "24:00")]
    when = daily_intervals(windows, start, end, tz=body.tz)
    avoid = [a.lower() for a in body.avoid]
    r = route(
        graph,
        body.origin,
        body.destination,
        avoid=avoid,
        weight=body.weight,
        workzones=_workzones(request, svc) if "workzones" in avoid else None,
        when=when,
    )
    p = _store(svc).request(
        vehicle=body.vehicle,
        operator=body.operator,
        route=r,
        **acting(who),
        windows=body.windows,
        tz=body.tz,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
        speed_caps_kmh=body.speed_caps_kmh,
        avoid=avoid,
        origin=list(body.origin),
        destination=list(body.destination),
    )
    return _response(p, request, svc, status=201)


@router.get("/permits", summary="Permits as a GeoJSON layer (their routes)")
def list_permits(
    request: Request,
    svc: ServiceDep,
    reader: ReaderDep,
    state: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    permits = _store(svc).list_permits(state=state, limit=limit, offset=offset)
    return geojson(
        {"type": "FeatureCollection", "features": [_feature(p, request, svc) for p in permits]}
    )


@router.get("/permits/{permit_id}", summary="One permit (ETag for If-Match)")
def get_permit(
    permit_id: str, request: Request, svc: ServiceDep, reader: ReaderDep
) -> JSONResponse:
    return _response(_store(svc).get(permit_id), request, svc)


#: How a permit's ETag reads in ``If-Match`` (the permits' older rule: any digits, no length
#: bound).
PERMIT_ETAG = EtagRule.numbered(
    "P",
    "permit",
    parse_permit_id,
    strict=False,
    needs_text=lambda permit_id: (
        f"transitions need an If-Match header with the permit's ETag (GET /permits/{permit_id})"
    ),
)
#: The caller (any token) and If-Match header of a permit's transition.
PermitWrite = Annotated[VersionedWrite, Depends(versioned(PERMIT_ETAG, param="permit_id"))]


@router.post(
    "/permits/{permit_id}/transitions",
    summary="Approve, activate, expire or revoke a permit (needs If-Match)",
    responses=responses(
        403, 428, _409="The lifecycle does not allow it now", _412="Stale If-Match"
    ),
)
def transition_permit(
    permit_id: str,
    body: PermitTransitionIn,
    request: Request,
    svc: ServiceDep,
    write: PermitWrite,
) -> JSONResponse:
    p = _store(svc).transition(permit_id, body.to, **write.keywords(), comment=body.comment)
    return _response(p, request, svc)


@router.get("/permits/{permit_id}/history", summary="Every event of a permit, and its traces")
def permit_history(permit_id: str, svc: ServiceDep, reader: ReaderDep) -> JSONResponse:
    store = _store(svc)
    events = store.history(permit_id)
    return JSONResponse(
        {
            "id": f"P{parse_permit_id(permit_id)}",
            "events": events,
            "traces": store.traces(permit_id),
        }
    )


@router.get("/permits/{permit_id}/qr.png", summary="QR code of the permit's public page")
def permit_qr(permit_id: str, request: Request, svc: ServiceDep) -> Response:
    p = _store(svc).get(permit_id)
    page = f"{public_base(request, svc)}/permits/{p.id}/page"
    return Response(qr_png(page), media_type="image/png")


@router.get("/permits/{permit_id}/page", response_class=HTMLResponse, summary="Public page")
def permit_page(permit_id: str, request: Request, svc: ServiceDep) -> HTMLResponse:
    store = _store(svc)
    p = store.get(permit_id)
    props = p.properties()
    e = html.escape
    windows = ", ".join(f"{a}–{b}" for a, b in props["windows"]) or "—"
    events = "".join(
        f"<tr><td>{e(str(ev['at']))}</td><td>{e(str(ev['action']))}</td>"
        f"<td>{e(str(ev['to_state']))}</td><td>{e(str(ev['actor'] or ''))}</td></tr>"
        for ev in store.history(permit_id)
    )
    traces = "".join(
        f"<tr><td>{e(str(t['at']))}</td><td>{e(str(t['name'] or ''))}</td>"
        f"<td>{e(str(t['summary'].get('counts', {})))}</td></tr>"
        for t in store.traces(permit_id)
    )
    body = f"""<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{e(p.id)} 通行许可 Route permit</title>
<style>body{{font-family:sans-serif;max-width:46em;margin:1em auto;padding:0 1em}}
td,th{{border-bottom:1px solid #ddd;padding:.2em .5em;text-align:left}}</style>
<h1>通行许可 Route permit {e(p.id)}</h1>
<p><b>车辆 Vehicle:</b> {e(p.vehicle)} · <b>运输单位 Operator:</b> {e(p.operator or "—")}</p>
<p><b>状态 State:</b> {e(props["state_zh"])} / {e(p.state)} · <b>版本 Version:</b> {p.version}</p>
<p><b>通行时段 Windows:</b> {e(windows)} ({e(props["tz"])}) · <b>有效期 Valid:</b>
{e(str(props["valid_from"] or "—"))} – {e(str(props["valid_to"] or "—"))}</p>
<p><b>路线 Route:</b> {len(p.unit_ids)} 个交通单元 units, {(p.length_m or 0) / 1000:.2f} km</p>
<p><img src="/permits/{e(p.id)}/qr.png" alt="QR" width="160"></p>
<h2>记录 History</h2><table><tr><th>时间 Time</th><th>操作 Action</th><th>状态 State</th>
<th>人员 Actor</th></tr>{events}</table>
<h2>轨迹检查 Trace checks</h2><table><tr><th>时间 Time</th><th>文件 File</th>
<th>发现 Findings</th></tr>{traces}</table>
<p><small>未检查靠右行驶：交通单元没有车道级数据。Keep right is not checked: the units have no
lane data.</small></p></html>"""
    return HTMLResponse(body)


@router.post(
    "/permits/{permit_id}/traces",
    summary="Check a GPS trace (GPX or CSV time,lon,lat[,speed]) against a permit",
    responses=responses(_400="Unreadable trace, several GPX tracks, unsorted times..."),
)
async def check_permit_trace(
    permit_id: str,
    request: Request,
    svc: ServiceDep,
    who: ReportDep,
    tz: Annotated[str | None, Query(max_length=64, description="Zone of naive CSV times")] = None,
    track: Annotated[str | None, Query(max_length=100)] = None,
) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    store = _store(svc)
    p = store.get(permit_id)
    ctype = request.headers.get("content-type", "")
    name = "trace"
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        up = form.get("trace")
        if up is None or isinstance(up, str):
            raise BadRequest("send the trace as the form field 'trace' (curl -F trace=@file.gpx)")
        data = await up.read()
        name = up.filename or name
    else:
        data = await request.body()
        name = request.headers.get("x-filename", name)
    if not data:
        raise BadRequest("the trace is empty")
    is_gpx = name.lower().endswith(".gpx") or "gpx" in ctype or data.lstrip()[:5] == b"<?xml"
    graph = _graph(request)

    def work() -> dict[str, Any]:
        from trafficunit.traces import check_trace, read_trace

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / ("trace.gpx" if is_gpx else "trace.csv")
            path.write_bytes(data)
            try:
                trace = read_trace(
                    path,
                    tz=tz or p.spec.get("tz"),
                    track=(
                        int(track) if track and (track.isascii() and track.isdigit()) else track
                    ),
                )
            except InputFileError as exc:  # a bad upload is the client's, not the data folder's
                raise ValidationError(str(exc).replace(str(path), name)) from exc
        report = check_trace(graph, trace, p.rules())
        return store.add_trace(p.id, name=name, actor=who.name, report=report)

    return JSONResponse(await run_in_threadpool(work))
