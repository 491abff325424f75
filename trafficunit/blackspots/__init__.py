"""Accident-prone points and sections (black spots), sliding windows and HSM peak searching.

- **Roads**: :func:`road_chains` chains segment units into continuous roads. Consecutive
  pieces of one road are linked directly (``from_unit`` / ``to_unit``); through an intersection
  two segments are linked when they carry the same road name (or ref, ``chain_keys``) and their
  directions agree (two one-way carriageways flowing into the same junction are two roads, not
  one). Where more than two same-named ends meet, the straightest pairs are linked. Every
  chain has a running distance, and each intersection on it sits at the distance of its joint.
- **Corridors**: :func:`road_corridors` pairs the two carriageways of a divided road (same
  name or ref, one-way in opposite directions, within ``corridor_max_offset_m``) into one
  screening line measured along its longer carriageway; the junctions along either belong to
  it. Sliding windows and sections use corridors by default (``corridors=False``: every
  carriageway alone).
- **Sections**: :func:`sliding_windows` moves a window along every chain and counts the
  accidents inside (by KABCO severity, casualties, EPDO); :func:`find_black_spots` keeps the
  windows that meet a profile's rule, the worst first, without overlaps on the same road, and
  each accident in one section only: a chosen section takes its accidents out of every other
  window before the next is chosen. Its own accidents (``segment_crashes``) and those of the
  junctions on it (``junction_crashes``) are separate columns.
- **Points**: accidents within ``point_radius_m`` of a centre accident, the worst qualifying
  circle first, each accident in at most one point.
- **Peak searching** (HSM Part B): :func:`peak_search` grows a window along each road until the
  coefficient of variation of its EB estimate falls below a limit, and reports the window with
  the largest excess.

Profiles (:data:`trafficunit.blackspots.profiles.BLACK_SPOT_PROFILES`): ``default``,
``kr-molit``, ``in-morth``, ``pt-ansr``; pass a
:class:`~trafficunit.blackspots.profiles.BlackSpotProfile` for your own.

The package follows those stages: :mod:`.profiles` (rules and their evaluation),
:mod:`.chains`, :mod:`.corridors`, :mod:`.windows` (positions and sliding windows),
:mod:`.spots` (points and the ranking), :mod:`.sections` and :mod:`.peaks`.
"""

from __future__ import annotations

from .chains import road_chains
from .corridors import road_corridors
from .peaks import peak_search
from .profiles import (
    BLACK_SPOT_PROFILES,
    PROFILES,
    BlackSpotProfile,
    Criterion,
    get_profile,
    parse_criterion,
    register_profile,
)
from .spots import find_black_spots
from .windows import _chain_positions as _chain_positions
from .windows import sliding_windows

__all__ = [
    "find_black_spots",
    "road_chains",
    "road_corridors",
    "sliding_windows",
    "peak_search",
    "get_profile",
    "register_profile",
    "parse_criterion",
    "PROFILES",
    "BLACK_SPOT_PROFILES",
    "BlackSpotProfile",
    "Criterion",
]
