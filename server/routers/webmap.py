"""What the web map needs beyond the data routes: its config, "why this colour" per unit, black
spot profiles, and the offline API docs pages (Swagger UI, ReDoc) with hardened headers.

The explanations are structured (counts, shares, codes), not sentences: the page words them in
the reader's language from the message catalogue (:mod:`trafficunit_server.i18n`). The work is the
library's :func:`trafficunit.risk.describe_events` (as :func:`trafficunit.risk.explain` uses).
"""

from __future__ import annotations

import math
from importlib.resources import files
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from trafficunit.ledger import PERMISSIONS, TRANSITIONS
from trafficunit.risk import describe_events

from ..alerts import TRANSITIONS as ALERT_TRANSITIONS
from ..deps import StoreDep
from ..errors import NotFound, Unavailable
from ..i18n import LANGUAGES
from ..store import DataStore, Table

router = APIRouter(tags=["web map"])


def _csp(connect: str = "") -> str:
    """Content-Security-Policy of the HTML pages: only this origin (plus ``connect``)."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; "
        f"connect-src 'self'{(' ' + connect) if connect else ''}; "
        "worker-src 'self' blob:; child-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def html_page(name: str, *, connect: str = "") -> HTMLResponse:
    """A static HTML page with CSP, nosniff, frame and referrer policies.

    The pages share their opening (doctype, charset, viewport, icon): ``static/head.html``
    stands before each page's own ``<title>``, links and body.
    """
    static = files("trafficunit_server") / "static"
    return HTMLResponse(
        (static / "head.html").read_text(encoding="utf-8")
        + (static / name).read_text(encoding="utf-8"),
        headers={
            "Content-Security-Policy": _csp(connect),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


def _origin(url: str | None) -> str:
    """``scheme://host[:port]`` of an external URL ('' for none or a relative one)."""
    if not url or "://" not in url:
        return ""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def index(request: Request) -> HTMLResponse:
    ext = request.app.state.settings.basemap_style
    # an external basemap style may pull tiles, glyphs and sprites from anywhere it names
    return html_page("index.html", connect=f"{_origin(ext)} https:" if ext else "")


@router.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return html_page("docs.html")


@router.api_route("/redoc", methods=["GET", "HEAD"], include_in_schema=False)
async def redoc() -> HTMLResponse:
    return html_page("redoc.html")


def _bounds(store: DataStore) -> list[float] | None:
    units = store.table("units")
    if units is None or len(units.frame) == 0:
        return None
    b = [float(v) for v in units.frame.total_bounds]
    return b if all(math.isfinite(v) for v in b) else None


@router.get("/map-config", summary="What the web map needs: extent, languages, roles, basemap")
async def map_config(request: Request, store: StoreDep) -> JSONResponse:
    settings = request.app.state.settings
    return JSONResponse(
        {
            "bounds": _bounds(store),
            "languages": list(LANGUAGES),
            "permissions": {role: sorted(acts) for role, acts in PERMISSIONS.items()},
            "transitions": [{"from": a, "to": b, "action": c} for (a, b), c in TRANSITIONS.items()],
            "alert_transitions": [
                {"from": a, "to": b, "action": c} for (a, b), c in ALERT_TRANSITIONS.items()
            ],
            "basemap": {
                "tileset": "basemap" if "basemap" in store.archives else None,
                "style": settings.basemap_style,
            },
        }
    )


def _finite(v: Any, digits: int | None = None) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(f):
        return None
    return round(f, digits) if digits is not None else f


def _profile(desc: pd.DataFrame, key: Any) -> dict[str, Any]:
    """The describe_events columns of one group, JSON-ready (shares 0..1)."""
    if key not in desc.index:
        return {"top_type": None, "top_type_share": None, "top_time": None,
                "top_time_share": None, "night_share": None}  # fmt: skip
    row = desc.loc[key]
    out: dict[str, Any] = {}
    for col in ("top_type", "top_time"):
        v = row.get(col)
        out[col] = None if v is None or pd.isna(v) else str(v)
        out[f"{col}_share"] = _finite(row.get(f"{col}_share"), 3)
    out["night_share"] = _finite(row.get("night_share"), 3)
    return out


def _accident_rows(table: Table, column: str, wanted: set[str]) -> pd.DataFrame:
    frame = table.frame
    keys = frame[column].astype("string")
    return frame.loc[keys.isin(wanted).fillna(False).to_numpy(dtype=bool)]


def _medians(units: Table) -> dict[str, pd.Series]:
    """Per reference population: median speed limit, 90th percentile of turning (cached)."""
    cached = units.extra.get("why_medians")
    if cached is None:
        f = units.frame
        pop = f["reference_population"] if "reference_population" in f else f["kind"]
        cached = {}
        if "maxspeed_kmh" in f:
            cached["speed"] = (
                pd.to_numeric(f["maxspeed_kmh"], errors="coerce").groupby(pop).median()
            )
        if "turn_deg_per_km" in f:
            tv = pd.to_numeric(f["turn_deg_per_km"], errors="coerce")
            cached["turn"] = tv.groupby(pop).quantile(0.9)
        units.extra["why_medians"] = cached
    return cached


