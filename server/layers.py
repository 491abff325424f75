"""One spec per live layer: its tile columns, its query parameters, their parsing and the filter.

A :class:`LayerSpec` is the only place a layer's filters are declared. The GeoJSON list routes
(``/accidents``, ``/units``) take their query parameters from :meth:`LayerSpec.dependency`,
the live tiles (``/tiles/live-*``, the ASGI and RSGI fast paths) parse the raw query string
with :meth:`LayerSpec.parse`, and both select rows with :meth:`LayerSpec.select`; so the same
query means the same thing everywhere: the same values are refused (400, with the reason) and
the same features are kept. The hazard and work-zone lists read the ledger; their specs here
parse the same vocabulary (:mod:`trafficunit.ledger.lifecycle`) the ledger checks.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from fastapi import Query

from trafficunit.errors import clip
from trafficunit.ledger.lifecycle import GRADES, OPEN_STATES, STATES, normalise_grade
from trafficunit.mvt import CachedTile, LiveLayer, TileCache, encode_tile

from .errors import BadRequest, NotFound
from .settings import Settings
from .tilehttp import TileAnswer, live_tile

if TYPE_CHECKING:
    from .store import DataStore

Parsed = Mapping[str, Any]
#: ``select(frame, extra, rows, parsed) -> keep`` (a boolean mask over ``rows``).
Selector = Callable[[pd.DataFrame, Mapping[str, np.ndarray], np.ndarray, Parsed], np.ndarray]
_NO_TIME = np.iinfo(np.int64).min


# --------------------------------------------------------------------------- parsers


def comma_list(value: str | None) -> list[str] | None:
    """``"a,b"`` -> ``["a", "b"]``; None or empty -> None."""
    if value is None or value.strip() == "":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_time(value: str | None, what: str) -> pd.Timestamp | None:
    """An ISO date or datetime (UTC when no zone), 400 when malformed."""
    if value is None or value == "":
        return None
    why = "is not an ISO date (YYYY-MM-DD) or datetime"
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what}={clip(value)} {why}") from exc
    if t is pd.NaT:  # "NaT", "nat": parsed, but not a date
        raise BadRequest(f"{what}={clip(value)} {why}")
    try:
        t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        _ = (t + pd.Timedelta(days=1)).value  # representable in ns with a day to spare
    except (OverflowError, ValueError) as exc:
        raise BadRequest(f"{what}={clip(value)} is outside the supported years 1678-2261") from exc
    return t


def _list(value: str | None) -> tuple[str, ...] | None:
    words = comma_list(value)
    return tuple(words) if words else None


def _words(name: str, allowed: tuple[str, ...] | None = None) -> Callable[[str | None], Any]:
    """A comma list, each word one of ``allowed`` when given (400 otherwise)."""

    def parse(value: str | None) -> tuple[str, ...] | None:
        words = _list(value)
        if words is not None and allowed is not None:
            bad = [w for w in words if w not in allowed]
            if bad:
                raise BadRequest(f"{name} {clip(bad[0])} is not one of {', '.join(allowed)}")
        return None if words is None else tuple(sorted(set(words)))

    return parse


def _day_start(name: str) -> Callable[[str | None], Any]:
    return lambda v: _ns(parse_time(v, name))


def _day_end(value: str | None) -> int | None:
    """``to``: a date is inclusive (its whole day); a datetime is the exclusive end."""
    end = parse_time(value, "to")
    if end is not None and len(value or "") <= 10:
        end = end + pd.Timedelta(days=1)
    return _ns(end)


def _ns(t: pd.Timestamp | None) -> int | None:
    return None if t is None else int(t.value)


def _light(value: str | None) -> str | None:
    if value in (None, "", "all"):
        return None
    if value not in ("day", "night"):
        raise BadRequest(f"light must be day, night or all, got {clip(value)}")
    return value


def _severity(value: str | None) -> tuple[str, ...] | None:
    sev = _list(value)
    if sev and not all(len(s) == 1 and s in "KABCO" for s in sev):
        raise BadRequest(f"severity must be KABCO letters, got {clip(value)}")
    return None if not sev else tuple(sorted(set(sev)))


def _text(limit: int = 100) -> Callable[[str | None], Any]:
    def parse(value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if len(value) > limit:
            raise BadRequest(f"{clip(value)} is longer than {limit} characters")
        return value

    return parse


def _number(name: str, low: float = -math.inf, high: float = math.inf) -> Callable[[Any], Any]:
    def parse(value: str | None) -> float | None:
        if value is None or value == "":
            return None
        try:
            x = float(value)
        except ValueError as exc:
            raise BadRequest(f"{name}={clip(value)} is not a number") from exc
        if not math.isfinite(x) or not low <= x <= high:
            raise BadRequest(f"{name}={clip(value)} must be a finite number in [{low}, {high}]")
        return x

    return parse


def _states(value: str | None) -> tuple[str, ...] | None:
    if _list(value) == ("open",):
        return OPEN_STATES
    return _words("state", STATES)(value)


def _grades(value: str | None) -> tuple[str, ...] | None:
    words = _list(value)
    if words is None:
        return None
    got = [normalise_grade(w) or w for w in words]
    return _words("grade", GRADES)(",".join(got))


def _instant(value: str | None) -> int | None:
    """``'now'`` (to the second) or an ISO date/datetime."""
    if value is not None and value.strip().lower() == "now":
        return int(datetime.now(UTC).replace(microsecond=0).timestamp()) * 1_000_000_000
    return _ns(parse_time(value, "active"))


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class Param:
    """One query parameter of a layer: its name, its aliases, its description and its parser.

    ``parse`` turns the raw text (None when absent) into a hashable value, None meaning no
    filter, or raises :class:`~trafficunit_server.errors.BadRequest` with the reason.
    """

    name: str
    description: str
    parse: Callable[[str | None], Hashable | None]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class LayerSpec:
    """A live layer: where its rows are, its tile columns, its parameters and its filter."""

    layer: str  # store table and live layer name
    tileset: str  # the live tileset's name
    description: str
    columns: tuple[str, ...]
    params: tuple[Param, ...]
    select: Selector
    check: Callable[[Parsed], None] = lambda parsed: None
    #: what the layer's tiles depend on beyond the store's data version, asked of the live
    #: layer (a layer that changes without moving the version, e.g. permits that expire)
    data_key: Callable[[Any], Hashable] | None = None

    def parse(self, query: Mapping[str, str | None]) -> tuple[Hashable | None, ...]:
        """Parsed filter values in the order of :attr:`params` (a hashable cache key)."""
        parsed: dict[str, Any] = {}
        for p in self.params:
            raw = query.get(p.name)
            for alias in p.aliases:
                raw = raw if raw not in (None, "") else query.get(alias)
            parsed[p.name] = p.parse(raw)
        self.check(parsed)
        return tuple(parsed[p.name] for p in self.params)

    def rows(
        self,
        frame: pd.DataFrame,
        extra: Mapping[str, np.ndarray],
        rows: np.ndarray,
        key: tuple[Hashable | None, ...],
    ) -> np.ndarray:
        """``rows`` kept by the filter ``key`` (from :meth:`parse`)."""
        if all(v is None for v in key):
            return rows
        parsed = {p.name: v for p, v in zip(self.params, key, strict=True)}
        return rows[self.select(frame, extra, rows, parsed)]

    def dependency(self) -> Callable[..., Awaitable[tuple[Hashable | None, ...]]]:
        """A FastAPI dependency declaring the parameters and returning :meth:`parse`'s key."""

        async def dep(**raw: str | None) -> tuple[Hashable | None, ...]:
            return self.parse({p.name: raw[_py(p.name)] for p in self.params})

        dep.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [_query_parameter(p) for p in self.params]
        )
        return dep


