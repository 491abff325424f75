"""Small dependency functions that parse and validate request inputs (tipg/titiler style)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from trafficunit.errors import clip

from .errors import BadRequest, NotAcceptable, TooLarge
from .layers import comma_list as comma_list  # the parsers of the layer specs, for routes
from .layers import parse_time as parse_time
from .settings import Settings
from .store import DataStore
from .tilehttp import parse_zxy

BBox = tuple[float, float, float, float]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> DataStore:
    """The app's data store, reloaded if files changed."""
    store: DataStore = request.app.state.store
    store.check()
    return store


def bbox_area_km2(bbox: BBox) -> float:
    """Approximate area of a WGS84 bbox, km² (spherical Earth)."""
    minx, miny, maxx, maxy = bbox
    r = 6371.0088
    return (
        math.radians(maxx - minx)
        * r
        * r
        * abs(math.sin(math.radians(maxy)) - math.sin(math.radians(miny)))
    )


async def bbox_query(
    request: Request,
    bbox: Annotated[
        str | None,
        Query(
            description="minlon,minlat,maxlon,maxlat in WGS84 degrees",
            examples=["24.93,60.16,24.95,60.17"],
        ),
    ] = None,
) -> BBox | None:
    """Parse ``bbox``: 400 when malformed, 413 when larger than the configured maximum area."""
    if bbox is None or bbox == "":
        return None
    parts = bbox.split(",")
    if len(parts) != 4:
        raise BadRequest(f"bbox must be minlon,minlat,maxlon,maxlat; got {clip(bbox)}")
    try:
        minx, miny, maxx, maxy = (float(p) for p in parts)
    except ValueError as exc:
        raise BadRequest(f"bbox has a value that is not a number: {clip(bbox)}") from exc
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        raise BadRequest(f"bbox values must be finite: {clip(bbox)}")
    if not (
        -180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90
    ):
        raise BadRequest(f"bbox is outside longitude -180..180 / latitude -90..90: {clip(bbox)}")
    if minx > maxx or miny > maxy:
        raise BadRequest(f"bbox minimum exceeds maximum: {clip(bbox)}")
    settings: Settings = request.app.state.settings
    area = bbox_area_km2((minx, miny, maxx, maxy))
    if area > settings.query.max_bbox_km2:
        raise TooLarge(
            f"bbox covers {area:.0f} km², more than the maximum "
            f"{settings.query.max_bbox_km2:g} km²; ask for a smaller area or use the tiles"
        )
    return (minx, miny, maxx, maxy)


async def limit_query(
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="Most rows returned")] = None,
) -> int:
    """The row limit: default when missing, 400 beyond the configured maximum."""
    settings: Settings = request.app.state.settings
    if limit is None:
        return settings.query.default_limit
    if limit > settings.query.max_limit:
        raise BadRequest(f"limit {limit} exceeds the maximum {settings.query.max_limit}")
    return limit


async def output_format(
    request: Request,
    format: Annotated[
        str | None, Query(description="geojson (default), json or csv; or send Accept: text/csv")
    ] = None,
) -> str:
    """The list format from ``?format=`` or the ``Accept`` header."""
    if format is None:
        accept = request.headers.get("accept", "")
        return "csv" if "text/csv" in accept else "geojson"
    fmt = format.lower()
    if fmt not in ("geojson", "json", "csv"):
        raise NotAcceptable(f"format {clip(format)} is not one of geojson, json, csv")
    return "geojson" if fmt == "json" else fmt


async def properties_query(
    properties: Annotated[
        str | None,
        Query(description="summary (default: without adjacency bookkeeping) or all"),
    ] = None,
) -> bool:
    """Whether a list should carry every property (``properties=all``)."""
    if properties in (None, "", "summary"):
        return False
    if properties == "all":
        return True
    raise BadRequest(f"properties must be summary or all, got {clip(properties)}")


@dataclass(frozen=True)
class ListQuery:
    """The parameters every list of a data-folder table takes: where, how many, in what form."""

    bbox: BBox | None
    limit: int
    fmt: str
    full: bool


async def list_query(
    bbox: Annotated[BBox | None, Depends(bbox_query)],
    limit: Annotated[int, Depends(limit_query)],
    fmt: Annotated[str, Depends(output_format)],
    full: Annotated[bool, Depends(properties_query)],
) -> ListQuery:
    """``bbox``, ``limit``, ``format`` (or ``Accept``) and ``properties`` of a list route."""
    return ListQuery(bbox, limit, fmt, full)


@dataclass(frozen=True)
class TileParams:
    """A parsed tile request."""

    tileset: str
    z: int
    x: int
    y: int


async def tile_params(
    tileset: Annotated[str, Path(description="Tileset name, see GET /tiles")],
    z: Annotated[str, Path(description="Zoom")],
    x: Annotated[str, Path(description="Column")],
    y: Annotated[str, Path(description="Row (XYZ scheme)")],
) -> TileParams:
    """Parse z/x/y path strings: 400 for anything that is not a valid tile address."""
    zi, xi, yi = parse_zxy(z, x, y)
    return TileParams(tileset, zi, xi, yi)


StoreDep = Annotated[DataStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
BBoxDep = Annotated[BBox | None, Depends(bbox_query)]
LimitDep = Annotated[int, Depends(limit_query)]
FormatDep = Annotated[str, Depends(output_format)]
TileDep = Annotated[TileParams, Depends(tile_params)]
FullDep = Annotated[bool, Depends(properties_query)]
#: ``tree`` and ``parent`` of the routes over the zones of a jurisdiction tree (/kpis, /zones).
TreeQuery = Annotated[
    str | None, Query(description="Zone tree (admin, police, grid...; default: admin or the first)")
]
ParentQuery = Annotated[str | None, Query(description="Only the children of this zone code")]
ListDep = Annotated[ListQuery, Depends(list_query)]
