"""Black spots: accident-prone points and sections (GeoJSON or CSV)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..deps import ListDep, StoreDep, comma_list
from ..lists import list_response, served_table

router = APIRouter(tags=["black spots"])


@router.get("/black-spots", summary="Accident-prone points and sections (GeoJSON or CSV)")
async def list_black_spots(
    store: StoreDep,
    q: ListDep,
    type: Annotated[str | None, Query(description="point or section")] = None,
) -> Response:
    table = served_table(store, "black_spots")
    rows = table.bbox_rows(q.bbox)
    kinds = comma_list(type)
    if kinds is not None and "type" in table.frame:
        rows = rows[table.frame["type"].iloc[rows].isin(kinds).to_numpy()]
    return list_response(table, rows, q, name="black-spots")
