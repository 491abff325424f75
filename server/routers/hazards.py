"""Hazards: report, list and filter, read, transition (with If-Match), history, categories."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import shapely
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from trafficunit.errors import clip
from trafficunit.ledger import Hazard, Principal
from trafficunit.ledger.lifecycle import GRADES, STATES, TRANSITIONS
from trafficunit.ledger.store import SOURCES, parse_hazard_id

from ..deps import BBoxDep, FormatDep, LimitDep, comma_list
from ..errors import BadRequest, NotFound, ServerError
from ..ledger import (
    PrincipalDep,
    ReaderDep,
    ServiceDep,
    needs,
    public_events,
    public_reports,
    sees_actors,
)
from ..zonejoin import ZoneDep, list_hazards_in, zone_features

router = APIRouter(tags=["hazards"])


class PreconditionRequired(ServerError):
    """A write without If-Match."""

    status = 428


class HazardIn(BaseModel):
    """A hazard report. A GeoJSON Feature with these fields as properties is accepted too."""

    model_config = ConfigDict(extra="forbid")

    geometry: dict[str, Any] = Field(
        description="GeoJSON geometry in WGS84: Point, LineString, Polygon or Multi*",
        examples=[{"type": "Point", "coordinates": [24.9384, 60.1699]}],
    )
    category: str = Field(
        max_length=100, description="Item code of the catalogue (GET /hazard-categories)"
    )
    grade: Literal["general", "major", "一般", "重大"] | None = Field(
        default=None, description="general (一般) or major (重大) when known"
    )
    description: str | None = Field(default=None, max_length=4000)
    source: Literal[SOURCES] = "public_report"  # type: ignore[valid-type]
    road_name: str | None = Field(default=None, max_length=200)
    reported_at: datetime | None = Field(
        default=None, description="When it was seen (default now; not in the future)"
    )
    external_id: str | None = Field(
        default=None,
        max_length=200,
        description="The report's id elsewhere; resending it returns the stored hazard",
    )

    @model_validator(mode="before")
    @classmethod
    def _feature(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("type") == "Feature":
            props = data.get("properties") or {}
            if not isinstance(props, dict):
                raise ValueError("Feature properties must be an object")
            return {**props, "geometry": data.get("geometry")}
        return data


class TransitionIn(BaseModel):
    """A transition: the target state and what that step records."""

    model_config = ConfigDict(extra="forbid")

    to: Literal[STATES] = Field(description="Target state")  # type: ignore[valid-type]
    comment: str | None = Field(default=None, max_length=4000)
    grade: Literal["general", "major", "一般", "重大"] | None = Field(
        default=None, description="registered: the grade (required unless reported)"
    )
    category: str | None = Field(
        default=None, max_length=100, description="registered: a corrected category"
    )
    responsible: str | None = Field(
        default=None, max_length=200, description="assigned: the responsible body (required)"
    )
    road_chief: str | None = Field(default=None, max_length=200, description="assigned")
    deadline: datetime | None = Field(
        default=None, description="assigned: deadline (default by grade)"
    )


def _feature_response(
    hazard: Hazard,
    status: int = 200,
    extra: dict[str, Any] | None = None,
    request: Request | None = None,
) -> JSONResponse:
    # with a request: zone codes and the unit's chief now joined (server/zonejoin.py)
    body = hazard.to_feature() if request is None else zone_features(request, [hazard])[0]
    if extra:
        body.update(extra)
    return JSONResponse(
        body,
        status_code=status,
        headers={"ETag": hazard.etag, "Location": f"/hazards/{hazard.id}"},
        media_type="application/geo+json",
    )


_ETAG = re.compile(r'^(?:W/)?"?(?:(H\d{1,18})-v)?(\d{1,18})"?$')
#: Longest If-Match header read (a list of a few ETags); longer is a 400.
MAX_IF_MATCH = 256


def expected_version(if_match: str | None, hazard_id: str) -> int | None:
    """The version an ``If-Match`` header names (None for ``*``); 428 when absent."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            "transitions need an If-Match header with the hazard's ETag (from GET "
            f"/hazards/{hazard_id}), so a stale write changes nothing"
        )
    if len(if_match) > MAX_IF_MATCH:
        raise BadRequest(
            f"If-Match of {len(if_match)} characters is longer than {MAX_IF_MATCH}; send the "
            'ETag of GET /hazards/{id} (like "H12-v3")'
        )
    value = if_match.split(",")[0].strip()
    if value == "*":
        return None
    m = _ETAG.match(value)
    if m is None:
        raise BadRequest(
            f'If-Match {clip(if_match)} is not an ETag of this API (like "H12-v3", a version '
            "of at most 18 digits)"
        )
    if m.group(1) is not None and m.group(1).upper() != f"H{parse_hazard_id(hazard_id)}":
        return -1  # another hazard's ETag never matches
    return int(m.group(2))


