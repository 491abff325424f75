"""Accident-driven investigations, accident↔hazard links, the fatal-accident review (回头看) and
listed supervision levels with the ``escalate`` transition."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import investigations as inv
from trafficunit.ledger import supervision as sup

from ..deps import comma_list
from ..errors import BadRequest
from ..ledger import (
    EscalateDep,
    PrincipalDep,
    ReaderDep,
    VersionedWrite,
    acting,
    responses,
    versioned,
)
from ..operations import OpsDep
from .hazards import HAZARD_ETAG

router = APIRouter(tags=["investigations"])

#: The caller (supervisors) and If-Match header of a hazard's escalation.
EscalateWrite = Annotated[
    VersionedWrite, Depends(versioned(HAZARD_ETAG, param="hazard_id", action="escalate"))
]

_ERRORS = responses(400, 401, 403, 409, _404="No such investigation, accident or hazard")


def _accidents(request: Request) -> Any:
    """The data folder's accidents (a frame), or None."""
    acc = request.app.state.store.tables.get("accidents")
    return acc.frame if acc is not None else None


class InvestigationIn(BaseModel):
    """A transition of an investigation."""

    model_config = ConfigDict(extra="forbid")
    to: Literal["investigated", "closed"]
    hazards: list[str] = Field(
        default_factory=list, max_length=100, description="Hazard ids found (to=investigated)"
    )
    comment: str | None = Field(default=None, max_length=4000)
    version: int | None = Field(default=None, description="The version read (optional check)")


class LinkIn(BaseModel):
    """One more hazard linked to an investigated accident."""

    model_config = ConfigDict(extra="forbid")
    hazard: str = Field(max_length=40)


class ReviewIn(BaseModel):
    """A supervisor's confirmation of a fatal accident's four checks."""

    model_config = ConfigDict(extra="forbid")
    checks: dict[str, bool]
    comment: str | None = Field(default=None, max_length=4000)


class EscalateIn(BaseModel):
    """The ``escalate`` transition: the level (default: the next one up)."""

    model_config = ConfigDict(extra="forbid")
    level: str | None = Field(default=None, max_length=40)
    comment: str | None = Field(default=None, max_length=4000)


@router.get("/investigations", summary="Accident investigations by state, unit, severity")
def list_investigations(
    ops: OpsDep,
    reader: ReaderDep,
    state: Annotated[str | None, Query(description="open,investigated,closed")] = None,
    unit_id: Annotated[str | None, Query()] = None,
    severity: Annotated[str | None, Query(description="e.g. K,A")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> JSONResponse:
    total, items = inv.list_investigations(
        ops.ledger,
        states=comma_list(state),
        unit_id=unit_id,
        severities=comma_list(severity),
        limit=limit,
        offset=offset,
    )
    return JSONResponse({"total": total, "items": items}, headers={"X-Total-Count": str(total)})


@router.get("/investigations/{accident_id}", summary="One investigation with links and history")
def get_investigation(accident_id: str, ops: OpsDep, reader: ReaderDep) -> JSONResponse:
    return JSONResponse(inv.get_investigation(ops.ledger, accident_id))


@router.post(
    "/investigations/{accident_id}/transitions",
    summary="Investigate (hazards found, linked, or none found) or close an investigation",
    responses=_ERRORS,
)
def transition_investigation(
    accident_id: str, body: InvestigationIn, ops: OpsDep, who: PrincipalDep
) -> JSONResponse:
    if body.to == "closed" and body.hazards:
        raise BadRequest("hazards are linked when investigating, not when closing")
    v = body.version
    if body.to == "investigated":
        out = inv.investigate(
            ops.ledger,
            accident_id,
            hazards=body.hazards,
            **acting(who),
            comment=body.comment,
            expected_version=v,
        )
    else:
        out = inv.close_investigation(
            ops.ledger, accident_id, **acting(who), comment=body.comment, expected_version=v
        )
    return JSONResponse(out)


@router.post(
    "/investigations/{accident_id}/hazards",
    summary="Link one more hazard to an investigated accident",
    responses=_ERRORS,
)
def link_hazard(accident_id: str, body: LinkIn, ops: OpsDep, who: PrincipalDep) -> JSONResponse:
    return JSONResponse(inv.link_hazard(ops.ledger, accident_id, body.hazard, **acting(who)))


@router.get("/hazards/{hazard_id}/accidents", summary="The accidents linked to a hazard")
def hazard_accidents(hazard_id: str, ops: OpsDep, reader: ReaderDep) -> JSONResponse:
    return JSONResponse(
        {"hazard": hazard_id, "accidents": inv.hazard_accidents(ops.ledger, hazard_id)}
    )


@router.get("/reviews", summary="The fatal-accident review (回头看): every K accident, four checks")
def list_reviews(
    request: Request,
    ops: OpsDep,
    reader: ReaderDep,
    confirmed: Annotated[bool | None, Query(description="Only confirmed / unconfirmed")] = None,
) -> JSONResponse:
    items = inv.reviews(ops.ledger, _accidents(request))
    if confirmed is not None:
        items = [r for r in items if r["confirmed"] is confirmed]
    return JSONResponse({"checks": list(inv.REVIEW_CHECKS), "total": len(items), "items": items})


@router.post(
    "/reviews/{accident_id}",
    summary="Confirm the four checks of a fatal accident (supervisors)",
    responses=_ERRORS,
)
def confirm_review(
    accident_id: str, body: ReviewIn, request: Request, ops: OpsDep, who: PrincipalDep
) -> JSONResponse:
    out = inv.confirm_review(
        ops.ledger,
        accident_id,
        body.checks,
        **acting(who),
        comment=body.comment,
        accidents=_accidents(request),
    )
    return JSONResponse(out)


@router.post(
    "/hazards/{hazard_id}/escalate",
    summary="Escalate a hazard's listed supervision to a level (needs If-Match)",
    responses={**_ERRORS, **responses(412, 428)},
)
def escalate_hazard(
    hazard_id: str,
    body: EscalateIn,
    ops: OpsDep,
    write: EscalateWrite,
) -> JSONResponse:
    out = sup.escalate(
        ops.ledger,
        hazard_id,
        level=body.level,
        settings=ops.supervision,
        **write.keywords(),
        comment=body.comment,
    )
    h = ops.ledger.get(hazard_id)
    return JSONResponse(out, headers={"ETag": h.etag})


@router.get("/supervision", summary="Hazards under listed supervision, with their level")
def supervision(
    ops: OpsDep,
    reader: ReaderDep,
    level: Annotated[str | None, Query(description="Only this level")] = None,
) -> JSONResponse:
    levels = sup.levels_frame(ops.ledger, ops.supervision)
    items = [
        {"id": k, "level": v} for k, v in sorted(levels.items(), key=lambda kv: int(kv[0][1:]))
    ]
    if level is not None:
        items = [i for i in items if i["level"] == level]
    return JSONResponse(
        {
            "levels": list(ops.supervision.levels),
            "escalate_after_days": ops.supervision.escalate_after_days,
            "items": items,
        }
    )


@router.post(
    "/operations/sweep",
    summary="Open due investigations and escalate overdue hazards now (supervisors)",
)
async def operations_sweep(request: Request, ops: OpsDep, who: EscalateDep) -> JSONResponse:
    out = await run_in_threadpool(ops.sweep, request.app.state.store)
    return JSONResponse(out)
