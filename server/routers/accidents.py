"""Accidents: list by bbox, period, time of day, severity and unit (GeoJSON or CSV).

The filters are the live-accidents tiles' own (:data:`trafficunit_server.layers.ACCIDENTS`).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ..deps import ListDep, StoreDep
from ..layers import ACCIDENTS
from ..lists import list_response, served_table
from ..zonejoin import ZoneDep, table_zone_rows

router = APIRouter(tags=["accidents"])


@router.get("/accidents", summary="Accidents in a bbox and period (GeoJSON or CSV)")
async def list_accidents(
    request: Request,
    zf: ZoneDep,
    store: StoreDep,
    q: ListDep,
    key: Annotated[tuple[Hashable | None, ...], Depends(ACCIDENTS.dependency())],
) -> Response:
    table = served_table(store, "accidents")
    rows = table_zone_rows(request, table, table.bbox_rows(q.bbox), zf)  # server/zonejoin.py
    rows = ACCIDENTS.rows(table.frame, table.extra, rows, key)
    return list_response(table, rows, q, name="accidents")
