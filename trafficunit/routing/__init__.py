"""Routes over the traffic-unit graph: shortest paths, avoidances, explicit-route checks.

The units carry their own adjacency (``from_unit`` / ``to_unit`` for segments, ``neighbours``
for intersections, see :mod:`trafficunit.units`). :class:`UnitGraph` turns it into a directed
graph whose nodes are the places where segments meet (an intersection unit, a plain joint
between two segments, or a dead end) and whose edges are the segments, in the directions they
may be driven (``direction == "forward"`` one way from the segment's first vertex to its last,
``"both"`` either way). Links inside a consolidated junction (``junction_id`` set) belong to
their intersection and are passed through as part of it. Crossing an intersection is not free:
a segment's edge runs from the intersection's centre to the next node, so each crossing costs
the way from the entering segment's end to the centre and from the centre to the leaving
segment's start (in metres, or in seconds at those segments' speeds).

Shortest paths use :func:`scipy.sparse.csgraph.dijkstra` on a CSR matrix built once per
graph (numpy only, no per-row Python). Origin and destination are positions on segments (a
point snapped to its nearest segment), joined to the graph by two virtual nodes, so a route
may start and end mid-segment.

Turn restrictions, lane use and height or weight limits are not in the units, so routes do not
respect them; a permit's route should still be reviewed by a person.
"""

from .check import RouteCheck, check_route
from .graph import ASSUMED_SPEED_KMH, AVOID_OPTIONS, UnitGraph
from .paths import Route, route
from .windows import check_tz, daily_intervals, parse_hhmm

__all__ = [
    "ASSUMED_SPEED_KMH",
    "AVOID_OPTIONS",
    "Route",
    "RouteCheck",
    "UnitGraph",
    "check_route",
    "check_tz",
    "daily_intervals",
    "parse_hhmm",
    "route",
]
