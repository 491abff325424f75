"""A hand-drawn units network for the risk and black-spot tests (metres, EPSG:32633).

::

                 S4 (Side Rd, drawn north)
                  |
    S1 ------- IA (300, 0) ------- S2 ------- (600, 0) ------- S3 (drawn 1000 -> 600)
    0 m           |               Main St continues straight into S3 (direct link)
                 S5 (Side Rd, drawn north, ends at IA)

Main St is 1000 m: S1 [0, 300], IA at 300, S2 [300, 600], S3 [600, 1000] traversed against
its drawing direction. Side Rd is 600 m through IA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import LineString, Point

CRS = "EPSG:32633"


def make_units(rows: Sequence[tuple[Any, ...]], neighbours: dict[str, str] | None = None) -> Any:
    """Units from (id, kind, geometry, name, direction, from_unit, to_unit, road_class)."""
    df = pd.DataFrame(
        rows,
        columns=[
            "unit_id",
            "kind",
            "geometry",
            "name",
            "direction",
            "from_unit",
            "to_unit",
            "road_class",
        ],
    )
    g = gpd.GeoDataFrame(df, geometry="geometry", crs=CRS).set_index("unit_id")
    seg = g["kind"] == "segment"
    g["length_m"] = np.where(seg, g.geometry.length, 0.0)
    g["radius_m"] = np.where(seg, np.nan, 30.0)
    g["ref"] = pd.Series(pd.NA, index=g.index, dtype="string")
    g["junction_id"] = pd.Series(pd.NA, index=g.index, dtype="string")
    g["degree"] = np.where(seg, 0, 4)
    if neighbours is None:
        # touching units: shared endpoints
        ids = list(g.index)
        nb = {}
        for i in ids:
            near = [j for j in ids if j != i and g.geometry[i].distance(g.geometry[j]) < 1e-6]
            nb[i] = ";".join(near)
        neighbours = nb
    g["neighbours"] = pd.Series(neighbours).reindex(g.index)
    return g


def network() -> gpd.GeoDataFrame:
    """The Main St / Side Rd network drawn in the module docstring."""
    return make_units(
        [
            (
                "S1",
                "segment",
                LineString([(0, 0), (300, 0)]),
                "Main St",
                "both",
                None,
                "IA",
                "primary",
            ),
            (
                "S2",
                "segment",
                LineString([(300, 0), (600, 0)]),
                "Main St",
                "both",
                "IA",
                "S3",
                "primary",
            ),
            (
                "S3",
                "segment",
                LineString([(1000, 0), (600, 0)]),
                "Main St",
                "both",
                None,
                "S2",
                "primary",
            ),
            (
                "S4",
                "segment",
                LineString([(300, 0), (300, 300)]),
                "Side Rd",
                "both",
                "IA",
                None,
                "residential",
            ),
            (
                "S5",
                "segment",
                LineString([(300, -300), (300, 0)]),
                "Side Rd",
                "both",
                None,
                "IA",
                "residential",
            ),
            ("IA", "intersection", Point(300, 0), "Main St;Side Rd", None, None, None, "primary"),
        ]
    )


def crashes(units: gpd.GeoDataFrame, spec: Sequence[tuple[Any, ...]], **extra: Any) -> Any:
    """Joined accidents from (unit, measure_m, severity, year[, hour/time...]) tuples.

    Each accident lies on its unit at ``measure_m`` from the unit's start (intersections: at the
    junction point).
    """
    rows = []
    for i, (unit, m, sev, year, *rest) in enumerate(spec):
        geom = units.geometry[unit]
        pt = geom.interpolate(m) if geom.geom_type == "LineString" else geom
        row = {
            "event_id": f"e{i}",
            "kind": "accident",
            "unit_id": unit,
            "measure_m": float(m),
            "distance_m": 0.0,
            "match": "matched" if unit.startswith("S") else "intersection",
            "severity": sev,
            "year": year,
            "geometry": pt,
        }
        if rest:
            row.update(rest[0])
        rows.append(row)
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=units.crs)
    for k, v in extra.items():
        out[k] = v
    return out


#: The accidents of the hand computations: (unit, measure along it, KABCO, year).
SPEC = [
    ("S1", 100, "K", 2021),
    ("S1", 110, "O", 2021),
    ("S2", 50, "B", 2021),
    ("S2", 60, "B", 2022),
    ("S2", 70, "C", 2022),
    ("IA", 0, "A", 2022),
    ("S3", 100, "O", 2022),
]
