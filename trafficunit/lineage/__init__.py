"""Re-segmentation with lineage: rebuild the units of an edited network and carry history over.

Road networks change: streets are added, junctions re-aligned, speed limits changed. A batch job
rebuilds the units from the new network (:func:`resegment`) and relates every old unit to the
new ones, the way a linear-referencing system keeps its events on the road:

1. **Unchanged.** Unit ids are content hashes of the source ways and rounded coordinates
   (:mod:`trafficunit.units`), so a stretch whose extent did not change keeps its id, even when
   an attribute changed (the lineage lists the changed attributes in ``changed``).
2. **Segments** whose id changed are matched to the changed new segments by shared length:
   an ``STRtree`` query gives the pairs within ``match_tolerance_m``, and the length of each
   line inside the other's flat-ended buffer of that width is the overlap (only changed
   segments are buffered). Pairs sharing at least ``min_overlap_m`` (or half of either unit)
   are related. Segments left over on both sides are related when they come from the same
   way and their Hausdorff distance is within ``intersection_match_m`` (a short link under a
   moved junction).
3. **Intersections** whose id changed are matched by the distance between their centres
   (``intersection_match_m``); the share is the overlap of their influence discs.
4. The **kind** of each relation follows from the relation graph: one old unit to several new
   ones is a ``split``, several old to one new a ``merged``, one to one (or many to many) a
   ``reshaped``; an old unit related to nothing is ``removed``, a new one ``added``.
5. **Events** follow: accidents and open hazards on unchanged units stay; those on changed
   units move to the successor of their old unit that they lie on (an intersection's disc
   first, then the nearest successor segment, as :func:`trafficunit.assign` decides); events
   with no usable successor, or unmatched before, are joined again spatially
   (:func:`trafficunit.assign`). Closed hazards stay on the unit they were closed on.
6. **Versions.** New units carry ``valid_from`` (kept from the old unit when unchanged, else
   the re-segmentation date ``as_of``) and ``valid_to`` (``NaT`` while current); retired units
   get ``valid_to = as_of`` in the history table, and :func:`history` follows a unit through
   any number of lineage tables.

>>> import trafficunit as tu
>>> roads = tu.read_network(tu.sample_network_path())
>>> old = tu.build_units(roads)
>>> new, lineage = tu.resegment(old, roads, as_of="2024-01-01")
>>> set(lineage["kind"]) == {"unchanged"} and new.index.equals(old.index)
True

Modules: :mod:`.pairs` (inputs and matching), :mod:`.rebuild` (:func:`resegment`),
:mod:`.reassignment` (:func:`reassign`) and :mod:`.ancestry` (:func:`history`).
"""

from __future__ import annotations

from .ancestry import history
from .pairs import CHANGE_KINDS, LINEAGE_COLUMNS
from .reassignment import reassign
from .rebuild import Resegmented, change_lines, lineage_summary, resegment

__all__ = [
    "CHANGE_KINDS",
    "LINEAGE_COLUMNS",
    "Resegmented",
    "change_lines",
    "history",
    "lineage_summary",
    "reassign",
    "resegment",
]
