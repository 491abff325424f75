"""Typed defaults in one place. Every threshold is configuration, overridable per call.

Values follow ``docs/domain.md``: tags there say which are sourced and which are recommendations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Self, cast

if TYPE_CHECKING:
    pass

#: Names that moved beside the code that uses them; ``from trafficunit.settings import ...``
#: still finds them (:func:`__getattr__`).
_MOVED = {
    "BLACK_SPOT_PROFILES": "trafficunit.blackspots.profiles",
    "BlackSpotProfile": "trafficunit.blackspots.profiles",
    "Criterion": "trafficunit.blackspots.profiles",
}


def __getattr__(name: str) -> Any:
    """Black-spot profiles live in :mod:`trafficunit.blackspots.profiles`; old imports work."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _With:
    """Mixin of the frozen settings classes: ``with_`` returns a changed copy."""

    def with_(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied, ignoring ``None`` values."""
        kept = {k: v for k, v in changes.items() if v is not None}
        return cast(Self, replace(cast(Any, self), **kept))


# fmt: off
#: OSM ``highway`` values kept by default: roads motor vehicles drive on (cf. osmnx ``drive``).
DRIVABLE_HIGHWAYS: frozenset[str] = frozenset({
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
    "secondary_link", "tertiary", "tertiary_link", "unclassified", "residential", "living_street",
    "service", "road", "busway",
})
# fmt: on

#: ``service=*`` values dropped from the drivable network (parking aisles, driveways...).
EXCLUDED_SERVICE: frozenset[str] = frozenset(
    {"parking_aisle", "driveway", "drive-through", "emergency_access", "private", "parking"}
)

#: ``access=*`` / ``motor_vehicle=*`` values that take a way out of the drivable network.
EXCLUDED_ACCESS: frozenset[str] = frozenset({"no", "private"})

#: Intersection influence radius by the highest road class meeting there, metres.
#: docs/domain.md: agencies use 15-76 m (50-250 ft) or 150 m; [rec] 30 m urban, by road class.
#: A consolidated junction adds its own extent (the farthest node from its centre).
INFLUENCE_M_BY_CLASS: dict[str, float] = {
    "motorway": 76.0,
    "trunk": 50.0,
    "primary": 35.0,
    "secondary": 30.0,
    "tertiary": 30.0,
    "unclassified": 25.0,
    "residential": 20.0,
    "living_street": 15.0,
    "service": 15.0,
}
DEFAULT_INFLUENCE_M = 30.0

# fmt: off
#: Ranking of road classes, most important first (links rank with their parent road).
ROAD_CLASS_RANK: tuple[str, ...] = (
    "motorway", "trunk", "primary", "secondary", "tertiary", "unclassified", "residential",
    "living_street", "service", "road", "busway",
)
# fmt: on


@dataclass(frozen=True)
class NetworkSettings:
    """How a road network is read and filtered.

    Attributes
    ----------
    highways
        OSM ``highway`` values kept. ``None`` keeps every way that has a ``highway`` tag.
    excluded_service, excluded_access
        ``service=*`` and ``access=*`` values that drop a way.
    """

    highways: frozenset[str] | None = DRIVABLE_HIGHWAYS
    excluded_service: frozenset[str] = EXCLUDED_SERVICE
    excluded_access: frozenset[str] = EXCLUDED_ACCESS


@dataclass(frozen=True)
class UnitSettings(_With):
    """How a network is split into traffic units.

    Attributes
    ----------
    max_length_m
        Longest segment unit, metres. Longer stretches are split evenly.
    junction_merge_m
        Junction nodes closer than this (metres) become one intersection unit, as osmnx's
        ``consolidate_intersections`` does for complex junctions.
    split_on
        Attributes whose change along a road starts a new segment unit.
    influence_m_by_class
        Influence radius of an intersection (metres) by its highest road class.
    snap_m
        Vertices closer than this (metres) are the same network node.
    """

    max_length_m: float = 200.0
    junction_merge_m: float = 20.0
    split_on: tuple[str, ...] = ("road_class", "maxspeed_kmh", "lanes", "bridge", "tunnel")
    influence_m_by_class: dict[str, float] = field(
        default_factory=lambda: dict(INFLUENCE_M_BY_CLASS)
    )
    default_influence_m: float = DEFAULT_INFLUENCE_M
    snap_m: float = 0.01


@dataclass(frozen=True)
class TileSettings(_With):
    """How risk tiles are built (:func:`trafficunit.tiles.build_tiles`).

    Low zooms stay small by giving every feature a first zoom (``minzoom``): the riskiest units
    appear first, the rest join as the map zooms in. Thresholds are configuration.

    Attributes
    ----------
    minzoom, maxzoom
        Zoom range of the archive.
    unit_minzoom_by_level
        First zoom of a unit by its risk level (``red`` shows from the archive's minzoom).
    unit_minzoom_by_class
        First zoom of an unscored unit (``level`` missing or ``none``) by road class; a scored
        unit shows from the lower of its level's and its class's zoom.
    default_unit_minzoom
        First zoom of a unit whose class is not listed.
    intersection_extra_zoom
        Intersections (points) appear this many zooms after a segment of the same rank.
    accident_minzoom_by_severity
        First zoom of an accident by KABCO severity.
    hazard_minzoom_by_grade
        First zoom of a hazard by grade.
    workzone_minzoom
        First zoom of the work-zone layer.
    simplification
        tippecanoe ``--simplification`` factor (tile pixels; 1 is tippecanoe's default).
    maximum_tile_bytes
        Tiles larger than this drop the densest features (``--drop-densest-as-needed``).
    float_decimals
        Decimals kept for float attributes in tiles.
    """

    minzoom: int = 8
    maxzoom: int = 16
    unit_minzoom_by_level: dict[str, int] = field(
        default_factory=lambda: {"red": 8, "orange": 10, "yellow": 12, "blue": 13}
    )
    unit_minzoom_by_class: dict[str, int] = field(
        default_factory=lambda: {
            "motorway": 8,
            "trunk": 9,
            "primary": 10,
            "secondary": 11,
            "tertiary": 12,
            "unclassified": 13,
            "residential": 13,
        }
    )
    default_unit_minzoom: int = 14
    intersection_extra_zoom: int = 1
    accident_minzoom_by_severity: dict[str, int] = field(
        default_factory=lambda: {"K": 9, "A": 10, "B": 12, "C": 13, "O": 14}
    )
    hazard_minzoom_by_grade: dict[str, int] = field(
        default_factory=lambda: {"major": 10, "general": 12}
    )
    workzone_minzoom: int = 11
    simplification: float = 1.0
    maximum_tile_bytes: int = 500_000
    float_decimals: int = 3


# -- risk: measures, four-colour levels, time (trafficunit.risk); black-spot profiles live in
# trafficunit.blackspots.profiles, beside the screening that uses them --------------------------


@lru_cache(maxsize=1)
def epdo_weights_file() -> dict[str, Any]:
    """The versioned EPDO weights, ``trafficunit/epdo_weights.json``: their one source."""
    text = (files("trafficunit") / "epdo_weights.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


#: EPDO weights by KABCO severity from HSM-era crash costs (docs/domain.md [src]). Versioned data
#: (read from ``epdo_weights.json``): the version string travels with every result so a map
#: legend can say which weights it used.
EPDO_WEIGHTS_HSM: dict[str, float] = {
    k: float(v) for k, v in epdo_weights_file()["versions"]["hsm-2010"]["weights"].items()
}
EPDO_WEIGHTS_VERSION = "HSM-2010 ({})".format(
    ", ".join(f"{k} {v:g}" for k, v in EPDO_WEIGHTS_HSM.items())
)

#: The four risk levels, lowest first (level_rank 1..4), and their map colours.
RISK_LEVELS: tuple[str, ...] = ("blue", "yellow", "orange", "red")
RISK_COLOURS: dict[str, str] = {
    "red": "#d7191c",
    "orange": "#fdae61",
    "yellow": "#ffff66",
    "blue": "#2c7bb6",
}
#: Colour of a unit that has no level (not scored).
NO_LEVEL_COLOUR = "#8c8c8c"


@dataclass(frozen=True)
class RiskSettings(_With):
    """How units are scored and coloured (:func:`trafficunit.score`).

    Attributes
    ----------
    epdo_weights, epdo_version
        EPDO weight per KABCO letter and a label of where the weights come from.
    unknown_severity
        KABCO letter an accident without a usable severity is counted as (for EPDO).
    measure
        Column the level is banded on: ``"eb_excess"`` (default), ``"epdo"``,
        ``"epdo_per_km"``, ``"crashes_per_year"``, ``"crashes_per_km_year"``, ``"rate_mvkm"``,
        ``"eb_expected"``...
    intersection_measure
        Measure for intersection units when it differs (per-km measures are NaN there);
        ``None`` uses ``measure``, or ``"epdo"`` when ``measure`` is a per-km measure.
    scheme
        ``"percentile"`` (band the measure's percentile in the reference population),
        ``"fixed"`` (band the measure itself on ``fixed_thresholds``), ``"length_share"`` (the
        usRAP-style split of network length, ``length_shares``) or ``"matrix"`` (5x5
        likelihood x severity, banded on ``matrix_bands``).
    percentile_bands
        Lower percentile bounds of yellow, orange and red [rec: 65, 85, 95, the same split as
        the default length shares].
    fixed_thresholds
        Lower bounds of yellow, orange and red on the measure itself (scheme ``"fixed"``).
    length_shares, length_share_levels
        Shares of reference-population length (percent, lowest risk first; usRAP: 40/25/20/10/5)
        and the level of each class. Intersections weigh one unit each.
    matrix_bands
        Lowest likelihood x severity product of yellow, orange and red ([src] 4, 9, 20).
    min_crashes
        Units with fewer observed accidents than this stay blue on their crash score.
    positive_only
        Units whose measure is <= 0 (e.g. fewer accidents than predicted) stay blue.
    population
        Unit columns whose combination is a reference population (SPF fit and percentiles).
    min_population
        Populations with fewer units are pooled per ``kind`` instead.
    min_segment_length_m
        Segment length floor used in the SPF (very short pieces are not zero-exposure).
    spf_length_exponent
        Exponent of segment length in fitted SPFs: 1 makes length an offset (accidents
        proportional to length, the HSM form); ``None`` fits it as a covariate.
    hazard_raise
        Levels an open hazard of each grade adds to the crash level (capped at red).
    closed_hazard_status
        Hazard ``status`` values (case-insensitive) that count as not open.
    hotspot_measure, hotspot_permutations, hotspot_alpha
        Measure, permutations and significance of the Getis-Ord Gi* / local Moran statistics.
    seed
        Seed of every random permutation.
    peak_window_m, peak_max_cv
        HSM peak searching: window increment (0.1 mi) and coefficient-of-variation limit [?].
    screen_window_m, screen_step_m
        HSM sliding-window screening: window (0.3 mi) and step (0.1 mi) [?].
    chain_keys
        Unit columns that say two segments are the same road, in priority order.
    chain_max_turn_deg
        Largest turn (degrees) a road may make through an intersection and stay one road; keeps
        the two carriageways of a divided road apart (no U-turns) [rec: 100].
    rank_among
        ``"all"``: percentiles among every unit of the reference population; ``"with_crashes"``:
        among its units with at least ``min_crashes`` accidents (useful where the data covers
        only some corridors).
    corridor_max_offset_m, corridor_max_angle_deg, corridor_min_overlap_m
        Divided roads: two one-way chains of the same name or ref whose segments run within
        ``corridor_max_offset_m`` metres of each other (centre line to centre line [rec: 40]),
        in opposite directions (within ``corridor_max_angle_deg`` of antiparallel [rec: 30])
        along at least ``corridor_min_overlap_m`` metres (or half the shorter one) are one
        corridor for sliding-window screening.
    sparse_coverage, sparse_median_eb_weight, sparse_max_k
        Sparse-data warnings of :func:`trafficunit.score`: fewer units with accidents than
        ``sparse_coverage`` (share), a median EB weight (units with accidents) below
        ``sparse_median_eb_weight``, or a fitted overdispersion ``k`` above ``sparse_max_k``
        say the SPF cannot describe the network [rec: 0.05, 0.05, 10].
    """

    epdo_weights: dict[str, float] = field(default_factory=lambda: dict(EPDO_WEIGHTS_HSM))
    epdo_version: str = EPDO_WEIGHTS_VERSION
    unknown_severity: str = "O"
    measure: str = "eb_excess"
    intersection_measure: str | None = None
    scheme: str = "percentile"
    percentile_bands: tuple[float, float, float] = (65.0, 85.0, 95.0)
    fixed_thresholds: tuple[float, float, float] | None = None
    length_shares: tuple[float, ...] = (40.0, 25.0, 20.0, 10.0, 5.0)
    length_share_levels: tuple[str, ...] = ("blue", "blue", "yellow", "orange", "red")
    matrix_bands: tuple[int, int, int] = (4, 9, 20)
    min_crashes: int = 1
    positive_only: bool = True
    population: tuple[str, ...] = ("road_class", "kind")
    min_population: int = 20
    min_segment_length_m: float = 5.0
    spf_length_exponent: float | None = 1.0
    hazard_raise: dict[str, int] = field(default_factory=lambda: {"general": 1, "major": 2})
    closed_hazard_status: frozenset[str] = frozenset(
        {"closed", "accepted", "resolved", "cancelled", "canceled", "rejected", "invalid"}
    )
    colours: dict[str, str] = field(default_factory=lambda: dict(RISK_COLOURS))
    hotspot_measure: str = "epdo"
    hotspot_permutations: int = 999
    hotspot_alpha: float = 0.05
    seed: int = 20240601
    peak_window_m: float = 160.9344
    peak_max_cv: float = 0.25
    screen_window_m: float = 482.8032
    screen_step_m: float = 160.9344
    chain_keys: tuple[str, ...] = ("name", "ref")
    chain_max_turn_deg: float = 100.0
    rank_among: str = "all"
    corridor_max_offset_m: float = 40.0
    corridor_max_angle_deg: float = 30.0
    corridor_min_overlap_m: float = 100.0
    sparse_coverage: float = 0.05
    sparse_median_eb_weight: float = 0.05
    sparse_max_k: float = 10.0


@dataclass(frozen=True)
class TimeSettings:
    """How events are sliced in time (:mod:`trafficunit.timefilter`).

    Attributes
    ----------
    day_hours
        Clock day: ``start <= hour < end`` is day [rec: 7-19].
    night_sun_elevation_deg
        By sun: night when the sun is below this elevation, degrees [rec: 0, sunset; on the
        Helsinki FTA accidents 2011-2016 it agrees with the police's recorded darkness for
        95.9 % of accidents, -6 (civil twilight) for 94.5 %, the 07-19 clock for 84.2 %].
    hour_bands
        Named time-of-day bands (start hour inclusive, end exclusive) used in explanations.
    """

    day_hours: tuple[int, int] = (7, 19)
    night_sun_elevation_deg: float = 0.0
    hour_bands: tuple[tuple[str, int, int], ...] = (
        ("night", 0, 6),
        ("morning", 6, 10),
        ("midday", 10, 15),
        ("evening", 15, 19),
        ("late evening", 19, 24),
    )


# --- events and join (trafficunit.events, trafficunit.join) ----------------------------------

#: Kinds of event ``tu.read_events`` reads and ``tu.assign`` joins.
EVENT_KINDS: tuple[str, ...] = ("accident", "hazard", "workzone")

#: Hazard / work-zone ``status`` values (case-insensitive) that mean "no longer open".
CLOSED_STATUSES: frozenset[str] = frozenset(
    {
        "closed",
        "resolved",
        "fixed",
        "done",
        "completed",
        "work completed",
        "accepted",
        "cancelled",
        "canceled",
        "work cancelled",
        "rejected",
        "archived",
        "duplicate",
        "已关闭",
        "已整改",
        "已销号",
        "已验收",
    }
)


@dataclass(frozen=True)
class EventSettings:
    """How event files are read (``tu.read_events``).

    Attributes
    ----------
    valid_area_margin_deg
        Margin (degrees) around the source CRS's area of use inside which coordinates are
        accepted; points further out are dropped as "outside the valid area".
    zero_is_missing
        Treat x = y = 0 as a missing position (a common placeholder), not a real one.
    outlier_factor, outlier_min_km, outlier_min_rows
        A position further from the data's median position than ``outlier_factor`` times
        the 95th-percentile distance (and at least ``outlier_min_km``) is dropped as "far
        outside the data's extent"; checked when at least ``outlier_min_rows`` rows have a
        position.
    """

    valid_area_margin_deg: float = 0.5
    zero_is_missing: bool = True
    outlier_factor: float = 10.0
    outlier_min_km: float = 100.0
    outlier_min_rows: int = 20


@dataclass(frozen=True)
class JoinSettings(_With):
    """How events are attached to units (``tu.assign``) and summarised (``tu.summarize``).

    Attributes
    ----------
    max_distance_m
        Largest snap distance of a point event to a segment unit, metres, by event kind
        (docs/domain.md [rec]: 25 m for crashes; citizen reports are often placed less precisely).
    max_distance_m_by_class
        Overrides of ``max_distance_m`` by event kind, then by the unit's ``road_class``,
        e.g. ``{"accident": {"motorway": 40.0}}``.
    line_tolerance_m
        A line event touches the units within this distance, metres, by kind.
    polygon_tolerance_m
        A polygon event touches the units within this distance of its area, metres.
    min_overlap_m
        A unit touched by a line event is kept when their overlap (along the event) is at
        least this long, metres, or covers half the unit; shorter contacts are cross streets.
    area_buffer_m
        The network's area is the units' convex hull buffered by this (metres); unmatched
        events beyond it are "outside", inside it "too_far".
    name_aware
        Where the event names its road, a unit of that name within the distance wins over a
        nearer unit of another name (grade separations).
    name_extra_distance_m
        How much farther than its distance a name-aware join may reach for a unit of the
        street the event names before it takes a nearer street of another name; an event with
        no candidate at all stays unmatched [rec: 15 m, about a carriageway and a sidewalk].
    intersection_precedence
        A point inside an intersection's influence disc (``radius_m``) goes to the
        intersection.
    default_radius_m
        Influence radius of intersections whose ``radius_m`` is missing, metres.
    epdo_weights
        Version name of the EPDO weights (see ``trafficunit/epdo_weights.json``).
    closed_statuses
        Hazard statuses that do not count as open.
    """

    max_distance_m: dict[str, float] = field(
        default_factory=lambda: {"accident": 25.0, "hazard": 20.0, "workzone": 25.0}
    )
    max_distance_m_by_class: dict[str, dict[str, float]] = field(default_factory=dict)
    line_tolerance_m: dict[str, float] = field(
        default_factory=lambda: {"accident": 25.0, "hazard": 30.0, "workzone": 30.0}
    )
    polygon_tolerance_m: float = 5.0
    min_overlap_m: float = 10.0
    area_buffer_m: float = 0.0
    name_aware: bool = True
    name_extra_distance_m: float = 15.0
    intersection_precedence: bool = True
    default_radius_m: float = DEFAULT_INFLUENCE_M
    epdo_weights: str = "hsm-2010"
    closed_statuses: frozenset[str] = CLOSED_STATUSES


# --- hazard ledger and work zones (trafficunit.ledger) ---------------------------------------


@dataclass(frozen=True)
class LedgerSettings(_With):
    """Rules of the hazard closed loop (``trafficunit.ledger``); docs/domain.md "Hazard lifecycle".

    Attributes
    ----------
    catalogue
        Path of a hazard category catalogue (JSON, the shape of the shipped
        ``trafficunit/ledger/catalogue.json``); ``None`` for the shipped default (4 classes).
    deadline_days
        Days from assignment to the rectification deadline, by grade [rec]: a general hazard
        (一般) is fixed at once, a major one (重大) needs time or outside help.
    list_major
        Put major hazards under listed supervision (挂牌督办) when they are assigned.
    list_overdue
        Put overdue hazards under listed supervision when the overdue sweep finds them.
    duplicate_distance_m
        A new report within this distance (metres) of an open hazard of the same category is
        linked to it instead of opening another.
    duplicate_window_days
        ... provided that hazard was last reported within this many days.
    reopen_days
        A serious crash on a hazard's unit within this many days of its closure reopens it
        (docs/domain.md [rec]: 12 months).
    reopen_severities
        KABCO severities that count as serious for reopening.
    max_vertices
        Largest number of vertices of a reported geometry.
    max_area_m2
        Largest polygon area (m²) by kind: ``hazard`` (default 1 km²) and ``workzone``
        (2 km²); larger reports are refused (the server answers 422).
    max_length_m
        Longest line (m) by kind: ``hazard`` 5 km, ``workzone`` 20 km.
    units_margin_m
        Reports must touch the bounding box of the units grown by this many metres
        (default 5 km); beyond it they are refused, with a hint when longitude and latitude
        look swapped. Not checked while the ledger has no units.
    """

    catalogue: str | None = None
    deadline_days: dict[str, float] = field(default_factory=lambda: {"general": 7.0, "major": 90.0})
    list_major: bool = True
    list_overdue: bool = True
    duplicate_distance_m: float = 30.0
    duplicate_window_days: float = 30.0
    reopen_days: float = 365.0
    reopen_severities: frozenset[str] = frozenset({"K", "A"})
    max_vertices: int = 5000
    max_area_m2: dict[str, float] = field(
        default_factory=lambda: {"hazard": 1_000_000.0, "workzone": 2_000_000.0}
    )
    max_length_m: dict[str, float] = field(
        default_factory=lambda: {"hazard": 5_000.0, "workzone": 20_000.0}
    )
    units_margin_m: float = 5_000.0


# --- re-segmentation lineage and scale-out (trafficunit.lineage, trafficunit.distributed) ------


@dataclass(frozen=True)
class LineageSettings(_With):
    """How a re-segmentation relates old units to new ones (``tu.resegment``).

    Attributes
    ----------
    match_tolerance_m
        A stretch of an old segment within this distance (metres) of a new segment is shared
        by the two (absorbs re-digitising noise and rounding).
    min_overlap_m
        Two segments are related when they share at least this length (metres), or at least
        half of either; shorter contacts are cross streets touching at a junction.
    intersection_match_m
        A changed old intersection and a changed new one whose centres are this close
        (metres) are the same junction, moved or reshaped; segments left unrelated on both
        sides are the same stretch re-drawn when they share a way and lie within this
        Hausdorff distance.
    reassign_slack_m
        An event follows its unit's successor when it lies within the join's maximum
        distance plus this (metres) of it; farther ones are joined again spatially.
    compare_attributes
        Attributes compared between an old unit and its unchanged new self; differences are
        listed in the lineage's ``changed`` column.
    """

    match_tolerance_m: float = 1.0
    min_overlap_m: float = 5.0
    intersection_match_m: float = 20.0
    reassign_slack_m: float = 10.0
    # fmt: off
    compare_attributes: tuple[str, ...] = (
        "road_class", "ramp", "name", "ref", "maxspeed_kmh", "lanes", "oneway", "direction",
        "lit", "sidewalk", "surface", "bridge", "tunnel", "degree", "road_classes", "aadt",
    )
    # fmt: on


@dataclass(frozen=True)
class DistributedSettings(_With):
    """How the build → join → score pipeline is partitioned on Dask (``trafficunit.distributed``).

    Attributes
    ----------
    cell_size_m
        Side of the square partition cells, metres (default: chosen so a cell holds about
        ``roads_per_cell`` road lines).
    roads_per_cell, events_per_cell
        Target number of road lines per cell of the build, and of events per cell of the
        join, when ``cell_size_m`` is not given (at least two cells a worker; small cells
        balance the workers' load, large ones rebuild fewer roads in the halos).
    halo_m
        First halo around a cell, metres: a task builds units from the roads within the cell
        grown by the halo, and keeps the units anchored in the cell whose whole context lies
        inside; otherwise it retries with a larger halo (doubled at least).
    max_halo_doublings
        Retries before a cell falls back to the whole network (always exact).
    n_workers, threads_per_worker, memory_limit, processes
        The local cluster started when no scheduler address is given (``processes=False``
        runs the workers as threads of this process).
    connect_timeout_s
        How long to try to reach a scheduler given by its address, seconds.
    dashboard_address
        Where the local cluster serves Dask's dashboard (``"127.0.0.1:8787"``; needs
        ``bokeh``), with the workers' profiler on. Default: no dashboard (the scheduler's
        HTTP endpoints on a free port).
    """

    cell_size_m: float | None = None
    roads_per_cell: int = 12_500
    events_per_cell: int = 200_000
    halo_m: float = 400.0
    max_halo_doublings: int = 6
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "auto"
    processes: bool = True
    connect_timeout_s: float = 30.0
    dashboard_address: str | None = None
