"""GPS traces: read them, check them against a route permit, and generate test traces.

A heavy-vehicle permit (泥头车 route permit) fixes the units a truck may drive, the daily time
windows it may drive in and speed caps per road class. :func:`check_trace` matches a trace to
the units (:func:`trafficunit.match_trace`) and reports

- **off-route stretches**: where the matched path leaves the permitted units (a link inside a
  junction on the route counts as the junction), with their length, start and end time and
  line; points with no unit near them (off the network) and breaks in the match are stretches
  of their own kind;
- **speeding per unit**: the median speed of each passage over a unit (the trace's own speeds
  when it has them, else the matcher's smoothed speed from time and distance) above the lower
  of the unit's ``maxspeed_kmh`` and the permit's cap for its road class, plus a tolerance;
  units with neither limit are counted as unchecked, never given an assumed limit;
- **driving outside the windows**: stretches of points whose local time is outside every daily
  window (or outside the permit's validity period).

"Keep right" (靠右行驶) cannot be checked: the units have no lanes' geometry, and 10–30 m of GPS
noise is wider than a carriageway. The report says so instead of pretending.

Readers: GPX (tracks; a file with several tracks needs ``track=`` or
:func:`read_gpx_tracks`) and CSV with ``time``, ``lon``, ``lat`` and optionally ``speed``.
"""

from .check import check_trace
from .generate import generate_trace
from .readers import read_gpx_tracks, read_trace
from .report import FINDING_LABELS, KEEP_RIGHT_NOTE, PermitRules, TraceReport

__all__ = [
    "FINDING_LABELS",
    "KEEP_RIGHT_NOTE",
    "PermitRules",
    "TraceReport",
    "check_trace",
    "generate_trace",
    "read_gpx_tracks",
    "read_trace",
]
