"""Time slices of events: period, hour of day, weekday, day/night, and before/after comparison.

Accident tables differ in how much time they carry: a full timestamp (tz-aware ``time``), an
hour without a date, or a year only. Every filter here says what it does with rows that lack
the information it needs: they are left out and counted in ``.attrs["time_report"]``.

Day and night are told apart by the file's own light-condition column when one is mapped
(``light``: "daylight", "dark", "dark, lit", "DLIT"...), else by the sun: the solar elevation
at the event's own location and time, computed with the NOAA solar-position equations over
numpy arrays (no per-row loop), else by the clock (``hour`` within
:attr:`~trafficunit.settings.TimeSettings.day_hours`). ``by="auto"`` takes the first that
an event has; the filter's report says how many events each decided.

>>> import numpy as np, pandas as pd
>>> t = pd.to_datetime(["2020-06-21 10:20", "2020-12-21 22:00"]).tz_localize("UTC")
>>> np.round(sun_elevation(np.array([24.94, 24.94]), np.array([60.17, 60.17]), t), 0)
array([ 53., -53.])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ._errors import ValidationError
from .settings import TimeSettings

__all__ = [
    "Period",
    "as_period",
    "period_years",
    "filter_events",
    "event_times",
    "sun_elevation",
    "is_night",
    "light_condition",
    "hour_weekday",
    "hour_band",
    "event_years",
    "WEEKDAYS",
]

#: Weekday labels, Monday first (pandas ``dt.weekday`` 0..6).
WEEKDAYS: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

PeriodLike = Any  # (start, end) of str | date | Timestamp, or a Period


@dataclass(frozen=True)
class Period:
    """A half-open time span ``[start, end)``; built from an inclusive ``(start, end)`` pair.

    ``("2016-01-01", "2022-12-31")`` covers the whole of 31 December 2022.
    """

    start: pd.Timestamp
    end: pd.Timestamp  # exclusive

    @property
    def years(self) -> float:
        """Length in years: whole calendar years exactly, the rest in days / 365.25."""
        return period_years(self.start, self.end)

    def label(self) -> str:
        """``YYYY-MM-DD–YYYY-MM-DD`` with the inclusive last day."""
        last = self.end - pd.Timedelta(days=1) if _is_midnight(self.end) else self.end
        return f"{self.start:%Y-%m-%d}–{last:%Y-%m-%d}"

    def to_json(self) -> list[str]:
        """``[start, last_day]`` as ISO dates (inclusive), for ``attrs``."""
        last = self.end - pd.Timedelta(days=1) if _is_midnight(self.end) else self.end
        return [self.start.isoformat(), last.isoformat()]


def _is_midnight(t: pd.Timestamp) -> bool:
    return bool(t == t.normalize())


def _timestamp(value: Any, what: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            f"{what} {value!r} is not a date; give e.g. '2016-01-01' or a pandas Timestamp"
        ) from exc
    if t is pd.NaT:
        raise ValidationError(f"{what} is missing; give e.g. '2016-01-01'")
    return t


def as_period(period: PeriodLike) -> Period:
    """Normalise ``(start, end)`` (end inclusive; a date-only end covers that whole day).

    Examples
    --------
    >>> as_period(("2016-01-01", "2022-12-31")).years
    7.0
    """
    if isinstance(period, Period):
        return period
    if isinstance(period, str) or not isinstance(period, Sequence) or len(period) != 2:
        raise ValidationError(
            f"period must be a (start, end) pair such as ('2016-01-01', '2022-12-31'), "
            f"got {period!r}"
        )
    start = _timestamp(period[0], "period start")
    end = _timestamp(period[1], "period end")
    if _is_midnight(end):
        end = end + pd.Timedelta(days=1)
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise ValidationError("period start and end must both have a time zone or both not")
    if end <= start:
        raise ValidationError(f"period end {period[1]!r} is before its start {period[0]!r}")
    return Period(start, end)


def period_years(start: pd.Timestamp, end: pd.Timestamp) -> float:
    """Years between ``start`` and exclusive ``end``: calendar years plus days / 365.25."""
    whole = end.year - start.year
    anchor = start + pd.DateOffset(years=whole)
    while anchor > end:
        whole -= 1
        anchor = start + pd.DateOffset(years=whole)
    return whole + (end - anchor) / pd.Timedelta(days=365.25)


def _data_period(events: pd.DataFrame) -> Period | None:
    """The data's own span: first to last day of the events with a time (whole days, local
    dates of their time zone), widened to whole calendar years by events known only by year."""
    first: list[pd.Timestamp] = []
    last: list[pd.Timestamp] = []
    known = pd.Series(False, index=events.index)
    if "time" in events.columns:
        t = event_times(events)
        known = t.notna()
        if known.any():
            tt = t if known.all() else t[known]  # no copy when every time is known
            if getattr(tt.dt, "tz", None) is not None:
                tt = tt.dt.tz_localize(None)  # local wall time: dates as the data writes them
            first.append(tt.min().normalize())
            last.append(tt.max().normalize() + pd.Timedelta(days=1))
    years = event_years(events.loc[~known.to_numpy()]).dropna()
    if len(years):
        first.append(pd.Timestamp(year=int(years.min()), month=1, day=1))
        last.append(pd.Timestamp(year=int(years.max()) + 1, month=1, day=1))
    if not first:
        return None
    return Period(min(first), max(last))


def event_years(events: pd.DataFrame) -> pd.Series:
    """Year of each event (Int64): from ``time`` where known, else the ``year`` column."""
    out = pd.Series(pd.NA, index=events.index, dtype="Int64")
    if "year" in events.columns:
        out = pd.to_numeric(events["year"], errors="coerce").astype("Int64")
    if "time" in events.columns:
        t = pd.to_datetime(events["time"], errors="coerce")
        ty = t.dt.year.astype("Int64")
        out = ty.where(ty.notna(), out)
    return out


def event_times(events: pd.DataFrame, column: str = "time") -> pd.Series:
    """The events' timestamps as a datetime Series (NaT where unknown)."""
    if column not in events.columns:
        return pd.Series(pd.NaT, index=events.index, dtype="datetime64[ns]")
    t = events[column]
    if not pd.api.types.is_datetime64_any_dtype(t):
        t = pd.to_datetime(t, errors="coerce", utc=True)
    return t


