"""Tokens: admins create, list and revoke them; anyone can ask who their token is."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from trafficunit.ledger import ROLES

from ..ledger import PrincipalDep, ServiceDep, TokensDep

router = APIRouter(tags=["tokens"])


class TokenIn(BaseModel):
    """A token to create."""

    model_config = ConfigDict(extra="forbid")

    role: Literal[ROLES] = Field(  # type: ignore[valid-type]
        description="reporter, engineer, supervisor or admin"
    )
    label: str | None = Field(default=None, max_length=200, description="Who holds it")


@router.post("/tokens", status_code=201, summary="Create a token (admins); shown once")
def create_token(body: TokenIn, svc: ServiceDep, who: TokensDep) -> JSONResponse:
    token_id, token = svc.ledger.create_token(body.role, label=body.label, created_by=who.name)
    return JSONResponse(
        {"token_id": token_id, "token": token, "role": body.role, "label": body.label},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/tokens", summary="Every token's id, role and label (admins; never the tokens)")
def list_tokens(svc: ServiceDep, who: TokensDep) -> JSONResponse:
    return JSONResponse({"tokens": svc.ledger.list_tokens()})


@router.get("/tokens/me", summary="The caller's token id and role")
def whoami(who: PrincipalDep) -> JSONResponse:
    return JSONResponse({"token_id": who.token_id, "role": who.role, "label": who.label})


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token (admins)")
def revoke_token(token_id: str, svc: ServiceDep, who: TokensDep) -> Response:
    svc.ledger.revoke_token(token_id)
    return Response(status_code=204)
