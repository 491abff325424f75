"""Scale-out on Dask: the build → join → score pipeline partitioned spatially, exact.

:func:`run_pipeline` runs :func:`trafficunit.build_units`, :func:`trafficunit.assign` and
:func:`trafficunit.score` over a region too big to be comfortable in one process, on a local
cluster (the default) or on any Dask cluster given its scheduler address. The results are the
single-process results: the same unit ids, attributes, adjacency, matches and scores.

**Build.** Space is cut into square cells of a grid in the metric CRS. The task of a cell
builds units from every road that intersects the cell grown by a halo, and keeps the units
whose *anchor* (a segment's midpoint, an intersection's point) lies in the cell, half-open
(``x0 <= x < x1``), so every unit has exactly one owner. A kept unit is exactly the unit a
whole-network build makes when everything it depends on lies inside the halo region, where
every node has its true degree (every road touching a node inside the region was selected):

- the *run* of segments it belongs to (the segments linked end to end through
  ``from_unit``/``to_unit``, which contains its chain, and so its extent, split and id);
- the junction clusters at its ends with ``junction_merge_m`` around their members (their
  membership, centre and id);
- the same for its neighbours and their neighbours (an intersection's degree, lead road and
  names; whether a short segment is a link inside a junction).

The task checks this with a 1 m margin; if any check fails, the cell is built again with the
halo doubled, or grown to what the failing units were seen to need if that is more (after
``max_halo_doublings`` retries, from the whole network).
The check covers every unit near the cell, not only the kept ones: a unit of the whole-network
build anchored in the cell is then certain to be built here too (its anchor lies on units
that are exact), so no unit is lost between cells and none is kept twice.

**Join.** Events are partitioned by the cell of their position (a grid over the roads' extent,
known before the units, so this process partitions them and sends each cell's events to the
workers while the workers build; a cell with no unit within reach has only loose events) and
joined against the units within the largest matching distance (or influence radius) of the
cell's events, which holds every candidate any rule could pick (selected by the units' metric
bounds, taken from their projected bounding boxes with a 1 m margin). Point events travel as
metric coordinate arrays (no geometry objects to serialise; the task makes the points) and
their columns as codes and distinct values; units travel in their own CRS and each task
projects its own (the same coordinates as projecting all of them, in parallel). A task sends
back numbers only: the position of each event's unit among all units and the status code. What
depends on the whole network, whether an unmatched event is ``"too_far"`` (inside the network's
hull) or ``"outside"`` and its distance to the nearest unit, is settled on the client against
all units.

**Score.** The per-unit sums are a bincount; the safety performance functions, the
percentiles and the bands are global over the reference populations. The client runs
:func:`trafficunit.score` once on the joined rows it gathers for the output anyway, so the
scores are those of the single-process run by construction. It imports statsmodels in a
background thread while the workers build and join, so the fit does not wait for it.

**Restarts.** With ``outdir``, the run works in a hidden staging directory beside it, saving
each cell's units and matches as they arrive; a run interrupted and started again with the
same inputs and options resumes from the saved cells (different inputs: it starts over).
The staging directory replaces ``outdir`` by renames only when everything is written, so
``outdir`` always holds one complete run, never a mix.

**From files.** ``run_pipeline("roads.parquet", "accidents.parquet", scheduler=...,
outdir=...)`` keeps the data out of this process: the workers read the GeoParquet files in
chunks of row groups, normalise the roads, write each road to the cells its box grown by the
first halo meets and each accident to the cell of its point (read from the WKB bytes), build
each cell from its fragment (a retry reads the neighbours' fragments), join each cell's
accidents against the neighbours' units within reach (selected by the bounds the build saved,
so only those geometries are decoded) and settle loose accidents against the network's hull
(from the cells' hull vertices); only counts, bounds and hulls come back. The score fits on
this process from the units' attributes and the joined rows' scored columns (no geometry),
in the single-process order, so SPF parameters, EB values and levels are identical; the
workers attach the geometry to each cell's risk rows. ``units``, ``joined`` and ``risk`` are
then :class:`PartitionedFrame` datasets (``outdir/units/cell-I-J.parquet`` ...; ``read()``
gives the single-process frame); see :mod:`trafficunit.distributed._files` for the layout.
``outdir`` must be on storage every worker sees; a killed run resumes cell by cell.
Hazards (a file or a frame) are partitioned and joined by the same tasks, gathered on this
process in the file's order (``outdir/hazards.parquet``, ``PipelineResult.hazards``) and
counted as open hazards in the levels (:mod:`trafficunit.distributed._hazards`).

**Costs.** ``report["cpu_seconds"]`` gives each stage's CPU seconds in this process, in the
workers, and inside the tasks (the rest of the workers' CPU is Dask's: serialisation, the
event loop); this process's CPU in the build includes partitioning the events. A local
cluster runs without the workers' statistical profiler, which only feeds the dashboard, served
only when asked (``DistributedSettings(dashboard_address=...)``).
"""

from __future__ import annotations

from ._build import build_units
from ._cluster import _peak_rss_mb as _peak_rss_mb
from ._cluster import cluster
from ._grid import Grid
from ._grid import _grid_for as _grid_for
from ._join import assign
from ._parts import PartitionedFrame
from ._pipeline import PipelineResult, run_pipeline

__all__ = [
    "Grid",
    "PartitionedFrame",
    "PipelineResult",
    "assign",
    "build_units",
    "cluster",
    "run_pipeline",
]