def _event_hours(events: pd.DataFrame) -> pd.Series:
    """Local clock hour (Int64): the ``hour`` column, else ``time``'s hour."""
    out = pd.Series(pd.NA, index=events.index, dtype="Int64")
    if "hour" in events.columns:
        out = pd.to_numeric(events["hour"], errors="coerce").astype("Int64")
    if "time" in events.columns:
        th = event_times(events).dt.hour.astype("Int64")
        out = out.where(out.notna(), th)
    return out.where((out >= 0) & (out <= 23))


def _in_period(events: pd.DataFrame, period: Period) -> tuple[np.ndarray, np.ndarray]:
    """(inside, unknown) masks. Year-only rows count when 1 July of their year is inside."""
    n = len(events)
    inside = np.zeros(n, dtype=bool)
    known = np.zeros(n, dtype=bool)
    if "time" in events.columns:
        t = event_times(events)
        start, end = period.start, period.end
        tz = getattr(t.dt, "tz", None)
        if tz is not None and start.tzinfo is None:
            start, end = start.tz_localize(tz), end.tz_localize(tz)
        elif tz is None and start.tzinfo is not None:
            start, end = start.tz_localize(None), end.tz_localize(None)
        has = t.notna().to_numpy()
        ok = ((t >= start) & (t < end)).fillna(False).to_numpy(dtype=bool)
        inside |= has & ok
        known |= has
    if "year" in events.columns:
        y = pd.to_numeric(events["year"], errors="coerce").to_numpy(dtype=float)
        year_only = np.flatnonzero(~known & np.isfinite(y))
        # 1 July of each year-only row's year (no date text for the rows with a time)
        mid = pd.to_datetime(pd.Series(y[year_only].astype(int)).astype(str) + "-07-01").to_numpy()
        start = period.start.tz_localize(None) if period.start.tzinfo else period.start
        end = period.end.tz_localize(None) if period.end.tzinfo else period.end
        inside[year_only] = (mid >= start.to_datetime64()) & (mid < end.to_datetime64())
        known[year_only] = True
    return inside, ~known


