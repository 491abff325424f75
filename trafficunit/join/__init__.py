"""Attach accidents, hazards and work zones to traffic units, and summarise them per unit.

:func:`assign` is the join. Its rules (docs/domain.md, "Crash to unit"), all configurable through
:class:`~trafficunit.settings.JoinSettings`:

1. **Candidates.** A point event's candidates are the segment units within its maximum
   distance (by event kind, optionally by the unit's road class) and the intersection units
   whose influence disc (``radius_m`` around the junction point) contains it.
2. **Name-aware.** Where the event names its road (``road_name``), candidates whose name
   matches win over nearer candidates of another name (and reach up to
   ``name_extra_distance_m`` beyond the distance for it, where another street is near): a
   crash on the street under a bridge stays on that street. Names match when one's words
   contain the other's, ignoring case, house numbers, directions and street-type words
   ("SE 122ND AVE" ~ "Southeast 122nd Avenue"; "HUOPALAHDENTIE 30" ~ "Huopalahdentie";
   "A X B" names two streets).
3. **Intersection precedence.** Among what is left, an intersection whose disc contains the
   point wins (status ``"intersection"``); else the nearest segment (``"matched"``).
4. **Ties** go to the smaller distance (to the micrometre), then the smaller ``unit_id``.
5. **Unmatched** events stay in the output with ``unit_id`` ``<NA>``: ``"too_far"`` inside the
   network's area (the convex hull of the units, buffered by ``area_buffer_m``, default 0),
   with the distance to the nearest unit; ``"outside"`` beyond it. An event near the edge
   that does match is ``"matched"``; an unmatched one just beyond the outermost units most
   likely belongs to a road the extract cut off, hence "outside" rather than "too far".
6. **Lines and polygons** go to every unit they touch (within ``line_tolerance_m`` /
   ``polygon_tolerance_m``), one row per (event, unit) pair, with ``overlap_m``: for lines the
   length along the event that the unit runs beside it (cross streets that only touch score
   near zero and are dropped below ``min_overlap_m`` unless they are half covered), for
   polygons the unit's length inside the area.

All metric work happens in a projected CRS (:func:`trafficunit._validate.metric_crs`), on
arrays, through shapely ``STRtree`` queries.

Layout: :mod:`.index` (:class:`UnitIndex`, match statuses, distances), :mod:`.names` (road
names), :mod:`.points` and :mod:`.shapes` (point events; lines and polygons),
:mod:`.assignment` (:func:`assign` and its diagnosis), :mod:`.columnar` (point events as
coordinate arrays, joined without shapely points), :mod:`.weights` (EPDO weights),
:mod:`.windows` (active events in a time window) and :mod:`.summaries` (per-unit summaries).
"""

from __future__ import annotations

# `_segment_pairs` (imported with `as`, not in `__all__`) is used by other library modules.
from .assignment import assign
from .index import MATCH_STATUSES, UnitIndex
from .names import names_match
from .points import _segment_pairs as _segment_pairs
from .summaries import summarize, summarize_by_year
from .weights import epdo_weights
from .windows import active_at, active_between

__all__ = [
    "MATCH_STATUSES",
    "UnitIndex",
    "active_at",
    "active_between",
    "assign",
    "epdo_weights",
    "names_match",
    "summarize",
    "summarize_by_year",
]
