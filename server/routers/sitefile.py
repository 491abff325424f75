"""The work-zone file (一点一码一档): PATCH a site (If-Match), inspections with photos, the
site's history, a printable A4 board (PDF) and KPIs of inspections and open orders."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from trafficunit.ledger import WorkZone
from trafficunit.ledger.sitefile import CHECKLIST, SiteFile, board_pdf

from ..ledger import (
    EtagRule,
    ReaderDep,
    ServiceDep,
    VersionedWrite,
    WorkZoneDep,
    acting,
    geojson,
    made_once,
    responses,
    versioned,
)
from .workzones import site_file

router = APIRouter(tags=["work zones"])


class WorkZonePatch(BaseModel):
    """Extend, end or change a site. ``end`` later than the current end extends it;
    ``end_now`` (or an ``end`` in the past) ends it."""

    model_config = ConfigDict(extra="forbid")

    end: datetime | None = None
    end_now: bool = False
    lanes_taken: int | None = Field(default=None, ge=0, le=20)
    night_works: bool | None = None
    contractor: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)
    comment: str | None = Field(default=None, max_length=2000)


class PhotoIn(BaseModel):
    """A photo as base64."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    content_type: str = Field(default="image/jpeg", max_length=100)
    data: str = Field(max_length=7_000_000, description="base64 (at most 5 MB decoded)")


class InspectionIn(BaseModel):
    """An inspection: checklist items true (fine) or false (failed), pass or fail, notes."""

    model_config = ConfigDict(extra="forbid")

    result: str = Field(pattern="^(pass|fail)$")
    checklist: dict[str, bool] = Field(
        default_factory=dict,
        description="Items: " + ", ".join(f"{c[0]} ({c[1]} / {c[2]})" for c in CHECKLIST),
    )
    notes: str | None = Field(default=None, max_length=4000)
    photos: list[PhotoIn] = Field(default_factory=list, max_length=6)


def sitefile(svc: Any) -> SiteFile:
    """The service's :class:`SiteFile` (tables created on first use)."""
    return made_once(svc, "_site_file", lambda: SiteFile(svc.ledger))


#: How a site's ETag reads in ``If-Match`` (the site files' older rule: any digits, no length
#: bound, the site code compared letter for letter).
SITE_ETAG = EtagRule(
    "site",
    "SITE-1-v2",
    ".+",
    own=lambda site_code: site_code,
    needs_text=lambda site_code: (
        f"changes need an If-Match header with the site's ETag (GET /workzones/{site_code}/file)"
    ),
    strict=False,
    same_case=True,
)
#: The caller (engineers) and If-Match header of a change to a site.
SiteWrite = Annotated[
    VersionedWrite, Depends(versioned(SITE_ETAG, param="site_code", action="workzone"))
]


def _etag(zone: Any) -> str:
    return f'"{zone.site_code}-v{zone.version}"'


@router.patch(
    "/workzones/{site_code}",
    summary="Extend, end or change a work zone (engineers; needs If-Match)",
    responses=responses(428, _412="Stale If-Match"),
)
def patch_workzone(
    site_code: str,
    body: WorkZonePatch,
    svc: ServiceDep,
    write: SiteWrite,
) -> JSONResponse:
    zone = sitefile(svc).change(site_code, **write.keywords(), **body.model_dump())
    svc.note_write()
    return geojson(zone.to_feature(), etag=_etag(zone))


@router.post(
    "/workzones/{site_code}/inspections",
    status_code=201,
    summary="Record an inspection; a failed one opens a rectification order (engineers)",
)
def inspect_workzone(
    site_code: str,
    body: InspectionIn,
    svc: ServiceDep,
    who: WorkZoneDep,
) -> JSONResponse:
    out = sitefile(svc).inspect(
        site_code,
        **acting(who),
        result=body.result,
        checklist=body.checklist,
        notes=body.notes,
        photos=[p.model_dump() for p in body.photos],
    )
    svc.note_write()
    return JSONResponse(out, status_code=201)