def _attributes(units: Table, row: pd.Series) -> list[dict[str, Any]]:
    """Attributes standing out against the unit's reference population (as risk.explain)."""
    med = _medians(units)
    pop = row.get("reference_population", row.get("kind"))
    out: list[dict[str, Any]] = []
    speed = _finite(row.get("maxspeed_kmh"))
    median = _finite(med["speed"].get(pop)) if "speed" in med else None
    if speed is not None and median is not None and speed > median:
        out.append({"key": "speed", "speed_kmh": speed, "median_kmh": median})
    if str(row.get("lit")).lower() in ("no", "false", "0"):
        out.append({"key": "unlit"})
    if str(row.get("sidewalk")).lower() in ("no", "none"):
        out.append({"key": "no_sidewalk"})
    lanes = _finite(row.get("lanes"))
    if lanes is not None and lanes >= 4:
        out.append({"key": "lanes", "n": int(lanes)})
    for flag in ("bridge", "tunnel"):
        if str(row.get(flag)).lower() not in ("no", "false", "0", "<na>", "", "none", "nan"):
            out.append({"key": flag})
    turn = _finite(row.get("turn_deg_per_km"))
    q = _finite(med["turn"].get(pop)) if "turn" in med else None
    if turn is not None and q is not None and turn > q and turn > 0:
        out.append({"key": "winding", "n": round(turn)})
    degree = _finite(row.get("degree"))
    if row.get("kind") == "intersection" and degree is not None and degree >= 5:
        out.append({"key": "legs", "n": int(degree)})
    return out


def _why(store: DataStore, unit_id: str) -> dict[str, Any]:
    units = store.table("units")
    if units is None:
        raise Unavailable("no units.parquet in the data folder; build it with `trafficunit demo`")
    f = units.frame
    hit = np.flatnonzero(f["unit_id"].astype(str).to_numpy() == unit_id)
    if not len(hit):
        raise NotFound(f"no unit {unit_id!r}")
    row = f.iloc[int(hit[0])]
    rule = store.rule()
    guards = rule.get("guards") or {}
    measure = (rule.get("measure") or {}).get(str(row.get("kind")))
    crashes = int(row.get("crashes") or 0)
    value = _finite(row.get("risk_measure"))
    guard = None
    if crashes < int(guards.get("min_crashes") or 0):
        guard = "min_crashes"
    elif guards.get("positive_only") and (value is None or value <= 0):
        guard = "positive_only"
    acc = store.table("accidents")
    profile = _profile(pd.DataFrame(), unit_id)
    if acc is not None and "unit_id" in acc.frame:
        rows = _accident_rows(acc, "unit_id", {unit_id})
        if len(rows):
            desc = describe_events(rows, rows["unit_id"].astype(object))
            profile = _profile(desc, unit_id)
    crash_rank = row.get("crash_level_rank")
    levels = ["blue", "yellow", "orange", "red"]
    crash_level = (
        levels[int(crash_rank) - 1]
        if crash_rank is not None and 1 <= int(crash_rank) <= 4
        else None
    )
    return {
        "unit_id": unit_id,
        "level": row.get("level"),
        "crash_level": crash_level,
        "measure": measure,
        "population": rule.get("population", []),
        "percentile": _finite(row.get("score_percentile"), 1),
        "guard": guard,
        "observed": crashes,
        "expected": _finite(row.get("eb_expected"), 2),
        "severity": {k: int(row.get(k) or 0) for k in ("K", "A", "B", "C", "O") if k in f},
        **profile,
        "attributes": _attributes(units, row),
        "open_hazards": int(row.get("open_hazards") or 0),
        "open_major_hazards": int(row.get("open_major_hazards") or 0),
    }


@router.get(
    "/units/{unit_id}/why",
    summary="Why a unit has its colour: rank, guards, severity, dominant type and time, attributes",
)
async def unit_why(unit_id: str, store: StoreDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_why, store, unit_id))


def _spot_profiles(store: DataStore) -> dict[str, Any]:
    spots = store.table("black_spots")
    if spots is None:
        raise Unavailable("no black_spots.parquet in the data folder; run `trafficunit demo`")
    cached = spots.extra.get("profiles")
    if cached is not None:
        return cached
    f = spots.frame
    # a black-spot table made elsewhere may lack the event list: its profiles are then empty
    listed = f["event_ids"] if "event_ids" in f else pd.Series(pd.NA, index=f.index)
    ids = listed.astype("string").str.split(";").explode().dropna()
    link = pd.DataFrame(
        {"spot": f["spot_id"].astype(str).to_numpy()[ids.index], "event": ids.to_numpy()}
    )
    out: dict[str, Any] = {}
    acc = store.table("accidents")
    desc = pd.DataFrame()
    if acc is not None and len(link):
        ev = acc.frame.reset_index(drop=True)
        pos = pd.Index(ev["event_id"].astype(str)).get_indexer(link["event"])
        ok = pos >= 0
        rows = ev.iloc[pos[ok]]
        desc = describe_events(rows, pd.Series(link["spot"].to_numpy()[ok], index=rows.index))
    units = store.table("units")
    speed = None
    if units is not None and "maxspeed_kmh" in units.frame:
        speed = pd.Series(
            pd.to_numeric(units.frame["maxspeed_kmh"], errors="coerce").to_numpy(),
            index=units.frame["unit_id"].astype(str),
        )
    for i, spot in enumerate(f["spot_id"].astype(str)):
        p = _profile(desc, spot)
        if speed is not None and "unit_ids" in f:
            us = str(f["unit_ids"].iloc[i] or "").split(";")
            v = speed.reindex(us).dropna()
            p["speed_kmh"] = _finite(v.median()) if len(v) else None
        out[spot] = p
    spots.extra["profiles"] = out
    return out


@router.get(
    "/black-spots/why",
    summary="Per black spot: dominant collision type and time of day, night share, speed limit",
)
async def black_spot_why(store: StoreDep) -> JSONResponse:
    return JSONResponse(await run_in_threadpool(_spot_profiles, store))
