"""Hazards in a run: read from a GeoParquet file, and joined cell by cell in a run from files.

Hazards are few (thousands where accidents are millions). In a run from files they go the
accidents' way: the workers partition the hazard file by the cell of each hazard's point
(``frag/hazards/<cell>/``) and join each cell against the units within reach
(``frag/hazards-joined/<cell>.parquet``), with the same tasks, so each hazard gets the unit,
distance and status the single-process :func:`trafficunit.assign` gives it. The client then
gathers the joined rows, in the order of the hazard file (``hazards.parquet`` of the run's
outdir), and the score counts them as open hazards.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyarrow.parquet as pq

from .._errors import InputFileError
from .._validate import require_gdf
from ..settings import DistributedSettings, JoinSettings
from . import _tasks
from ._grid import Grid
from ._parts import PartitionedFrame, _cell_name, _chunk_offsets, _chunks
from ._staging import _frame_digest

#: The working folders of the hazards in a run's staging (removed with ``frag/``).
_FRAGS, _JOINED = "frag/hazards", "frag/hazards-joined"
#: The joined hazards in a run's outdir (as a run of frames writes them).
OUTPUT = "hazards.parquet"


def check_file(path: str | os.PathLike[str], what: str = "hazards") -> Path:
    """``path`` as a :class:`~pathlib.Path`, checked to be a GeoParquet file.

    Raises
    ------
    InputFileError
        When the file is missing, not Parquet, or Parquet without GeoParquet metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"{what} {p}: no such file")
    try:
        meta = pq.read_schema(p).metadata or {}
    except Exception as exc:
        raise InputFileError(f"{what} {p}: cannot read as GeoParquet ({exc})") from exc
    try:
        geo = json.loads(meta[b"geo"])
        geo["columns"][geo["primary_column"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFileError(
            f"{what} {p}: Parquet without GeoParquet metadata (no geometry column); write it "
            "with GeoDataFrame.to_parquet, e.g. tu.read_events(...).to_parquet(path)"
        ) from exc
    return p


def read_input(hazards: Any) -> gpd.GeoDataFrame | None:
    """Hazards given as a frame (checked: a GeoDataFrame with a CRS), or as a GeoParquet
    file (read, index from 0)."""
    if hazards is None:
        return None
    if not isinstance(hazards, str | os.PathLike):
        return require_gdf(hazards, "hazards")
    from ..io import read_table

    frame = read_table(check_file(hazards), index=None)
    return require_gdf(frame, f"hazards {hazards}")


def input_key(hazards: Any) -> str:
    """The identity of the hazards of a run from files: the file (path, size, modification
    time) or the frame's content."""
    if hazards is None:
        return "none"
    if isinstance(hazards, str | os.PathLike):
        st = check_file(hazards).stat()
        return f"{Path(hazards).resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return _frame_digest(require_gdf(hazards, "hazards"))


def input_file(hazards: Any, stage: Path) -> Path:
    """The hazard file the workers read: the file given, or the frame written to the run's
    staging (where every worker reads)."""
    if isinstance(hazards, str | os.PathLike):
        return check_file(hazards)
    path = stage / "frag" / "hazards-input.parquet"
    if not path.exists():
        from ..io import atomic_path

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            hazards.reset_index(drop=True).to_parquet(tmp)
    return path


def join_file(
    runner: Any,
    stage: Path,
    path: Path,
    *,
    grid: Grid,
    crs_wkt: str,
    reach: float,
    overhang: float,
    area: bytes,
    jcfg: JoinSettings,
    cfg: DistributedSettings,
    stats: Any,
) -> tuple[gpd.GeoDataFrame, list[dict[str, Any]]]:
    """The hazards of ``path`` partitioned and joined by the workers as the accidents are
    (:func:`._tasks.partition_events`, :func:`._tasks.join_cell`); the joined rows in the
    file's order (as :func:`trafficunit.assign` returns them), written to ``hazards.parquet``
    in ``stage``, and the cells' join summaries."""
    from ..io import read_table, write_table
    from ._files import _chunk_rows, _task_cpu

    t = time.perf_counter()
    out = stage / OUTPUT
    if pq.ParquetFile(path).metadata.num_rows == 0:
        joined: gpd.GeoDataFrame = _joined_none(path, stage, crs_wkt, jcfg)
        parts: list[dict[str, Any]] = []
    else:
        chunks = _chunks(path, _chunk_rows(path, cfg))
        offsets = _chunk_offsets(path, chunks)
        args = (stage, grid, crs_wkt, _FRAGS)
        frags = stage / _FRAGS
        part = runner.map(
            "partitioning hazards",
            [
                (frags / f"_chunk-{k}.json", _tasks.partition_events, (path, c, k, o, *args))
                for k, (c, o) in enumerate(zip(chunks, offsets, strict=True))
            ],
        )
        cells = sorted(
            (int(d.name.split("-")[1]), int(d.name.split("-")[2])) for d in frags.glob("cell-*")
        )
        jargs = (grid, reach, overhang, area, crs_wkt, jcfg, _FRAGS, _JOINED)
        parts = runner.map(
            "joining hazards",
            [
                (stage / _JOINED / f"{_cell_name(c)}.json", _tasks.join_cell, (stage, c, *jargs))
                for c in cells
            ],
        )
        _task_cpu(stats, "hazards", part + parts)
        joined = PartitionedFrame(stage / _JOINED, order="rows").read()
    write_table(joined, out)
    stats.seconds["hazards"] = time.perf_counter() - t
    return read_table(out, index=None), parts


def _joined_none(path: Path, stage: Path, crs_wkt: str, jcfg: JoinSettings) -> gpd.GeoDataFrame:
    """:func:`trafficunit.assign` of a hazard file without rows: its columns and the join's."""
    import warnings

    from ..io import read_table
    from ..join import assign
    from ._tasks import _crs

    first = min((stage / "units").glob("cell-*.parquet"))  # the columns only: no unit is asked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = read_table(first).iloc[:1]
        return assign(units, read_table(path, index=None), crs=_crs(crs_wkt), settings=jcfg)
