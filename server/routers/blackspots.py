"""Black spots: accident-prone points and sections (GeoJSON or CSV)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..deps import BBoxDep, FormatDep, FullDep, LimitDep, StoreDep, comma_list
from ..errors import Unavailable
from ..lists import list_response

router = APIRouter(tags=["black spots"])


@router.get("/black-spots", summary="Accident-prone points and sections (GeoJSON or CSV)")
async def list_black_spots(
    store: StoreDep,
    bbox: BBoxDep,
    limit: LimitDep,
    fmt: FormatDep,
    full: FullDep,
    type: Annotated[str | None, Query(description="point or section")] = None,
) -> Response:
    table = store.table("black_spots")
    if table is None:
        raise Unavailable(store.missing("black_spots"))
    rows = table.bbox_rows(bbox)
    kinds = comma_list(type)
    if kinds is not None and "type" in table.frame:
        rows = rows[table.frame["type"].iloc[rows].isin(kinds).to_numpy()]
    return list_response(table, rows, fmt=fmt, limit=limit, name="black-spots", full=full)