def _py(name: str) -> str:
    return name + "_" if name in ("from", "type") else name


def _query_parameter(p: Param) -> inspect.Parameter:
    return inspect.Parameter(
        _py(p.name),
        inspect.Parameter.KEYWORD_ONLY,
        default=Query(None, alias=p.name, description=p.description),
        annotation=str | None,
    )


def _isin(frame: pd.DataFrame, col: str, rows: np.ndarray, values: Any) -> np.ndarray:
    if col not in frame:
        return np.zeros(len(rows), dtype=bool)
    return np.asarray(frame[col].iloc[rows].isin(values).to_numpy(), dtype=bool)


def _time_window(t_ns: np.ndarray, start: int | None, end: int | None) -> np.ndarray:
    keep = np.ones(len(t_ns), dtype=bool)
    if start is not None:
        keep &= (t_ns != _NO_TIME) & (t_ns >= start)
    if end is not None:
        keep &= (t_ns != _NO_TIME) & (t_ns < end)
    return keep


# --------------------------------------------------------------------------- accidents


def _select_accidents(
    frame: pd.DataFrame, extra: Mapping[str, np.ndarray], rows: np.ndarray, f: Parsed
) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    if f["from"] is not None or f["to"] is not None:
        keep &= _time_window(extra["t_ns"][rows], f["from"], f["to"])
    if f["light"] is not None:
        keep &= extra[f["light"]][rows]
    if f["severity"] is not None:
        keep &= _isin(frame, "severity", rows, f["severity"])
    if f["unit_id"] is not None:
        if "unit_id" not in frame:
            return np.zeros(len(rows), dtype=bool)
        same = frame["unit_id"].iloc[rows].astype("string") == f["unit_id"]
        keep &= same.fillna(False).to_numpy(dtype=bool)
    return keep