@router.post(
    "/hazards",
    status_code=201,
    summary="Report a hazard (201 new; 200 when linked to an open hazard it repeats)",
    responses={
        201: {"description": "A new hazard, with its unit_ids, version and ETag"},
        200: {"description": "Linked to an open hazard of the same category nearby"},
        400: {"description": "Invalid geometry, unknown category, bad field"},
        401: {"description": "No or bad token"},
        403: {"description": "The token's role may not report"},
        413: {"description": "Body too large"},
        422: {
            "description": "Implausible geometry: larger or longer than a hazard may be, or "
            "far from the served units (with a hint when longitude and latitude look swapped)"
        },
        429: {"description": "Too many failed tokens from this address (see Retry-After)"},
    },
)
def report_hazard(
    body: HazardIn,
    svc: ServiceDep,
    request: Request,
    who: Annotated[Principal, Depends(needs("report"))],
) -> JSONResponse:
    request.app.state.store.check()  # the ledger assigns to the store's current units
    res = svc.ledger.report(
        body.geometry,
        category=body.category,
        actor=who.name,
        role=who.role,
        grade=body.grade,
        description=body.description,
        source=body.source,
        road_name=body.road_name,
        reported_at=body.reported_at,
        external_id=body.external_id,
    )
    extra: dict[str, Any] = {"linked": res.linked, "replayed": res.replayed}
    if res.distance_m is not None:
        extra["linked_distance_m"] = round(res.distance_m, 2)
    return _feature_response(res.hazard, 201 if res.created else 200, extra, request)


