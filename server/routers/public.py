"""Tokenless citizen reports (rate- and size-limited, a private receipt) and evidence files."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import evidence as ev
from trafficunit.ledger.public import public_report, receipt_status

from ..errors import BadRequest, TooLarge
from ..ledger import PrincipalDep, ReaderDep, acting, responses
from ..operations import OpsDep

router = APIRouter(tags=["public"])


class PointIn(BaseModel):
    """A GeoJSON point, WGS84."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2)


class PublicReportIn(BaseModel):
    """A citizen's report: where, what (a catalogue item), and optionally a description."""

    model_config = ConfigDict(extra="forbid")
    geometry: PointIn
    category: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    road_name: str | None = Field(default=None, max_length=200)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its ``$defs`` references inlined (OpenAPI resolves ``$ref`` from the
    document's root, where ``#/$defs/...`` does not exist)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.split("/")[-1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


@router.post(
    "/public/reports",
    status_code=201,
    summary="Report a hazard without a token (rate-limited; answers a private receipt)",
    responses=responses(
        413,
        _400="Invalid geometry or category",
        _429="Too many reports from this client; see Retry-After",
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline(PublicReportIn.model_json_schema())}
            },
        }
    },
)
async def create_public_report(request: Request, ops: OpsDep) -> JSONResponse:
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and (declared.isascii() and declared.isdigit())
        and int(declared) > ops.ops.public_max_bytes
    ):
        raise TooLarge(f"a public report is at most {ops.ops.public_max_bytes} bytes")
    raw = await request.body()
    if len(raw) > ops.ops.public_max_bytes:
        raise TooLarge(f"a public report is at most {ops.ops.public_max_bytes} bytes")
    ok, wait = await run_in_threadpool(ops.public_limiter.allow, _client(request))
    if not ok:
        return JSONResponse(
            {"detail": "too many reports from this client; try again later"},
            status_code=429,
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )
    try:
        body = PublicReportIn.model_validate_json(raw)
    except ValueError as exc:
        raise BadRequest(f"invalid report: {str(exc).splitlines()[0]}") from exc
    out = await run_in_threadpool(
        public_report,
        ops.ledger,
        body.geometry.model_dump(),
        category=body.category,
        description=body.description,
        road_name=body.road_name,
    )
    ops.ledger_svc.note_write()
    return JSONResponse(
        {**out, "status_url": f"/public/reports/{out['receipt']}"},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/public/reports/{receipt}", summary="The status of the report a receipt names")
def get_public_report(receipt: str, ops: OpsDep) -> JSONResponse:
    return JSONResponse(receipt_status(ops.ledger, receipt), headers={"Cache-Control": "no-store"})


@router.post(
    "/evidence/{owner_type}/{owner_id}",
    status_code=201,
    summary="Attach a photo or document (raw body: JPEG, PNG, WebP or PDF)",
    responses=responses(
        _400="Empty, not an allowed type, or too large",
        _404="No such hazard, investigation or review",
    ),
)
async def attach_evidence(
    owner_type: Literal["hazard", "investigation", "review"],
    owner_id: str,
    request: Request,
    ops: OpsDep,
    who: PrincipalDep,
    filename: Annotated[str, Query(max_length=200, description="The file's name")] = "evidence",
) -> JSONResponse:
    data = await request.body()
    if len(data) > ops.ops.evidence_max_bytes:
        raise TooLarge(f"evidence is at most {ops.ops.evidence_max_bytes} bytes")
    out = await run_in_threadpool(
        ev.attach,
        ops.ledger,
        ops.evidence_dir,
        owner_type,
        owner_id,
        data,
        filename=filename,
        **acting(who),
        max_bytes=ops.ops.evidence_max_bytes,
    )
    return JSONResponse(out, status_code=201, headers={"Location": out["href"]})


@router.get(
    "/evidence/{owner_type}/{owner_id}", summary="The evidence of a hazard, investigation or review"
)
def list_evidence(
    owner_type: Literal["hazard", "investigation", "review"],
    owner_id: str,
    ops: OpsDep,
    reader: ReaderDep,
) -> JSONResponse:
    return JSONResponse({"items": ev.list_evidence(ops.ledger, owner_type, owner_id)})


@router.get(
    "/evidence/{evidence_id}",
    summary="An evidence file, with its content type",
    response_class=Response,
    responses={200: {"content": {t: {} for t in ev.ALLOWED_TYPES}}},
)
def get_evidence(evidence_id: str, ops: OpsDep, reader: ReaderDep) -> Response:
    meta, data = ev.read_evidence(ops.ledger, ops.evidence_dir, evidence_id)
    headers: dict[str, Any] = {
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(meta['filename'])}",
        "ETag": f'"{meta["sha256"]}"',
        "Cache-Control": "private, max-age=3600",
    }
    return Response(data, media_type=meta["content_type"], headers=headers)