def _check_period(f: Parsed) -> None:
    if f["from"] is not None and f["to"] is not None and f["from"] >= f["to"]:
        raise BadRequest("from must be before to")


ACCIDENTS = LayerSpec(
    layer="accidents",
    tileset="live-accidents",
    description="Accidents, filterable: from, to, light=day|night|all, severity, unit_id",
    columns=("event_id", "unit_id", "severity", "time", "hour", "collision_type", "light"),
    params=(
        Param("from", "First day (ISO date) or instant", _day_start("from")),
        Param("to", "Last day, inclusive (ISO date), or an exclusive instant", _day_end),
        Param("light", "day, night or all (local clock)", _light),
        Param("severity", "KABCO letters, e.g. K,A", _severity),
        Param("unit_id", "Only accidents matched to this unit", _text()),
    ),
    select=_select_accidents,
    check=_check_period,
)


# --------------------------------------------------------------------------- units

#: Measures that accept a ``min_<measure>`` filter.
MIN_MEASURES = ("crashes", "epdo", "epdo_per_km", "eb_excess", "score_percentile", "open_hazards")


def _select_units(
    frame: pd.DataFrame, extra: Mapping[str, np.ndarray], rows: np.ndarray, f: Parsed
) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    for col in ("level", "kind", "road_class"):
        if f[col] is not None:
            keep &= _isin(frame, col, rows, f[col])
    for col in MIN_MEASURES:
        threshold = f["min_" + col]
        if threshold is None:
            continue
        if col not in frame:
            return np.zeros(len(rows), dtype=bool)
        vals = pd.to_numeric(frame[col].iloc[rows], errors="coerce").to_numpy(dtype=float)
        keep &= np.nan_to_num(vals, nan=-np.inf) >= threshold
    return keep


UNITS = LayerSpec(
    layer="units",
    tileset="live-units",
    description="Units with level and colour at full detail, filterable as GET /units",
    columns=(
        "unit_id",
        "kind",
        "level",
        "level_rank",
        "colour",
        "crashes",
        "epdo",
        "road_class",
        "name",
    ),
    params=(
        Param("level", "red,orange,yellow,blue", _words("level")),
        Param("kind", "segment or intersection", _words("kind")),
        Param("road_class", "e.g. primary,secondary", _words("road_class")),
        *(
            Param(
                "min_" + m,
                f"Only units with {m} at least this",
                _number("min_" + m, *((0, 100) if m == "score_percentile" else ())),
            )
            for m in MIN_MEASURES
        ),
    ),
    select=_select_units,
)


# --------------------------------------------------------------------------- hazards, work zones


def _select_hazards(
    frame: pd.DataFrame, extra: Mapping[str, np.ndarray], rows: np.ndarray, f: Parsed
) -> np.ndarray:
    keep = np.ones(len(rows), dtype=bool)
    if f["state"] is not None:
        keep &= _isin(frame, "status", rows, f["state"])
    if f["grade"] is not None:
        keep &= _isin(frame, "grade", rows, f["grade"])
    return keep


HAZARDS = LayerSpec(
    layer="hazards",
    tileset="live-hazards",
    description="Hazards, filterable: state (comma list, or 'open'; alias status), grade",
    columns=("event_id", "unit_id", "category", "grade", "status", "reported_at"),
    params=(
        Param("state", "Comma list of states, or 'open'", _states, aliases=("status",)),
        Param("grade", "general,major", _grades),
    ),
    select=_select_hazards,
)


def _select_workzones(
    frame: pd.DataFrame, extra: Mapping[str, np.ndarray], rows: np.ndarray, f: Parsed
) -> np.ndarray:
    if "start" not in frame or "end" not in frame:
        return np.zeros(len(rows), dtype=bool)
    t = pd.Timestamp(f["active"], unit="ns", tz="UTC")
    s = pd.to_datetime(frame["start"].iloc[rows], utc=True, errors="coerce")
    e = pd.to_datetime(frame["end"].iloc[rows], utc=True, errors="coerce")
    return np.asarray(((s <= t) & ((e >= t) | e.isna())).to_numpy(), dtype=bool)


