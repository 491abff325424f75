"""Work zones: register a site (code, period, geometry), list active sites, page and QR code."""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import WorkZone, qr_png

from ..deps import BBoxDep, LimitDep, parse_time
from ..ledger import (
    ReaderDep,
    ServiceDep,
    WorkZoneDep,
    acting,
    feature_collection,
    file_responses,
    geojson,
    links,
    public_base,
)

router = APIRouter(tags=["work zones"])


class WorkZoneIn(BaseModel):
    """A permitted road-works site."""

    model_config = ConfigDict(extra="forbid")

    site_code: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="The permit's site code (one per site)",
        examples=["KT-2018-0001"],
    )
    geometry: dict[str, Any] = Field(description="GeoJSON geometry in WGS84")
    start: datetime = Field(description="Start of the permitted period")
    end: datetime | None = Field(default=None, description="End of the permitted period")
    lanes_taken: int | None = Field(default=None, ge=0, le=20)
    night_works: bool | None = None
    contractor: str | None = Field(default=None, max_length=200)
    permit: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)


def page_url(request: Request, svc: Any, site_code: str) -> str:
    """The address of a site's page (what its QR code and board link to)."""
    return f"{public_base(request, svc)}/workzones/{site_code}/page"


#: What makes a site's file: ``(zone, page_url) -> (content, headers)``.
Render = Callable[[WorkZone, str], tuple[bytes, dict[str, str]]]


def site_file(
    api: APIRouter, name: str, media_type: str, description: str
) -> Callable[[Render], Render]:
    """Decorate a ``render(zone, page_url)`` to answer ``GET /workzones/{site_code}/<name>`` on
    ``api``: a file of ``media_type`` (``description`` for the OpenAPI document), made in a
    worker thread; 404 for an unknown site. The route is named after ``render``, and its
    summary is the first line of ``render``'s docstring."""

    def register(render: Render) -> Render:
        async def answer(
            site_code: str, request: Request, svc: ServiceDep, reader: ReaderDep
        ) -> Response:
            zone = await run_in_threadpool(svc.ledger.get_workzone, site_code)
            url = page_url(request, svc, zone.site_code)
            data, headers = await run_in_threadpool(render, zone, url)
            return Response(data, media_type=media_type, headers=headers)

        api.get(
            f"/workzones/{{site_code}}/{name}",
            response_class=Response,
            responses=file_responses(media_type, description),
            summary=(render.__doc__ or "").strip().splitlines()[0].rstrip("."),
            name=render.__name__,
        )(answer)
        return render

    return register


def _feature(zone: WorkZone, request: Request, svc: Any) -> dict[str, Any]:
    path = f"/workzones/{zone.site_code}"
    return {
        **zone.to_feature(),
        "links": links(public_base(request, svc), path, ["page", "qr.png"]),
    }


@router.post("/workzones", status_code=201, summary="Register a work zone (engineers)")
def register_workzone(
    body: WorkZoneIn, request: Request, svc: ServiceDep, who: WorkZoneDep
) -> JSONResponse:
    request.app.state.store.check()
    zone = svc.ledger.register_workzone(**body.model_dump(), **acting(who))
    svc.note_write()  # the live work-zone tiles show it from the next request on
    request.app.state.store.check()  # live hooks: a night site on a red unit alerts at once
    return geojson(
        _feature(zone, request, svc), status=201, location=f"/workzones/{zone.site_code}"
    )


@router.get("/workzones", summary="Work zones, active at a time ('now' or ISO) when asked")
def list_workzones(
    request: Request,
    svc: ServiceDep,
    reader: ReaderDep,
    bbox: BBoxDep,
    limit: LimitDep,
    active: Annotated[
        str | None, Query(description="'now' or an ISO date/datetime: sites active then")
    ] = None,
    unit_id: Annotated[str | None, Query(max_length=100)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    t = None
    if active is not None:
        t = datetime.now(UTC) if active.strip().lower() == "now" else parse_time(active, "active")
    total, zones = svc.ledger.list_workzones(
        active_at=t, bbox=bbox, unit_id=unit_id, limit=limit, offset=offset
    )
    return feature_collection([_feature(z, request, svc) for z in zones], total)


@router.get("/workzones/{site_code}", summary="One work zone")
def get_workzone(
    site_code: str, request: Request, svc: ServiceDep, reader: ReaderDep
) -> JSONResponse:
    zone = svc.ledger.get_workzone(site_code)
    return geojson(_feature(zone, request, svc))


@router.get(
    "/workzones/{site_code}/page",
    response_class=HTMLResponse,
    summary="The site's page (what its QR code opens)",
)
def workzone_page(
    site_code: str, request: Request, svc: ServiceDep, reader: ReaderDep
) -> HTMLResponse:
    from .sitefile import file_html  # the site's file: changes, inspections, orders

    zone = svc.ledger.get_workzone(site_code)
    p = zone.properties()
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape('' if v is None else str(v))}</td></tr>"
        for k, v in p.items()
        if k != "version"
    )
    c = zone.geometry.centroid
    state = "ACTIVE" if p["active"] else "not active now"
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Work zone {html.escape(zone.site_code)}</title>
<style>body{{font-family:sans-serif;margin:1em;max-width:40em}}th{{text-align:left;padding-right:1em}}</style>
</head><body><h1>Work zone {html.escape(zone.site_code)}</h1><p><b>{state}</b></p>
<table>{rows}</table>
{file_html(svc, zone.site_code)}
<p>Location: {c.y:.6f}, {c.x:.6f} &middot; <a href="/?lat={c.y:.6f}&lon={c.x:.6f}&z=17">map</a>
&middot; <a href="/workzones/{html.escape(zone.site_code)}">GeoJSON</a></p></body></html>"""
    return HTMLResponse(page)


@site_file(router, "qr.png", "image/png", "QR code of the site's page")
def workzone_qr(zone: WorkZone, url: str) -> tuple[bytes, dict[str, str]]:
    """QR code (PNG) linking to the site's page."""
    return qr_png(url), {"Cache-Control": "public, max-age=86400", "X-QR-URL": url}
