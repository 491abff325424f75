"""Grid cells in the metric CRS, the unit of partitioning."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyproj
import shapely

from .._errors import ValidationError

_MARGIN_M = 1.0


# --------------------------------------------------------------------------------------------
# grid


@dataclass(frozen=True)
class Grid:
    """Square cells of side ``size`` (metres) from ``(x0, y0)`` in the metric CRS ``crs``."""

    x0: float
    y0: float
    size: float
    nx: int
    ny: int
    crs: str

    @classmethod
    def over(cls, bounds: np.ndarray, size: float, crs: pyproj.CRS) -> Grid:
        """The grid of cells of ``size`` covering ``bounds`` (xmin, ymin, xmax, ymax)."""
        if not size > 0:
            raise ValidationError(f"cell_size_m must be positive, got {size}")
        x0, y0 = math.floor(bounds[0]), math.floor(bounds[1])
        nx = max(1, math.floor((bounds[2] - x0) / size) + 1)
        ny = max(1, math.floor((bounds[3] - y0) / size) + 1)
        return cls(float(x0), float(y0), float(size), nx, ny, crs.to_wkt())

    def box(self, i: int, j: int) -> tuple[float, float, float, float]:
        """Bounds of cell ``(i, j)``; neighbours compute a shared edge the same way."""
        s = self.size
        return (self.x0 + i * s, self.y0 + j * s, self.x0 + (i + 1) * s, self.y0 + (j + 1) * s)

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cell indices of points (clipped to the grid)."""
        i = np.floor((np.asarray(x) - self.x0) / self.size)
        j = np.floor((np.asarray(y) - self.y0) / self.size)
        i = np.clip(np.nan_to_num(i, nan=0), 0, self.nx - 1).astype(np.int64)
        j = np.clip(np.nan_to_num(j, nan=0), 0, self.ny - 1).astype(np.int64)
        return i, j


def _grid_for(
    bounds: np.ndarray,
    crs: pyproj.CRS,
    *,
    size: float | None,
    count: int,
    per_cell: int,
    n_workers: int,
    min_size: float,
) -> Grid:
    """The given cell size, or one giving about ``per_cell`` items a cell (and at least two
    cells a worker), but no smaller than ``min_size``.

    A chosen size divides the extent evenly (the last row and column of cells are not
    slivers), so the tasks are of similar size and the workers finish together.
    """
    if size is not None:
        return Grid.over(bounds, size, crs)
    w = max(float(bounds[2] - bounds[0]), 1.0)
    h = max(float(bounds[3] - bounds[1]), 1.0)
    n_cells = max(count / max(per_cell, 1), 2 * n_workers, 1)
    side = max(math.sqrt(w * h / n_cells), min_size)
    nx, ny = max(1, round(w / side)), max(1, round(h / side))
    # 1 m beyond the extent on each side: every point of it falls inside a cell
    size = max((w + 2.0) / nx, (h + 2.0) / ny, min_size)
    x0, y0 = math.floor(bounds[0]) - 1.0, math.floor(bounds[1]) - 1.0
    nx = _cells(x0, float(bounds[2]), size)
    ny = _cells(y0, float(bounds[3]), size)
    return Grid(x0, y0, float(size), nx, ny, crs.to_wkt())


def _cells(start: float, end: float, size: float) -> int:
    """Cells of ``size`` from ``start`` that cover ``end`` (half-open: the last cell's far edge
    lies beyond it) with none wholly past it, counted with the float arithmetic of
    :meth:`Grid.box` (the quotient alone can be off by one at an edge)."""
    n = max(1, math.floor((end - start) / size) + 1)
    while n > 1 and start + (n - 1) * size > end:
        n -= 1
    while start + n * size <= end:
        n += 1
    return n


def _select(tree: shapely.STRtree, box: tuple[float, ...], grow: float) -> np.ndarray:
    if math.isinf(grow):
        return np.arange(len(tree.geometries))
    region = shapely.box(box[0] - grow, box[1] - grow, box[2] + grow, box[3] + grow)
    return np.sort(tree.query(region, predicate="intersects"))


@dataclass
class _Stats:
    cells: int = 0
    tasks: int = 0
    retries: int = 0
    max_halo_m: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    #: CPU seconds inside the tasks of each stage (the rest of the workers' CPU is Dask's)
    task_cpu: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, stage: str, seconds: float) -> None:
        self.task_cpu[stage] = self.task_cpu.get(stage, 0.0) + seconds


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` in a task, and the CPU seconds of its thread."""
    t = time.thread_time()
    out = fn(*args)
    return out, time.thread_time() - t
