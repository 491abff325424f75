"""A downstream user's script, type-checked by `make typecheck` from outside the repository.

mypy sees the installed package (``py.typed``), so the public API must resolve to typed
functions; the Makefile fails when a ``reveal_type`` below says ``Any``.
"""

from __future__ import annotations

import geopandas as gpd

import trafficunit as tu


def screen(units: gpd.GeoDataFrame, events: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    joined = tu.assign(units, events, max_distance_m=25)
    return tu.score(units, joined)


reveal_type(tu.score)  # noqa: F821
reveal_type(tu.assign)  # noqa: F821
reveal_type(tu.read_events)  # noqa: F821
