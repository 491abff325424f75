"""Worked examples of column mappings for real event files (see ``../shared/data/README.md``).

Every source names its columns differently; the mapping is the user's to give to
:func:`trafficunit.read_events`. These presets are examples of such mappings for published
files that the tests and benchmarks use, and a starting point for similar files::

    acc = tu.read_events("helsinki-city-2000-2022.csv", preset="helsinki-city")
    # the same, spelled out:
    acc = tu.read_events("helsinki-city-2000-2022.csv", kind="accident",
                         x="ita_etrs", y="pohj_etrs", crs=3879, time="VV",
                         severity="VAKAV_A", severity_map={1: "O", 2: "B", 3: "K"},
                         tz="Europe/Helsinki")

Explicit arguments override the preset's (``preset="helsinki-city", severity_map={2: "A"}``).
Severity codes are mapped to KABCO as documented by each publisher; where a source only says
"injury", it maps to ``B`` (minor injury), which you may want to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._errors import ValidationError

__all__ = ["PRESETS", "EventPreset", "get_preset"]


@dataclass(frozen=True)
class EventPreset:
    """A named column mapping for :func:`trafficunit.read_events`.

    Attributes
    ----------
    name, description
        Identifier and one-line description.
    file
        Path of the matching file under ``../shared/data`` (for tests and examples).
    network
        Path of the OSM extract under ``../shared/data`` that overlaps it, if any.
    kwargs
        Keyword arguments for :func:`trafficunit.read_events`.
    """

    name: str
    description: str
    file: str
    kwargs: Mapping[str, Any]
    network: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def read_kwargs(self) -> dict[str, Any]:
        """A fresh copy of the keyword arguments (safe to modify)."""
        out = dict(self.kwargs)
        for key in ("columns", "value_maps", "severity_map"):
            if isinstance(out.get(key), Mapping):
                out[key] = dict(out[key])
        return out


def _boston_cad_time(s: pd.Series) -> pd.Series:
    """``"2016-01-01 00:00:00.000 00:56:45"`` (date column + clock column) → one timestamp."""
    text = s.astype("string")
    return text.str.slice(0, 10) + " " + text.str.slice(-8)


def _strip_html_fragment(s: pd.Series) -> pd.Series:
    """Boston's request types sometimes start with a broken ``<img ...>&nbsp;`` fragment."""
    return s.astype("string").str.replace(r"^.*&nbsp;", "", regex=True).str.strip()


_FI_LIGHT = {1: "daylight", 2: "twilight", 3: "dark", 4: "dark, lit"}
_FI_WEATHER = {1: "clear", 2: "cloudy", 3: "fog", 4: "rain", 5: "snow", 6: "sleet"}
_FI_CLASS = {
    1: "single vehicle",
    2: "turning",
    3: "overtaking",
    4: "crossing",
    5: "head-on",
    6: "rear-end",
    7: "moped",
    8: "bicycle",
    9: "pedestrian",
    10: "elk",
    11: "deer",
    12: "other animal",
    13: "other",
}
_BOSTON_CAD_SEVERITY = {
    "REPORTED INJURIES (P) (E) (F)": "B",
    "PEDESTRIAN STRUCK (P) (E) (F)": "B",
    "PEDESTRIAN STRUCK - CONSCIOUS/MOVING (P) (E) (F)": "B",
    "UNKNOWN IF INJURIES - ADVISE NEED FOR EMS (P) (E) (F)": "C",
    "ENTRAPMENT (P) (E) (F)": "A",
    "EMS VEHICLE INVOLVED (E) (P)": "C",
    "NO INJURIES": "O",
}

