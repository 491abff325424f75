"""Health, style, legend and the web map page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import StoreDep
from ..layers import ACCIDENTS
from ..store import DataStore
from ..style import legend, style
from ..supervision import worker_info

router = APIRouter(tags=["meta"])


def _legend(store: DataStore) -> dict[str, object]:
    units = store.table("units")
    counts = {}
    if units is not None and "level" in units.frame:
        counts = units.frame["level"].value_counts().to_dict()
    data = legend(store.rule(), counts)
    data["generated_sample"] = bool(store.manifest.get("generated_sample", False))
    data["period"] = store.manifest.get("period")
    return data


@router.get("/healthz", summary="Liveness, worker count, data version and what is loaded")
async def healthz(store: StoreDep) -> JSONResponse:
    return JSONResponse(
        {
            "status": "ok",
            "data_version": store.version,
            "workers": worker_info(),
            "tables": {k: len(v) for k, v in store.tables.items()},
            "tilesets": sorted(store.archives),
            "problems": store.problems,
        }
    )


@router.get(
    "/readyz",
    summary="Readiness: 200 once the data folder and the ledger are loaded, else 503",
    responses={503: {"description": "Not ready: the reason is in `detail`"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    store: DataStore | None = getattr(state, "store", None)
    reason = None
    if store is None:
        reason = "the data folder is not loaded yet"
    elif getattr(state, "ledger", None) is None:
        reason = "the hazard ledger is not open yet"
    else:
        store.check()
        if store.table("units") is None:
            reason = f"the data folder {store.data_dir} has no units table (units.parquet)"
    if reason is not None:
        return JSONResponse(
            {"status": "not ready", "detail": reason}, status_code=503, headers={"Retry-After": "1"}
        )
    assert store is not None
    return JSONResponse({"status": "ready", "data_version": store.version})


@router.get("/legend", summary="Legend of the risk levels and the rule behind them")
async def legend_route(store: StoreDep) -> JSONResponse:
    return JSONResponse(_legend(store))


@router.get("/style.json", summary="MapLibre style of the risk layers")
async def style_route(request: Request, store: StoreDep) -> JSONResponse:
    tilesets = [n for n in store.archives if n != "basemap"]
    risk = "risk" if "risk" in store.archives else next(iter(tilesets), None)
    live = [ACCIDENTS.tileset] if ACCIDENTS.layer in store.live else []
    ts = request.app.state.settings.tiles
    data = style(
        str(request.base_url),
        risk_tileset=risk,
        live=live,
        legend_data=_legend(store),
        live_zooms=(ts.live_minzoom, ts.live_maxzoom),
        basemap="basemap" if "basemap" in store.archives else None,
    )
    extent = store.extent()
    if extent:  # the map opens on the units' extent
        data["center"] = extent["center"]
        data["zoom"] = zoom_for(extent["bounds"])
        data.setdefault("metadata", {})["trafficunit:bounds"] = extent["bounds"]
    return JSONResponse(data)


def zoom_for(bounds: list[float], width_px: int = 1024, height_px: int = 768) -> float:
    """The zoom at which ``bounds`` (WGS84) fits a ``width_px`` × ``height_px`` map."""
    import math

    w, s, e, n = bounds

    def merc_y(lat: float) -> float:
        lat = max(min(lat, 85.0511), -85.0511)
        return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    dx = max((e - w) / 360.0, 1e-9)
    dy = max((merc_y(n) - merc_y(s)) / (2 * math.pi), 1e-9)
    z = min(math.log2(width_px / 512 / dx), math.log2(height_px / 512 / dy))
    return round(max(0.0, min(z, 18.0)), 2)