def _points_lonlat(events: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    if events.crs is None:
        raise ValidationError("events have no CRS; sun elevation needs their location")
    geoms = events.geometry.values
    pts = shapely.point_on_surface(geoms)
    ll = gpd.GeoSeries(pts, crs=events.crs).to_crs(4326)
    return ll.x.to_numpy(), ll.y.to_numpy()


def sun_elevation(
    lon: np.ndarray, lat: np.ndarray, times: pd.Series | pd.DatetimeIndex | np.ndarray
) -> np.ndarray:
    """Solar elevation angle (degrees, without refraction) at each location and time.

    NOAA's solar-position equations (Meeus), vectorised; accurate to a few hundredths of a
    degree for 1900-2100, far better than day/night needs.

    Parameters
    ----------
    lon, lat
        Longitudes and latitudes (WGS84 degrees).
    times
        Times, tz-aware (naive times are taken as UTC); NaT gives NaN.
    """
    t = pd.DatetimeIndex(pd.to_datetime(times))
    t = t.tz_localize("UTC") if t.tz is None else t.tz_convert("UTC")
    nat = np.asarray(t.isna())
    secs = np.asarray(t.as_unit("ns").asi8, dtype=np.float64) / 1e9
    secs[nat] = np.nan
    jd = secs / 86400.0 + 2440587.5
    tc = (jd - 2451545.0) / 36525.0
    rad = np.deg2rad
    l0 = np.mod(280.46646 + tc * (36000.76983 + tc * 0.0003032), 360.0)
    m = 357.52911 + tc * (35999.05029 - 0.0001537 * tc)
    e = 0.016708634 - tc * (0.000042037 + 0.0000001267 * tc)
    c = (
        np.sin(rad(m)) * (1.914602 - tc * (0.004817 + 0.000014 * tc))
        + np.sin(rad(2 * m)) * (0.019993 - 0.000101 * tc)
        + np.sin(rad(3 * m)) * 0.000289
    )
    omega = 125.04 - 1934.136 * tc
    lam = l0 + c - 0.00569 - 0.00478 * np.sin(rad(omega))
    eps0 = 23.0 + (26.0 + (21.448 - tc * (46.815 + tc * (0.00059 - tc * 0.001813))) / 60.0) / 60.0
    eps = eps0 + 0.00256 * np.cos(rad(omega))
    decl = np.arcsin(np.sin(rad(eps)) * np.sin(rad(lam)))
    y = np.tan(rad(eps) / 2.0) ** 2
    eot = 4.0 * np.rad2deg(
        y * np.sin(2 * rad(l0))
        - 2 * e * np.sin(rad(m))
        + 4 * e * y * np.sin(rad(m)) * np.cos(2 * rad(l0))
        - 0.5 * y * y * np.sin(4 * rad(l0))
        - 1.25 * e * e * np.sin(2 * rad(m))
    )  # minutes
    minutes = np.mod(secs, 86400.0) / 60.0
    tst = np.mod(minutes + eot + 4.0 * np.asarray(lon, dtype=float), 1440.0)
    hour_angle = rad(tst / 4.0 - 180.0)
    phi = rad(np.asarray(lat, dtype=float))
    cos_zen = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    return np.asarray(90.0 - np.rad2deg(np.arccos(np.clip(cos_zen, -1.0, 1.0))))


_NIGHT_WORDS = ("dark", "night", "dlit", "dnlt", "unlit")
_DAY_WORDS = ("daylight", "day", "daytime")


def light_condition(events: pd.DataFrame) -> pd.Series:
    """Day or night from the file's ``light`` column ("day", "night", <NA> where it says
    neither: twilight, dusk, dawn, unknown, or no such column)."""
    out = pd.Series(pd.NA, index=events.index, dtype="string", name="light_condition")
    if "light" not in events.columns:
        return out
    v = events["light"].astype("string").str.strip().str.lower()
    night = v.str.contains("|".join(_NIGHT_WORDS), regex=True).fillna(False)
    day = v.isin(_DAY_WORDS) | v.str.startswith("daylight").fillna(False)
    out = out.mask(day.to_numpy(dtype=bool) & ~night.to_numpy(dtype=bool), "day")
    return out.mask(night.to_numpy(dtype=bool), "night")


def _night_and_source(
    events: gpd.GeoDataFrame | pd.DataFrame, by: str, cfg: TimeSettings
) -> tuple[pd.Series, pd.Series]:
    """Night flag per event and what decided it ("light column", "sun", "clock")."""
    if by != "auto":
        night = is_night(events, by=by, settings=cfg)
        src = pd.Series(by, index=events.index, dtype=object).where(night.notna().to_numpy())
        return night, src
    lc = light_condition(events)
    night = (lc == "night").astype("boolean").mask(lc.isna())
    src = pd.Series("light column", index=events.index, dtype=object).where(lc.notna().to_numpy())
    todo = night.isna().to_numpy()
    if todo.any() and isinstance(events, gpd.GeoDataFrame) and events.crs is not None:
        has_time = event_times(events).notna().to_numpy()
        sel = todo & has_time
        if sel.any():
            sun = is_night(events.loc[sel], by="sun", settings=cfg)
            night.loc[sun.index] = sun
            src.loc[sun.index[sun.notna().to_numpy()]] = "sun"
            todo = night.isna().to_numpy()
    if todo.any():
        clock = is_night(events.loc[todo], by="clock", settings=cfg)
        night.loc[clock.index] = clock
        src.loc[clock.index[clock.notna().to_numpy()]] = "clock"
    return night.rename("night"), src


def is_night(
    events: gpd.GeoDataFrame | pd.DataFrame,
    *,
    by: str = "auto",
    settings: TimeSettings | None = None,
) -> pd.Series:
    """Whether each event happened at night (boolean, <NA> where unknown).

    Parameters
    ----------
    events
        Events with ``hour`` and/or ``time`` (and a geometry and CRS for ``by="sun"``).
    by
        ``"auto"`` (default): the file's ``light`` column where it says day or night
        (:func:`light_condition`), else the sun where the event has a time and a location,
        else the clock. ``"light"``: the light column only. ``"clock"``: outside
        ``settings.day_hours``. ``"sun"``: the sun below ``settings.night_sun_elevation_deg``
        at the event's location and time (needs ``time``).
    """
    cfg = settings or TimeSettings()
    if by == "auto":
        return _night_and_source(events, "auto", cfg)[0]
    if by == "light":
        lc = light_condition(events)
        return (lc == "night").astype("boolean").mask(lc.isna()).rename("night")
    if by == "clock":
        h = _event_hours(events)
        start, end = cfg.day_hours
        day = (h >= start) & (h < end)
        return (~day).astype("boolean").rename("night")
    if by == "sun":
        if not isinstance(events, gpd.GeoDataFrame):
            raise ValidationError("day/night by sun needs a GeoDataFrame (event locations)")
        lon, lat = _points_lonlat(events)
        elev = sun_elevation(lon, lat, event_times(events))
        out = pd.Series(elev < cfg.night_sun_elevation_deg, index=events.index, dtype="boolean")
        return out.mask(np.isnan(elev)).rename("night")
    raise ValidationError(f"by must be 'auto', 'light', 'clock' or 'sun', got {by!r}")


def filter_events(
    events: gpd.GeoDataFrame | pd.DataFrame,
    *,
    period: PeriodLike | None = None,
    hours: Iterable[int] | None = None,
    weekdays: Iterable[int | str] | None = None,
    light: str | None = None,
    light_by: str = "auto",
    settings: TimeSettings | None = None,
) -> Any:
    """Keep the events inside a period, at some hours, on some weekdays, by day or by night.

    Rows that lack what a filter needs (no time for a weekday filter, no hour for an hour
    filter) are left out and counted in ``.attrs["time_report"]``.

    Parameters
    ----------
    events
        Events or a joined frame (``time``, ``year``, ``hour`` columns as from
        :func:`trafficunit.read_events`).
    period
        ``(start, end)``, end inclusive. A year-only event counts when 1 July of its year lies
        inside (so whole years are counted exactly).
    hours
        Local clock hours kept (0-23), e.g. ``range(22, 24)``.
    weekdays
        Weekdays kept: 0 = Monday ... 6 = Sunday, or names ``"Mon"``...``"Sun"``.
    light
        ``"day"`` or ``"night"``, decided by ``light_by``: ``"auto"`` (the file's light
        column, else the sun, else the clock; the report's ``light_by`` counts the events
        each decided), ``"light"``, ``"clock"`` or ``"sun"``.
    settings
        Day hours and the night sun elevation.

    Returns
    -------
    The same type as ``events``, a filtered copy.

    Examples
    --------
    >>> import pandas as pd
    >>> ev = pd.DataFrame({"hour": [1, 12, 23], "year": [2019, 2020, 2021]})
    >>> len(filter_events(ev, period=("2020-01-01", "2021-12-31"), light="night"))
    1
    """
    cfg = settings or TimeSettings()
    keep = np.ones(len(events), dtype=bool)
    report: dict[str, int] = {"rows": len(events)}
    if period is not None:
        inside, unknown = _in_period(events, as_period(period))
        report["outside_period"] = int((~inside & ~unknown).sum())
        report["no_date"] = int(unknown.sum())
        keep &= inside
    if hours is not None:
        wanted = sorted({int(h) for h in hours})
        if any(h < 0 or h > 23 for h in wanted):
            raise ValidationError(f"hours must be within 0-23, got {wanted}")
        h = _event_hours(events)
        report["no_hour"] = int(h.isna().sum())
        keep &= h.isin(wanted).fillna(False).to_numpy(dtype=bool)
    if weekdays is not None:
        days = sorted({_weekday_number(d) for d in weekdays})
        wd = event_times(events).dt.day_of_week
        report["no_weekday"] = int(wd.isna().sum())
        keep &= wd.isin(days).to_numpy(dtype=bool)
    if light is not None:
        if light not in ("day", "night"):
            raise ValidationError(f"light must be 'day' or 'night', got {light!r}")
        night, source = _night_and_source(events, light_by, cfg)
        report["no_light"] = int(night.isna().sum())
        report["light_by"] = {  # type: ignore[assignment]
            str(k): int(v) for k, v in source.dropna().value_counts().items()
        }
        want = night if light == "night" else ~night
        keep &= want.fillna(False).to_numpy(dtype=bool)
    # the selection is a new frame already (copy-on-write): no second copy of the rows
    out = (events if keep.all() else events.loc[keep]).copy(deep=False)
    report["kept"] = int(keep.sum())
    out.attrs["time_report"] = report
    return out


def _weekday_number(day: int | str) -> int:
    if isinstance(day, str):
        key = day.strip()[:3].title()
        if key not in WEEKDAYS:
            raise ValidationError(f"unknown weekday {day!r}; use Mon..Sun or 0 (Monday)..6")
        return WEEKDAYS.index(key)
    if not 0 <= int(day) <= 6:
        raise ValidationError(f"weekday must be 0 (Monday)..6 (Sunday), got {day}")
    return int(day)


def hour_weekday(events: pd.DataFrame) -> pd.DataFrame:
    """Counts by weekday (rows ``Mon``..``Sun``) and local hour (columns 0..23).

    Events without a full timestamp are left out; ``.attrs["left_out"]`` says how many.
    """
    t = event_times(events)
    h = _event_hours(events)
    wd = t.dt.day_of_week
    ok = wd.notna().to_numpy() & h.notna().to_numpy()
    codes = wd.to_numpy(dtype=float)[ok].astype(int) * 24 + h.to_numpy(dtype=float)[ok].astype(int)
    counts = np.bincount(codes, minlength=7 * 24).reshape(7, 24)
    out = pd.DataFrame(counts, index=pd.Index(WEEKDAYS, name="weekday"), columns=range(24))
    out.columns.name = "hour"
    out.attrs["left_out"] = int((~ok).sum())
    return out


def hour_band(hours: pd.Series, settings: TimeSettings | None = None) -> pd.Series:
    """Name of the time-of-day band of each hour (``settings.hour_bands``); <NA> if unknown."""
    cfg = settings or TimeSettings()
    lut = np.full(24, "", dtype=object)
    for name, lo, hi in cfg.hour_bands:
        lut[lo:hi] = name
    h = pd.to_numeric(hours, errors="coerce")
    ok = h.notna() & (h >= 0) & (h <= 23)
    out = pd.Series(pd.NA, index=hours.index, dtype="string")
    out[ok] = lut[h[ok].astype(int).to_numpy()]
    return out.replace("", pd.NA)