@router.get("/workzones/{site_code}/file", summary="The site's file: changes, inspections, orders")
def workzone_file(site_code: str, svc: ServiceDep, reader: ReaderDep) -> JSONResponse:
    f = sitefile(svc).history(site_code)
    return JSONResponse(f, headers={"ETag": f'"{f["site_code"]}-v{f["version"]}"'})


@router.get(
    "/workzones/{site_code}/photos/{photo_id}",
    response_class=Response,
    summary="An inspection photo",
)
def workzone_photo(
    site_code: str,
    photo_id: Annotated[int, Path(ge=1, le=2**53)],
    svc: ServiceDep,
    reader: ReaderDep,
) -> Response:
    ctype, data = sitefile(svc).photo(site_code, int(photo_id))
    return Response(data, media_type=ctype)


@site_file(router, "board.pdf", "application/pdf", "A4 board")
def workzone_board(zone: WorkZone, url: str) -> tuple[bytes, dict[str, str]]:
    """Printable A4 board (PDF) with the QR code and the site's facts."""
    disposition = f'inline; filename="{zone.site_code}-board.pdf"'
    return board_pdf(zone, url), {"Content-Disposition": disposition}


@router.get("/kpis/workzones", summary="Active sites not inspected in N days; open orders")
def workzone_kpis(
    svc: ServiceDep,
    reader: ReaderDep,
    days: Annotated[float, Query(gt=0, le=3650)] = 7.0,
) -> JSONResponse:
    return JSONResponse(sitefile(svc).kpis(days=days))


def file_html(svc: Any, site_code: str) -> str:
    """The site's history as HTML (for its public page), in Chinese and English."""
    f = sitefile(svc).history(site_code)
    e = html.escape
    ev = "".join(
        f"<tr><td>{e(str(x['at']))}</td><td>{e(str(x['action']))}</td>"
        f"<td>{e(str(x['actor'] or ''))}</td><td>{e(_detail(x['detail']))}</td></tr>"
        for x in f["events"]
    )
    ins = "".join(
        f"<tr><td>{e(str(i['at']))}</td>"
        f"<td>{'合格 pass' if i['result'] == 'pass' else '不合格 fail'}"
        f"</td><td>{e(', '.join(k for k, ok in i['checklist'].items() if not ok) or '—')}</td>"
        f"<td>{e(i['notes'] or '')}</td><td>"
        + " ".join(
            f'<a href="/workzones/{e(f["site_code"])}/photos/{p}">照片 photo {p}</a>'
            for p in i["photos"]
        )
        + f"</td><td>{e(i['order'] or '')}</td></tr>"
        for i in f["inspections"]
    )
    orders = "".join(
        f'<tr><td><a href="/hazards/{e(o["hazard"])}">{e(o["hazard"])}</a></td>'
        f"<td>{e(o['state'])}</td><td>{e(str(o['deadline'] or ''))}</td>"
        f"<td>{e(str(o['responsible'] or ''))}</td></tr>"
        for o in f["orders"]
    )
    return f"""<h2>档案 File</h2>
<table><tr><th>时间 Time</th><th>事项 Action</th><th>人员 Actor</th><th>内容 Detail</th></tr>
{ev}</table>
<h2>巡查 Inspections</h2>
<table><tr><th>时间 Time</th><th>结果 Result</th><th>不合格项 Failed</th><th>备注 Notes</th>
<th>照片 Photos</th><th>整改单 Order</th></tr>{ins}</table>
<h2>整改单 Rectification orders</h2>
<table><tr><th>隐患 Hazard</th><th>状态 State</th><th>期限 Deadline</th>
<th>责任单位 Responsible</th></tr>{orders}</table>
<p><a href="/workzones/{e(f["site_code"])}/board.pdf">公示牌 PDF board</a></p>"""


def _detail(d: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in d.items() if v not in (None, "", []))
