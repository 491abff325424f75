"""The PostGIS peer of the live-tile benchmark: ``ST_AsMVT`` per request behind FastAPI.

Used by ``bench_serve.py`` (``uvicorn _postgis_tiles:app --app-dir benchmarks``) with
``PG_URL`` naming a database that holds the ``accidents`` table it loads. Same URL, filters,
attributes and gzip level as ``trafficunit serve``'s ``live-accidents`` tileset.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pandas as pd
from fastapi import FastAPI, Request, Response
from psycopg_pool import AsyncConnectionPool

SQL = """
WITH b AS (SELECT ST_TileEnvelope(%(z)s, %(x)s, %(y)s) AS env,
                  ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 64.0 / 4096) AS benv),
t AS (
  SELECT ST_AsMVTGeom(a.geom, b.env, 4096, 64, true) AS geom, a.event_id, a.unit_id,
         a.severity, a.time_text AS time, a.hour, a.collision_type, a.light
  FROM accidents a, b
  WHERE a.geom && b.benv
    AND (%(start)s::timestamptz IS NULL OR a.time >= %(start)s::timestamptz)
    AND (%(end)s::timestamptz IS NULL OR a.time < %(end)s::timestamptz)
    AND (%(night)s::boolean IS NULL OR ((a.hour >= 19 OR a.hour < 7) = %(night)s::boolean))
)
SELECT ST_AsMVT(t.*, 'accidents', 4096, 'geom') FROM t
"""

pool = AsyncConnectionPool(os.environ.get("PG_URL", ""), min_size=4, max_size=8, open=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await pool.open()
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


@app.get("/tiles/live-accidents/{z}/{x}/{y}.mvt")
async def live(request: Request, z: int, x: int, y: int) -> Response:
    q = request.query_params
    light, end = q.get("light"), q.get("to")
    if end is not None and len(end) <= 10:  # inclusive last day, as trafficunit serve reads it
        end = str((pd.Timestamp(end) + pd.Timedelta(days=1)).date())
    params = {
        "z": z,
        "x": x,
        "y": y,
        "start": q.get("from"),
        "end": end,
        "night": None if light is None else light == "night",
    }
    async with pool.connection() as conn:
        cur = await conn.execute(SQL, params)
        row = await cur.fetchone()
    data = bytes(row[0]) if row and row[0] else b""
    if not data:
        return Response(status_code=204)
    return Response(
        gzip.compress(data, compresslevel=3, mtime=0),
        media_type="application/vnd.mapbox-vector-tile",
        headers={"Content-Encoding": "gzip"},
    )


def load(pg_admin_url: str, accidents_parquet: str) -> tuple[str, str]:
    """Create a database with PostGIS and the accidents table; return ``(name, url)``."""
    import secrets

    import geopandas as gpd
    import psycopg

    name = f"tu_bench_{secrets.token_hex(4)}"
    with psycopg.connect(pg_admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg_admin_url.rpartition("/")[0] + "/" + name
    acc = gpd.read_parquet(accidents_parquet).drop_duplicates("event_id").to_crs(3857)
    t = pd.to_datetime(acc["time"], utc=True)
    rows = list(
        zip(
            acc["event_id"].astype(str),
            acc["unit_id"].astype("string").fillna("").astype(str),
            acc["severity"].astype(str),
            t.dt.to_pydatetime(),
            acc["time"].dt.strftime("%Y-%m-%dT%H:%M:%S%z"),
            acc["hour"].astype("Int64").fillna(-1).astype(int),
            acc["collision_type"].astype(str),
            acc["light"].astype(str),
            acc.geometry.to_wkb(hex=False),
            strict=True,
        )
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION postgis")
        conn.execute(
            "CREATE TABLE accidents (event_id text, unit_id text, severity text, "
            "time timestamptz, time_text text, hour int, collision_type text, light text, "
            "geom geometry(Point, 3857))"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO accidents VALUES (%s, %s, %s, %s, %s, %s, %s, %s, "
                "ST_SetSRID(ST_GeomFromWKB(%s), 3857))",
                rows,
            )
        conn.execute("CREATE INDEX ON accidents USING gist (geom)")
        conn.execute("ANALYZE accidents")
    return name, url


def drop(pg_admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(pg_admin_url, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
