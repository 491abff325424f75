"""Small synthetic data folders for the tiles, server and web-map tests (built in tmp_path).

A 6 x 6 street grid in central Helsinki: 60 segments, 36 intersections, scored by hand so the
tests do not depend on the risk module; accidents, hazards and work zones on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from trafficunit.io import write_table
from trafficunit.tiles import LEVEL_COLOURS, build_tiles

LON0, LAT0 = 24.930, 60.160
DLON, DLAT = 0.0030, 0.0015  # ~167 m by ~167 m
N = 6
RULE = {
    "bands": [
        {"level": "red", "label": "test band red", "colour": LEVEL_COLOURS["red"]},
        {"level": "orange", "label": "test band orange", "colour": LEVEL_COLOURS["orange"]},
        {"level": "yellow", "label": "test band yellow", "colour": LEVEL_COLOURS["yellow"]},
        {"level": "blue", "label": "test band blue", "colour": LEVEL_COLOURS["blue"]},
    ],
    "guards": {"text": "fewer than 1 accident stays blue"},
}


def grid_units() -> gpd.GeoDataFrame:
    """Scored units of the grid (contract columns of tu.score), EPSG:4326, indexed by unit_id."""
    rows = []
    for i in range(N):
        for j in range(N):
            x, y = LON0 + i * DLON, LAT0 + j * DLAT
            rows.append(
                {
                    "unit_id": f"I{i:02d}{j:02d}TESTNODE",
                    "kind": "intersection",
                    "geometry": shapely.Point(x, y),
                    "length_m": 0.0,
                    "radius_m": 20.0,
                    "road_class": "secondary" if i == 2 else "residential",
                    "degree": 4,
                }
            )
            for di, dj, tag in ((1, 0, "E"), (0, 1, "N")):
                if i + di < N and j + dj < N:
                    rows.append(
                        {
                            "unit_id": f"S{i:02d}{j:02d}{tag}TESTSEG",
                            "kind": "segment",
                            "geometry": shapely.LineString(
                                [(x, y), (x + di * DLON, y + dj * DLAT)]
                            ),
                            "length_m": 167.0,
                            "radius_m": np.nan,
                            "road_class": "primary" if j == 0 else "residential",
                            "degree": 0,
                        }
                    )
    df = pd.DataFrame(rows)
    n = len(df)
    rank = np.arange(n) % 10
    df["level"] = np.select([rank == 0, rank == 1, rank < 4], ["red", "orange", "yellow"], "blue")
    df["level_rank"] = df["level"].map({"red": 4, "orange": 3, "yellow": 2, "blue": 1})
    df["colour"] = df["level"].map(LEVEL_COLOURS)
    df["crashes"] = (10 - rank).astype("int64")
    df["epdo"] = df["crashes"] * 3.5
    df["score_percentile"] = 100.0 - rank * 10.0
    df["name"] = np.where(df["kind"] == "segment", "Testikatu", "Testikatu;Koekatu")
    df["maxspeed_kmh"] = 40.0
    df["osm_ids"] = "1001;1002"
    df["neighbours"] = "S0000ETESTSEG;I0000TESTNODE"
    gdf = gpd.GeoDataFrame(df, geometry="geometry", crs=4326).set_index("unit_id")
    gdf.attrs["rule"] = RULE
    return gdf


def grid_events(units: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    """Joined accidents (one per segment: day ones and night ones), hazards and work zones."""
    segs = units[units["kind"] == "segment"]
    mids = shapely.line_interpolate_point(np.asarray(segs.geometry.array), 0.5, normalized=True)
    n = len(segs)
    hours = np.where(np.arange(n) % 3 == 0, 23, 12)
    times = pd.to_datetime("2018-01-01") + pd.to_timedelta(np.arange(n) * 5, "D")
    times = times + pd.to_timedelta(hours, "h")
    acc = gpd.GeoDataFrame(
        {
            "event_id": [f"A{k:04d}" for k in range(n)],
            "kind": "accident",
            "time": pd.DatetimeIndex(times).tz_localize("Europe/Helsinki"),
            "year": pd.array(pd.DatetimeIndex(times).year.to_numpy(), dtype="Int64"),
            "hour": pd.array(hours, dtype="Int64"),
            "severity": np.array(list("KABCO"))[np.arange(n) % 5],
            "unit_id": segs.index.to_numpy(),
            "distance_m": 0.0,
            "match": "matched",
            "generated": True,
        },
        geometry=mids,
        crs=4326,
    )
    hz = gpd.GeoDataFrame(
        {
            "event_id": ["H1", "H2", "H3"],
            "kind": "hazard",
            "category": ["markings", "lighting", "signs"],
            "grade": ["major", "general", "general"],
            "status": ["rectifying", "closed", "reported"],
            "reported_at": pd.to_datetime(["2018-02-01", "2018-03-01", "2018-04-01"]).tz_localize(
                "UTC"
            ),
            "unit_id": segs.index[:3].to_numpy(),
        },
        geometry=mids[:3],
        crs=4326,
    )
    line = np.asarray(segs.geometry.array)[5]
    wz = gpd.GeoDataFrame(
        {
            "event_id": ["W1", "W1"],
            "kind": "workzone",
            "site_code": ["WZ-1", "WZ-1"],
            "start": pd.to_datetime(["2018-05-01", "2018-05-01"]).tz_localize("UTC"),
            "end": pd.to_datetime(["2018-06-30", "2018-06-30"]).tz_localize("UTC"),
            "lanes_taken": pd.array([1, 1], dtype="Int64"),
            "night_works": [False, False],
            "unit_id": [segs.index[5], segs.index[6]],
        },
        geometry=[line, line],
        crs=4326,
    )
    return {"accidents": acc, "hazards": hz, "workzones": wz}


def black_spots(units: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    segs = units[units["kind"] == "segment"]
    return gpd.GeoDataFrame(
        {
            "spot_id": ["BS1", "BS2"],
            "type": ["point", "section"],
            "unit_ids": [segs.index[0], ";".join(segs.index[1:3])],
            "length_m": [0.0, 334.0],
            "K": [1, 0],
            "A": [2, 3],
            "rule": ["test rule", "test rule"],
        },
        geometry=[
            shapely.Point(LON0 + DLON / 2, LAT0),
            shapely.LineString([(LON0, LAT0 + DLAT), (LON0, LAT0 + 3 * DLAT)]),
        ],
        crs=4326,
    )


def build_data_dir(path: Path, *, maxzoom: int = 16) -> Path:
    """Write a complete data folder (tables, risk.pmtiles, manifest.json) into ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    units = grid_units()
    events = grid_events(units)
    write_table(units, path / "units.parquet")
    for name, frame in events.items():
        write_table(frame, path / f"{name}.parquet")
    write_table(black_spots(units), path / "black_spots.parquet")
    build_tiles(units, output=path / "risk.pmtiles", maxzoom=maxzoom, **events)
    (path / "manifest.json").write_text(
        json.dumps({"rule": RULE, "generated_sample": True}), encoding="utf-8"
    )
    return path
