"""Hazards: report, list and filter, read, transition (with If-Match), history, categories."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import shapely
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from trafficunit.errors import clip
from trafficunit.ledger import SOURCES, Hazard, parse_hazard_id
from trafficunit.ledger.lifecycle import ASSIGNED, GRADES, OPEN_STATES, STATES, TRANSITIONS

from ..deps import BBoxDep, FormatDep, LimitDep, comma_list
from ..errors import BadRequest, NotFound
from ..ledger import (
    EscalateDep,
    EtagRule,
    IfNoneMatch,
    PreconditionRequired,
    ReaderDep,
    ReportDep,
    ServiceDep,
    VersionedWrite,
    acting,
    feature_collection,
    geojson,
    not_modified,
    public_events,
    public_reports,
    responses,
    sees_actors,
    versioned,
)
from ..zonejoin import ZoneDep, list_hazards_in, zone_features

__all__ = ["HAZARD_ETAG", "PreconditionRequired", "router"]

router = APIRouter(tags=["hazards"])


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
    road_chief: str | None = Field(default=None, max_length=200, description=ASSIGNED)
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
    body.update(extra or {})
    return geojson(body, status=status, etag=hazard.etag, location=f"/hazards/{hazard.id}")


#: How a hazard's ETag reads in ``If-Match`` (428 when absent).
HAZARD_ETAG = EtagRule.numbered(
    "H",
    "hazard",
    parse_hazard_id,
    needs_text=lambda hazard_id: (
        "transitions need an If-Match header with the hazard's ETag (from GET "
        f"/hazards/{hazard_id}), so a stale write changes nothing"
    ),
)
#: The caller (any token) and If-Match header of a hazard's transition.
HazardWrite = Annotated[VersionedWrite, Depends(versioned(HAZARD_ETAG, param="hazard_id"))]


@router.post(
    "/hazards",
    status_code=201,
    summary="Report a hazard (201 new; 200 when linked to an open hazard it repeats)",
    responses=responses(
        401,
        413,
        429,
        _201="A new hazard, with its unit_ids, version and ETag",
        _200="Linked to an open hazard of the same category nearby",
        _400="Invalid geometry, unknown category, bad field",
        _403="The token's role may not report",
        _422="Implausible geometry: larger or longer than a hazard may be, or far from the "
        "served units (with a hint when longitude and latitude look swapped)",
    ),
)
def report_hazard(
    body: HazardIn, svc: ServiceDep, request: Request, who: ReportDep
) -> JSONResponse:
    request.app.state.store.check()  # the ledger assigns to the store's current units
    res = svc.ledger.report(**body.model_dump(), **acting(who))
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
        states = list(OPEN_STATES)
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
        headers = {
            "X-Total-Count": str(total),
            "Content-Disposition": 'attachment; filename="hazards.csv"',
        }
        return Response(
            frame.to_csv(index=False), media_type="text/csv; charset=utf-8", headers=headers
        )
    return feature_collection(zone_features(request, hazards), total)  # with zone codes


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
    if_none_match: IfNoneMatch = None,
) -> Response:
    hazard = svc.ledger.get(hazard_id)
    return not_modified(if_none_match, hazard.etag) or _feature_response(hazard, request=request)


@router.post(
    "/hazards/{hazard_id}/transitions",
    summary="Move a hazard through its lifecycle (needs If-Match)",
    responses=responses(
        401,
        412,
        428,
        429,
        _200="The hazard after the transition, with its new ETag",
        _400="Missing or invalid field (grade, responsible, comment...)",
        _403="The token's role may not do this transition",
        _404="No such hazard",
        _409="The lifecycle does not allow this transition now",
    ),
)
def transition_hazard(
    hazard_id: str,
    request: Request,
    body: TransitionIn,
    svc: ServiceDep,
    write: HazardWrite,
) -> JSONResponse:
    fields = body.model_dump(exclude={"to"})
    hazard = svc.ledger.transition(hazard_id, body.to, **write.keywords(), **fields)
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
async def hazard_sweep(request: Request, svc: ServiceDep, who: EscalateDep) -> JSONResponse:
    store = request.app.state.store
    store.check()
    out = await run_in_threadpool(svc.sweep, store)
    return JSONResponse(out)