@router.get("/hazards", summary="Hazards by bbox, unit, state, grade, overdue, jurisdiction")
def list_hazards(
    request: Request,
    zf: ZoneDep,
    svc: ServiceDep,
    reader: ReaderDep,
    bbox: BBoxDep,
    limit: LimitDep,
    fmt: FormatDep,
    unit_id: Annotated[str | None, Query(max_length=100)] = None,
    state: Annotated[str | None, Query(description="Comma list of states, or 'open'")] = None,
    grade: Annotated[str | None, Query(description="general,major")] = None,
    category: Annotated[str | None, Query(description="Comma list of item codes")] = None,
    overdue: Annotated[
        bool | None, Query(description="Only overdue (true) or none (false)")
    ] = None,
    supervision: Annotated[Literal["listed"] | None, Query()] = None,
    jurisdiction: Annotated[
        str | None, Query(description="Name of a jurisdiction of the configured polygon file")
    ] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    states = comma_list(state)
    if states == ["open"]:
        states = ["reported", "registered", "assigned", "rectifying"]
    within = None
    if jurisdiction is not None:
        if svc.zones is None or svc.zone_names is None:
            raise BadRequest(
                "no jurisdictions configured; set TRAFFICUNIT_LEDGER_JURISDICTIONS to a "
                "polygon file"
            )
        hit = svc.zones[svc.zone_names == jurisdiction]
        if not len(hit):
            raise NotFound(f"no jurisdiction {clip(jurisdiction)}")
        within = shapely.union_all(hit.geometry.to_numpy())
    categories = comma_list(category)
    if categories:
        categories = [svc.ledger.catalogue.resolve(c) for c in categories]
    total, hazards = list_hazards_in(  # the zone filter: server/zonejoin.py
        request,
        svc.ledger,
        zf,
        bbox=bbox,
        within=within,
        unit_id=unit_id,
        states=states,
        grades=comma_list(grade),
        categories=categories,
        overdue=overdue,
        supervision=supervision,
        limit=limit,
        offset=offset,
    )
    headers = {"X-Total-Count": str(total)}
    if fmt == "csv":
        import pandas as pd

        rows = [
            {
                **{
                    k: (";".join(v) if isinstance(v, list) else v)
                    for k, v in f["properties"].items()
                },
                "geometry_wkt": shapely.to_wkt(h.geometry, rounding_precision=7),
            }
            for h, f in zip(hazards, zone_features(request, hazards), strict=True)
        ]
        frame = pd.DataFrame(rows)
        headers["Content-Disposition"] = 'attachment; filename="hazards.csv"'
        return Response(
            frame.to_csv(index=False), media_type="text/csv; charset=utf-8", headers=headers
        )
    return JSONResponse(
        {
            "type": "FeatureCollection",
            "numberMatched": total,
            "numberReturned": len(hazards),
            "features": zone_features(request, hazards),  # with zone codes
        },
        headers=headers,
        media_type="application/geo+json",
    )


@router.get(
    "/hazards/{hazard_id}",
    summary="One hazard (ETag names its version)",
    responses={304: {"description": "Not modified (If-None-Match)"}, 404: {}},
)
def get_hazard(
    hazard_id: str,
    request: Request,
    svc: ServiceDep,
    reader: ReaderDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    hazard = svc.ledger.get(hazard_id)
    if if_none_match is not None and hazard.etag in [v.strip() for v in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": hazard.etag})
    return _feature_response(hazard, request=request)


@router.post(
    "/hazards/{hazard_id}/transitions",
    summary="Move a hazard through its lifecycle (needs If-Match)",
    responses={
        200: {"description": "The hazard after the transition, with its new ETag"},
        400: {"description": "Missing or invalid field (grade, responsible, comment...)"},
        401: {"description": "No or bad token"},
        403: {"description": "The token's role may not do this transition"},
        404: {"description": "No such hazard"},
        409: {"description": "The lifecycle does not allow this transition now"},
        412: {"description": "If-Match names a stale version; nothing was changed"},
        428: {"description": "If-Match missing"},
        429: {"description": "Too many failed tokens from this address (see Retry-After)"},
    },
)
def transition_hazard(
    hazard_id: str,
    request: Request,
    body: TransitionIn,
    svc: ServiceDep,
    who: PrincipalDep,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    expected = expected_version(if_match, hazard_id)
    hazard = svc.ledger.transition(
        hazard_id,
        body.to,
        actor=who.name,
        role=who.role,
        expected_version=expected,
        comment=body.comment,
        grade=body.grade,
        category=body.category,
        responsible=body.responsible,
        road_chief=body.road_chief,
        deadline=body.deadline,
    )
    return _feature_response(hazard, request=request)


@router.get(
    "/hazards/{hazard_id}/history",
    summary="Every recorded event of a hazard",
    description=(
        "Engineer, supervisor and admin tokens see each actor as recorded (token label and "
        "id). Anonymous and reporter callers never do: they see the actor's role and, with "
        "TRAFFICUNIT_LEDGER_PUBLIC_ACTORS=names, the display name the admin set for that token "
        "(TRAFFICUNIT_LEDGER_PUBLIC_NAMES), or nothing with =none."
    ),
)
def hazard_history(hazard_id: str, svc: ServiceDep, reader: ReaderDep) -> JSONResponse:
    events = svc.ledger.history(hazard_id)
    if not sees_actors(reader):
        events = public_events(events, svc.settings)
    return JSONResponse(
        {"id": f"H{parse_hazard_id(hazard_id)}", "version": events[-1]["version"], "events": events}
    )


@router.get("/hazards/{hazard_id}/reports", summary="The reports of a hazard (duplicates linked)")
def hazard_reports(hazard_id: str, svc: ServiceDep, reader: ReaderDep) -> JSONResponse:
    svc.ledger.get(hazard_id)
    reports = svc.ledger.reports(hazard_id)
    if not sees_actors(reader):
        reports = public_reports(reports, svc.settings)
    return JSONResponse({"id": f"H{parse_hazard_id(hazard_id)}", "reports": reports})


@router.get("/hazard-categories", summary="The hazard category catalogue and the lifecycle")
def hazard_categories(svc: ServiceDep, reader: ReaderDep) -> JSONResponse:
    cat = svc.ledger.catalogue
    rules = svc.rules
    return JSONResponse(
        {
            **cat.document,
            "version": cat.version,
            "items": sorted(cat.items),
            "grades": list(GRADES),
            "deadline_days": rules.deadline_days,
            "states": list(STATES),
            "transitions": [
                {"from": a, "to": b, "action": act} for (a, b), act in TRANSITIONS.items()
            ],
            "duplicates": {
                "distance_m": rules.duplicate_distance_m,
                "window_days": rules.duplicate_window_days,
            },
        }
    )


@router.post(
    "/hazard-sweeps",
    summary="Run the overdue escalation and crash reopening now (supervisors)",
)
async def hazard_sweep(
    request: Request,
    svc: ServiceDep,
    who: Annotated[Principal, Depends(needs("escalate"))],
) -> JSONResponse:
    store = request.app.state.store
    store.check()
    out = await run_in_threadpool(svc.sweep, store)
    return JSONResponse(out)
