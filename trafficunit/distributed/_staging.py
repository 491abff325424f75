"""Staging directory: saved cells of an interrupted run, atomic swap."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

# --------------------------------------------------------------------------------------------
# staging directory


def _frame_digest(df: pd.DataFrame | None) -> str:
    """A content hash of a (Geo)DataFrame: its columns, values and coordinates."""
    h = hashlib.sha256()
    if df is None:
        return "none"
    h.update(repr((list(df.columns), len(df))).encode())
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, gpd.array.GeometryDtype):
            xy, idx = shapely.get_coordinates(s.to_numpy(), return_index=True)
            h.update(np.ascontiguousarray(xy).tobytes())
            h.update(np.ascontiguousarray(idx).tobytes())
            continue
        try:
            values = pd.util.hash_pandas_object(s, index=False).to_numpy()
        except TypeError:
            values = pd.util.hash_pandas_object(s.astype(str), index=False).to_numpy()
        h.update(values.tobytes())
    return h.hexdigest()


class _Staging:
    """A hidden directory beside ``outdir`` where a run writes until it is complete."""

    def __init__(self, outdir: Path, fingerprint: str) -> None:
        self.final = outdir
        self.dir = outdir.parent / f".{outdir.name}.partial"
        self.resumed = False
        manifest = self.dir / "manifest.json"
        if self.dir.exists():
            same = False
            with contextlib.suppress(OSError, ValueError):
                same = json.loads(manifest.read_text()).get("fingerprint") == fingerprint
            if same:
                self.resumed = True
            else:
                shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.resumed:
            tmp = manifest.with_suffix(".tmp")
            tmp.write_text(json.dumps({"fingerprint": fingerprint}))
            os.replace(tmp, manifest)

    def _part(self, stage: str, cell: tuple[int, int]) -> Path:
        return self.dir / stage / f"cell-{cell[0]}-{cell[1]}.parquet"

    def load_part(self, stage: str, cell: tuple[int, int]) -> gpd.GeoDataFrame | None:
        path = self._part(stage, cell)
        if not path.exists():
            return None
        from ..io import read_table

        df: gpd.GeoDataFrame = read_table(path, index=None)
        return df

    def load_report(self, stage: str, cell: tuple[int, int]) -> dict[str, Any]:
        path = self._part(stage, cell).with_suffix(".json")
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        return data

    def save_part(
        self,
        stage: str,
        cell: tuple[int, int],
        df: gpd.GeoDataFrame,
        *,
        report: dict[str, Any] | None = None,
    ) -> None:
        from ..io import write_table

        path = self._part(stage, cell)
        path.parent.mkdir(parents=True, exist_ok=True)
        if report is not None:  # written first: a part on disk always has its report
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(report, default=str))
            os.replace(tmp, path.with_suffix(".json"))
        write_table(df, path)

    def has(self, name: str) -> bool:
        return (self.dir / f"{name}.done").exists()

    def path(self, name: str) -> Path:
        return self.dir / name

    def mark(self, name: str) -> None:
        (self.dir / f"{name}.done").write_text("")

    def commit(self) -> None:
        """Swap the staging directory in for ``outdir`` (renames only)."""
        for stage in ("build", "join", "hazards", "roads", "frag", "riskcols", "tally", "ubounds"):
            shutil.rmtree(self.dir / stage, ignore_errors=True)
        for marker in [*self.dir.glob("*.done"), *self.dir.glob("*/cell-*.json")]:
            marker.unlink()
        old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.dir, self.final)
        shutil.rmtree(old, ignore_errors=True)