WORKZONES = LayerSpec(
    layer="workzones",
    tileset="live-workzones",
    description="Work zones, filterable: active='now' or an ISO date/datetime (sites active then)",
    columns=("event_id", "unit_id", "site_code", "start", "end", "lanes_taken"),
    params=(Param("active", "'now' or an ISO date/datetime: sites active then", _instant),),
    select=_select_workzones,
)


def _select_all(
    frame: pd.DataFrame, extra: Mapping[str, np.ndarray], rows: np.ndarray, f: Parsed
) -> np.ndarray:
    return np.ones(len(rows), dtype=bool)


PERMITS = LayerSpec(
    layer="permits",
    tileset="live-permits",
    description="Active route permits' routes (vehicle, state, windows)",
    columns=(
        "event_id",
        "state",
        "state_zh",
        "vehicle",
        "operator",
        "windows",
        "valid_to",
        "length_m",
        "units",
    ),
    params=(),
    select=_select_all,
    data_key=lambda layer: layer.data_key(),
)

#: Live tilesets: name -> spec.
LIVE: dict[str, LayerSpec] = {s.tileset: s for s in (ACCIDENTS, HAZARDS, WORKZONES, UNITS, PERMITS)}


def tile_query_dependency() -> Callable[..., Awaitable[dict[str, str | None]]]:
    """A FastAPI dependency declaring every live layer's parameters (for the tile route's
    documentation) and returning them raw; each layer parses its own."""
    params: dict[str, Param] = {}
    for spec in LIVE.values():
        for p in spec.params:
            for name in (p.name, *p.aliases):
                params.setdefault(name, Param(name, f"{spec.tileset}: {p.description}", p.parse))

    async def dep(**raw: str | None) -> dict[str, str | None]:
        return {name: raw[_py(name)] for name in params}

    dep.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [_query_parameter(p) for p in params.values()]
    )
    return dep


# --------------------------------------------------------------------------- live tiles


def live_mask(store: DataStore, spec: LayerSpec, key: tuple[Any, ...]) -> np.ndarray | None:
    """Boolean row mask of a live layer for a filter key (cached per data version)."""
    if all(v is None for v in key):
        return None
    ck = (store.version, spec.layer, key)
    hit = store.mask_cache.get(ck)
    if hit is not None:
        return hit
    layer = store.live[spec.layer]
    table = store.tables.get(spec.layer)
    if isinstance(layer, LiveLayer) and table is not None and len(table) == len(layer):
        # a layer the store cut from its table: the same rows, so the filter reads the table
        # (every column, kept current by the live loop) as the list routes do
        frame, extra = table.frame, table.extra
    else:  # the ledger's hazards and work zones: their own frame
        frame, extra = layer.frame, {}
    mask = np.zeros(len(frame), dtype=bool)
    mask[spec.rows(frame, extra, np.arange(len(frame)), key)] = True
    store.mask_cache.put(ck, mask)
    return mask


def live_answer(
    store: DataStore,
    settings: Settings,
    cache: TileCache,
    name: str,
    zxy: tuple[int, int, int],
    query: Mapping[str, str | None],
    *,
    accept_encoding: str | None,
    if_none_match: str | None,
    head: bool,
    vary: str,
) -> TileAnswer:
    """Answer for tile z/x/y of a live tileset with its filters (the route and fast paths)."""
    store.check()  # reloads and ledger hooks: the cache key below carries the data version
    spec = LIVE.get(name)
    if spec is None or spec.layer not in store.live:
        raise NotFound(f"no tileset {clip(name)}; see GET /tiles")
    z, x, y = zxy
    ts = settings.tiles
    if not ts.live_minzoom <= z <= ts.live_maxzoom:
        raise NotFound(
            f"zoom {z} is outside tileset {clip(name)} (z{ts.live_minzoom}-z{ts.live_maxzoom})"
        )
    key = spec.parse(query)
    layer_key = None if spec.data_key is None else spec.data_key(store.live[spec.layer])
    ck = (name, store.version, layer_key, z, x, y, key)
    cached = cache.get(ck)
    if cached is None:
        mask = live_mask(store, spec, key)
        layer = store.live[spec.layer].encode(
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
