"""Tiles: stored PMTiles tilesets and live tilesets cut on the fly from in-memory data."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from trafficunit.errors import clip

from ..deps import SettingsDep, StoreDep, TileDep
from ..errors import NotFound
from ..layers import LIVE, live_answer, tile_query_dependency
from ..store import DataStore
from ..tilehttp import MVT, TileAnswer, stored_tile

router = APIRouter(tags=["tiles"])


def _to_response(answer: TileAnswer) -> Response:
    resp = Response(content=answer.body, status_code=answer.status)
    for k, v in answer.headers:
        resp.headers[k] = v
    if answer.status in (204, 304):
        del resp.headers["content-length"]
    return resp


def _vary(request: Request) -> str:
    origins = request.app.state.settings.cors_origins
    return "Accept-Encoding" if origins == ["*"] else "Accept-Encoding, Origin"


def _tilejson(request: Request, store: DataStore, name: str) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/")
    settings = request.app.state.settings
    if name in store.archives:
        a = store.archives[name]
        a.check()
        return {
            "tilejson": "3.0.0",
            "name": a.metadata.get("name", name),
            "description": a.metadata.get("description", ""),
            "attribution": a.metadata.get("attribution", ""),
            "version": "1.0.0",
            "scheme": "xyz",
            "tiles": [f"{base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt"],
            "minzoom": a.minzoom,
            "maxzoom": a.maxzoom,
            "bounds": a.bounds,
            "center": a.center,
            "vector_layers": a.vector_layers(),
        }
    if name in LIVE and LIVE[name].layer in store.live:
        layer_name, description = LIVE[name].layer, LIVE[name].description
        layer = store.live[layer_name]
        bounds = list(layer.frame.total_bounds) if len(layer) else [-180, -85, 180, 85]
        fields = {
            c.name: c.kind.replace("str", "String")
            .replace("float", "Number")
            .replace("int", "Number")
            .replace("bool", "Boolean")
            for c in layer.columns
        }
        return {
            "tilejson": "3.0.0",
            "name": name,
            "description": description,
            "version": "1.0.0",
            "scheme": "xyz",
            "tiles": [f"{base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt"],
            "minzoom": settings.tiles.live_minzoom,
            "maxzoom": settings.tiles.live_maxzoom,
            "bounds": [float(b) for b in bounds],
            "vector_layers": [
                {
                    "id": layer_name,
                    "fields": fields,
                    "minzoom": settings.tiles.live_minzoom,
                    "maxzoom": settings.tiles.live_maxzoom,
                }
            ],
        }
    raise NotFound(f"no tileset {clip(name)}; see GET /tiles")


@router.get("/tiles", summary="The tilesets served")
async def list_tilesets(request: Request, store: StoreDep) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    out = []
    for name in list(store.archives) + [n for n, spec in LIVE.items() if spec.layer in store.live]:
        out.append(
            {
                "name": name,
                "kind": "live" if name in LIVE else "stored",
                "tilejson": f"{base}/tiles/{name}/tilejson.json",
            }
        )
    return JSONResponse({"tilesets": out})


@router.get("/tiles/{tileset}/tilejson.json", summary="TileJSON 3.0.0 of a tileset")
async def tilejson(request: Request, tileset: str, store: StoreDep) -> JSONResponse:
    return JSONResponse(_tilejson(request, store, tileset))


@router.get(
    "/tiles/{tileset}/{z}/{x}/{y}.mvt",
    operation_id="get_tile",
    summary="One vector tile",
    response_class=Response,
    responses={
        200: {"content": {MVT: {}}, "description": "The tile (gzip when accepted)"},
        204: {"description": "No feature in this tile (inside the zoom range)"},
        304: {"description": "Not modified (If-None-Match)"},
        400: {"description": "Malformed z/x/y or filter"},
        404: {"description": "Unknown tileset, or zoom outside its range"},
    },
)
@router.head(
    "/tiles/{tileset}/{z}/{x}/{y}.mvt",
    operation_id="head_tile",
    summary="Headers of one vector tile",
    response_class=Response,
)
async def tile(
    request: Request,
    params: TileDep,
    store: StoreDep,
    settings: SettingsDep,
    query: Annotated[dict[str, str | None], Depends(tile_query_dependency())],
) -> Response:
    head = request.method == "HEAD"
    ae = request.headers.get("accept-encoding")
    inm = request.headers.get("if-none-match")
    vary = _vary(request)
    name = params.tileset
    if name in store.archives:
        return _to_response(
            stored_tile(
                store.archives[name],
                params.z,
                params.x,
                params.y,
                accept_encoding=ae,
                if_none_match=inm,
                head=head,
                max_age=settings.tiles.max_age,
                vary=vary,
            )
        )
    return _to_response(
        live_answer(
            store,
            settings,
            request.app.state.tile_cache,
            name,
            (params.z, params.x, params.y),
            query,
            accept_encoding=ae,
            if_none_match=inm,
            head=head,
            vary=vary,
        )
    )
