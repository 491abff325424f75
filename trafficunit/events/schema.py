"""The standard event schemas: fields by kind, aliases, default value maps, file kinds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

#: Severity letters, most severe first.
KABCO = ("K", "A", "B", "C", "O")

_COMMON = ("event_id", "road_name")

#: Standard fields by kind (besides ``kind`` and ``geometry``), in output order.
FIELDS: dict[str, tuple[str, ...]] = {
    "accident": (
        "event_id",
        "time",
        "year",
        "hour",
        "severity",
        "deaths",
        "serious_injuries",
        "minor_injuries",
        "injuries",
        "collision_type",
        "light",
        "weather",
        "road_name",
    ),
    "hazard": ("event_id", "category", "grade", "status", "reported_at", "road_name"),
    "workzone": (
        "event_id",
        "site_code",
        "start",
        "end",
        "lanes_taken",
        "night_works",
        "status",
        "road_name",
    ),
}

_TIME_FIELDS = {"time", "reported_at", "start", "end"}

#: Column names (compared case-insensitively) taken for a field the user did not map, after
#: the field's own name, in this order; a column so taken is used only when its content
#: passes the field's check, and the read summary says so.
ALIASES: dict[str, tuple[str, ...]] = {
    "event_id": ("id", "事故编号", "编号"),
    "time": (
        "datetime",
        "date_time",
        "timestamp",
        "发生时间",
        "事故时间",
        "事发时间",
        "日期时间",
        "时间",
        "date",
        "日期",
    ),
    "severity": ("accident_severity", "crash_severity", "事故等级", "事故严重程度", "严重程度"),
    "road_name": ("street", "road", "道路名称", "路名", "道路"),
    "light": ("light_conditions", "光照条件"),
    "weather": ("weather_conditions", "天气"),
    "category": ("隐患类型", "类别"),
    "reported_at": ("上报时间", "发现时间"),
    "start": ("start_date", "开始时间"),
    "end": ("end_date", "结束时间"),
}
_INT_FIELDS = {"year", "hour", "deaths", "serious_injuries", "minor_injuries", "injuries"}
_FLOAT_FIELDS = {"lanes_taken"}
_BOOL_FIELDS = {"night_works"}

#: Default severity labels (compared case-insensitively, spaces collapsed) → KABCO.
#: Numeric codes differ between sources and have no default: map them with ``severity_map``.
SEVERITY_DEFAULTS: dict[str, str] = {
    **dict.fromkeys(("k", "fatal", "fatality", "killed", "death", "dead", "fat", "死亡"), "K"),
    **dict.fromkeys(
        (
            "a",
            "serious",
            "serious injury",
            "suspected serious injury",
            "incapacitating",
            "incapacitating injury",
            "severe",
            "重伤",
        ),
        "A",
    ),
    **dict.fromkeys(
        (
            "b",
            "slight",
            "minor",
            "minor injury",
            "suspected minor injury",
            "non-incapacitating",
            "non-incapacitating injury",
            "injury",
            "inj",
            "轻伤",
        ),
        "B",
    ),
    **dict.fromkeys(("c", "possible", "possible injury", "complaint of pain", "轻微伤"), "C"),
    **dict.fromkeys(
        ("o", "pdo", "property damage", "property damage only", "no injury", "none", "财产损失"),
        "O",
    ),
}

#: Default hazard grade labels → ``"general"`` / ``"major"`` (一般 → general, 重大 → major).
GRADE_DEFAULTS: dict[str, str] = {
    **dict.fromkeys(("general", "一般", "minor", "low", "normal", "ordinary"), "general"),
    **dict.fromkeys(("major", "重大", "serious", "high", "severe", "critical"), "major"),
}

_TRUE = {"1", "yes", "y", "true", "t", "x", "on", "是"}
_FALSE = {"0", "no", "n", "false", "f", "off", "", "否"}

_CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".tab", ".csv.gz", ".csv.zip")
_GEO_SUFFIXES = (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".gml", ".kml", ".zip")
_SEPARATORS = (",", ";", "\t", "|")

ValueMap = Mapping[Any, Any] | Callable[[pd.Series], pd.Series]