#: The presets, by name.
PRESETS: dict[str, EventPreset] = {
    p.name: p
    for p in (
        EventPreset(
            name="helsinki-city",
            description="City of Helsinki crashes 2000-2022 (year only), EPSG:3879",
            file="crashes/helsinki-city-2000-2022.csv",
            network="osm/helsinki-centre.osm.pbf",
            kwargs={
                "kind": "accident",
                "x": "ita_etrs",
                "y": "pohj_etrs",
                "crs": 3879,
                "time": "VV",
                "severity": "VAKAV_A",
                # 1 property damage only, 2 injury, 3 fatal (the city's codes)
                "severity_map": {1: "O", 2: "B", 3: "K"},
                "tz": "Europe/Helsinki",
            },
            notes=(
                "LAJI is the road-user type: MA motor vehicle, JK pedestrian, PP bicycle, MP moped",
            ),
        ),
        EventPreset(
            name="helsinki-fta",
            description="Finnish Transport Agency crashes in Helsinki 2011-2016, EPSG:3067",
            file="crashes/helsinki-fta-2011-2016.csv",
            network="osm/helsinki-centre.osm.pbf",
            kwargs={
                "kind": "accident",
                "x": "X",
                "y": "Y",
                "crs": 3067,
                "event_id": "Onnett_id",
                "time": "Päivä",
                "time_format": "%d.%m.%Y",
                "severity": "Vakavuusko",
                # field guide: 0 no personal injury, 1 fatal, 2 injury
                "severity_map": {0: "O", 1: "K", 2: "B"},
                "road_name": "Katuosoite",
                "columns": {
                    "hour": "Tunti",
                    "deaths": "Kuolleet",
                    "injuries": "Loukkaant",
                    "collision_type": "Onluokka",
                    "light": "Valoisuus",
                    "weather": "Sää",
                },
                "value_maps": {
                    # Tunti counts hours 1-24 (1 = 00:00-00:59); -1 unknown
                    "hour": {h: h - 1 for h in range(1, 25)},
                    "light": _FI_LIGHT,
                    "weather": _FI_WEATHER,
                    "collision_type": _FI_CLASS,
                },
                "tz": "Europe/Helsinki",
            },
            notes=(
                "Tunti read as the hour's ordinal (1 = 00:00-00:59); the field guide does "
                "not say, the morning peak fits this reading",
            ),
        ),
        EventPreset(
            name="portland",
            description="Portland OR corridor crashes 2007-2015 (ODOT), WGS84",
            file="crashes/portland-corridors-2007-2015.csv",
            network="osm/portland-central.osm.pbf",
            kwargs={
                "kind": "accident",
                "x": "LONG",
                "y": "LAT",
                "crs": 4326,
                "event_id": "CRASH_ID",
                "time": "CRASH_DT",
                "time_format": "%m/%d/%Y %H:%M",
                "severity": "CRASH_SVRTY_SHORT_DESC",
                "severity_map": {"FAT": "K", "INJ": "B", "PDO": "O"},
                "road_name": "ST_FULL_NM",
                "columns": {
                    "hour": "CRASH_HR_NO",  # 99 = unknown
                    "collision_type": "COLLIS_TYP_SHORT_DESC",
                    "light": "LGT_COND_SHORT_DESC",
                    "weather": "WTHR_COND_SHORT_DESC",
                },
                "tz": "America/Los_Angeles",
            },
        ),
        EventPreset(
            name="columbus",
            description="Columbus OH pedestrian / bicycle crashes 2016-2021 (year, hour), WGS84",
            file="crashes/columbus-pedestrian-2016-2021.csv",
            network="osm/columbus.osm.pbf",
            kwargs={
                "kind": "accident",
                "x": "longitude",
                "y": "latitude",
                "crs": 4326,
                "event_id": "OBJECTID",
                "severity": "severity",
                # Ohio OH-1: 1 fatal, 2 suspected serious, 3 suspected minor, 4 possible, 5 PDO
                "severity_map": {1: "K", 2: "A", 3: "B", 4: "C", 5: "O"},
                "road_name": "road",
                "columns": {"year": "year", "hour": "hour"},
                "tz": "America/New_York",
            },
        ),
        EventPreset(
            name="london-stats19",
            description="Great Britain STATS19 collisions 2025 (date + time), WGS84",
            file="crashes/london-2025.csv",
            network="osm/london-city.osm.pbf",
            kwargs={
                "kind": "accident",
                "x": "longitude",
                "y": "latitude",
                "crs": 4326,
                "event_id": "accident_index",
                "time": ["date", "time"],
                "time_format": "%Y/%m/%d %H:%M",
                "severity": "accident_severity",
                "severity_map": {"Fatal": "K", "Serious": "A", "Slight": "B"},
                "columns": {"light": "light_conditions", "weather": "weather_conditions"},
                "tz": "Europe/London",
            },
        ),
        EventPreset(
            name="boston-cad",
            description="Boston 911 dispatches to crashes 2016, WGS84 (dispatch type as severity)",
            file="crashes/boston-cad-2016.csv",
            network="osm/boston.osm.pbf",
            kwargs={
                "kind": "accident",
                "x": "X",
                "y": "Y",
                "crs": 4326,
                "event_id": "CAD_EVENT_REL_COMMON_ID",
                "time": ["CALENDAR_DATE", "TIME"],
                "severity": "FIRST_EVENT_SUBTYPE",
                "severity_map": _BOSTON_CAD_SEVERITY,
                "value_maps": {"time": _boston_cad_time},
                "tz": "America/New_York",
            },
            notes=(
                "dispatch subtypes are a rough proxy for severity; other subtypes are "
                "dropped as unknown severity",
            ),
        ),
        EventPreset(
            name="boston-safety-reports",
            description="Boston Vision Zero citizen safety concerns 2016 (hazards), WGS84",
            file="hazards/boston-safety-reports-2016.csv",
            network="osm/boston.osm.pbf",
            kwargs={
                "kind": "hazard",
                "x": "X",
                "y": "Y",
                "crs": 4326,
                "event_id": "REQUESTID",
                "columns": {
                    "category": "REQUESTTYPE",
                    "status": "STATUS",
                    "reported_at": "REQUESTDATE",
                },
                "value_maps": {"category": _strip_html_fragment},
                "tz": "America/New_York",
            },
        ),
        EventPreset(
            name="ashford-roadworks",
            description="Kent street-works permits in Ashford, June 2018 (lines/polygons, BNG)",
            file="roadworks/ashford-2018-06.csv",
            kwargs={
                "kind": "workzone",
                "geometry": "i__location_bng",
                "x": "easting_bng",
                "y": "northing_bng",
                "crs": 27700,
                "event_id": "id",
                "road_name": "e__road_name",
                "columns": {
                    "site_code": "works_ref",
                    "start": "i__start_date",
                    "end": "i__end_date",
                    "status": "e__works_state",
                    "night_works": "i__out_of_hours",
                },
                "tz": "Europe/London",
            },
        ),
    )
}


def get_preset(name: str) -> EventPreset:
    """The preset called ``name``.

    Raises
    ------
    trafficunit.ValidationError
        For an unknown name (the message lists the known ones).
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ValidationError(
            f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None


def describe() -> list[tuple[str, str, str]]:
    """(name, kind, description) of every preset, for listings."""
    return [(p.name, str(p.kwargs["kind"]), p.description) for p in PRESETS.values()]
