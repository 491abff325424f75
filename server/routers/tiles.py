"""Tiles: stored PMTiles tilesets and live tilesets cut on the fly from in-memory data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from trafficunit._errors import clip
from trafficunit.mvt import CachedTile, TileCache, encode_tile

from ..deps import SettingsDep, StoreDep, TileDep, comma_list, parse_time
from ..errors import BadRequest, NotFound
from ..settings import Settings
from ..store import DataStore
from ..tilehttp import MVT, TileAnswer, live_tile, stored_tile

router = APIRouter(tags=["tiles"])

#: Live tilesets: name -> (layer in the store, description).
LIVE = {
    "live-accidents": ("accidents", "Accidents, filterable: from, to, light=day|night, severity"),
    "live-hazards": ("hazards", "Hazards, filterable: status (comma list), grade"),
    "live-workzones": ("workzones", "Work zones, filterable: active=YYYY-MM-DD"),
    "live-units": ("units", "Units with level and colour at full detail"),
    "live-permits": ("permits", "Active route permits' routes (vehicle, state, windows)"),
}
_CLOSED = ("closed", "accepted")


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
    if name in LIVE and LIVE[name][0] in store.live:
        layer_name, description = LIVE[name]
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
    for name in list(store.archives) + [n for n, (layer, _) in LIVE.items() if layer in store.live]:
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


def _live_mask(
    store: DataStore,
    layer: str,
    key: tuple[Any, ...],
) -> np.ndarray | None:
    """Boolean row mask of a live layer for a filter key (cached per data version)."""
    if all(v is None for v in key):
        return None
    cache = store.mask_cache
    ck = (store.version, layer, key)
    hit = cache.get(ck)
    if hit is not None:
        return hit
    frame = store.live[layer].frame
    mask = np.ones(len(frame), dtype=bool)
    if layer == "accidents":
        start, end, light, severity = key
        extra = store.tables["accidents"].extra
        # live layer rows and table rows are the same rows (deduplicated by event_id)
        t_ns = extra["t_ns"]
        missing = t_ns == np.iinfo(np.int64).min
        if start is not None:
            mask &= ~missing & (t_ns >= start)
        if end is not None:
            mask &= ~missing & (t_ns < end)
        if light is not None:
            mask &= extra[light]
        if severity is not None and "severity" in frame:
            mask &= frame["severity"].isin(severity).to_numpy()
    elif layer == "hazards":
        status, grade = key
        if status is not None and "status" in frame:
            if status == ("open",):
                mask &= ~frame["status"].isin(_CLOSED).to_numpy()
            else:
                mask &= frame["status"].isin(status).to_numpy()
        if grade is not None and "grade" in frame:
            mask &= frame["grade"].isin(grade).to_numpy()
    elif layer == "workzones":
        (active,) = key
        if active is not None and "start" in frame and "end" in frame:
            day = pd.Timestamp(active, unit="ns", tz="UTC")
            s = pd.to_datetime(frame["start"], utc=True, errors="coerce")
            e = pd.to_datetime(frame["end"], utc=True, errors="coerce")
            mask &= ((s <= day + pd.Timedelta(days=1)) & ((e >= day) | e.isna())).to_numpy()
    cache.put(ck, mask)
    return mask


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
    from_: Annotated[
        str | None, Query(alias="from", description="live-accidents: first day")
    ] = None,
    to: Annotated[str | None, Query(description="live-accidents: last day (inclusive)")] = None,
    light: Annotated[str | None, Query(description="live-accidents: day or night")] = None,
    severity: Annotated[str | None, Query(description="live-accidents: e.g. K,A")] = None,
    status: Annotated[str | None, Query(description="live-hazards: statuses, or 'open'")] = None,
    grade: Annotated[str | None, Query(description="live-hazards: general,major")] = None,
    active: Annotated[str | None, Query(description="live-workzones: active on this day")] = None,
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
    query = {
        "from": from_,
        "to": to,
        "light": light,
        "severity": severity,
        "status": status,
        "grade": grade,
        "active": active,
    }
    return _to_response(
        live_answer(
            store,
            settings,
            request.app.state.tile_cache,
            name,
            params.z,
            params.x,
            params.y,
            query,
            accept_encoding=ae,
            if_none_match=inm,
            head=head,
            vary=vary,
        )
    )


def live_answer(
    store: DataStore,
    settings: Settings,
    cache: TileCache,
    name: str,
    z: int,
    x: int,
    y: int,
    query: Mapping[str, str | None],
    *,
    accept_encoding: str | None,
    if_none_match: str | None,
    head: bool,
    vary: str,
) -> TileAnswer:
    """Answer for tile z/x/y of a live tileset with its filters (shared with the fast path)."""
    store.check()  # reloads and ledger hooks: the cache key below carries the data version
    if name not in LIVE or LIVE[name][0] not in store.live:
        raise NotFound(f"no tileset {clip(name)}; see GET /tiles")
    layer_name = LIVE[name][0]
    ts = settings.tiles
    if not ts.live_minzoom <= z <= ts.live_maxzoom:
        raise NotFound(
            f"zoom {z} is outside tileset {clip(name)} (z{ts.live_minzoom}-z{ts.live_maxzoom})"
        )
    key: tuple[Any, ...]
    if layer_name == "accidents":
        light, to = query.get("light"), query.get("to")
        if light not in (None, "", "day", "night", "all"):
            raise BadRequest(f"light must be day or night, got {clip(light)}")
        start = parse_time(query.get("from"), "from")
        end = parse_time(to, "to")
        if end is not None and len(to or "") <= 10:
            end = end + pd.Timedelta(days=1)  # inclusive last day
        if start is not None and end is not None and start >= end:
            raise BadRequest("from must be before to")
        severity = query.get("severity")
        sev = comma_list(severity)
        if sev and not set(sev) <= set("KABCO"):
            raise BadRequest(f"severity must be KABCO letters, got {clip(severity)}")
        key = (
            None if start is None else int(start.value),
            None if end is None else int(end.value),
            None if light in (None, "", "all") else light,
            None if not sev else tuple(sorted(sev)),
        )
    elif layer_name == "hazards":
        st = comma_list(query.get("status"))
        gr = comma_list(query.get("grade"))
        key = (None if not st else tuple(sorted(st)), None if not gr else tuple(sorted(gr)))
    elif layer_name == "workzones":
        day = parse_time(query.get("active"), "active")
        key = (None if day is None else int(day.value),)
    elif layer_name == "permits":  # permits change without moving the data version
        key = (store.live["permits"].data_key(),)  # type: ignore[attr-defined]
    else:
        key = ()
    ck = (name, store.version, z, x, y, key)
    cached = cache.get(ck)
    if cached is None:
        mask = _live_mask(store, layer_name, key) if key else None
        layer = store.live[layer_name].encode(
            z, x, y, mask=mask, extent=ts.extent, buffer=ts.buffer
        )
        cached = CachedTile.from_raw(encode_tile([layer]))
        cache.put(ck, cached)
    return live_tile(
        cached,
        accept_encoding=accept_encoding,
        if_none_match=if_none_match,
        head=head,
        max_age=ts.live_max_age,
        vary=vary,
    )
