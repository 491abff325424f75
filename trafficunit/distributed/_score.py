"""The score of a run from files (:mod:`._files`).

The task that joins a cell's accidents also counts them by unit (the rows of one cell, in
their order) while the client reads the units' attributes (no geometry) as the joins run; the
client locates each cell's counts among the units as its join is done, sums these counts (one
row per unit with accidents, no accident row) and scores the units from them in the
single-process order, the SPF of the largest reference population fitted here and the others
on the workers meanwhile (the same fits), so parameters and levels are those of the
single-process run; the workers attach the geometry to each cell's risk rows. Should an event
id be in two cells (the single run counts its first row only), the client counts all the rows
itself instead.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq

from .._gcpause import gc_paused
from ..io import atomic_path
from ..settings import RiskSettings
from ..timefilter import Period
from . import _tasks
from ._cluster import _preload
from ._parts import _bbox, _cell_name, _read_parts, _write_json, _write_part
from ._runner import _Pending, _Runner

if TYPE_CHECKING:
    from ..risk.spf import FitJob, Fitter, SafetyPerformanceFunction


class _ScoreInputs:
    """What the score reads, made ready while the accidents are joined: each cell's
    accidents counted by unit (by its join task) and located among the units, and the
    units' columns in unit_id order with each unit's part and the hashes that locate a unit
    id among them; nothing when the run's risk columns are on disk already (a resumed
    run)."""

    def __init__(self, runner: _Runner, stage: Path, period: Any, cfg: RiskSettings) -> None:
        self.runner, self.stage, self.period, self.cfg = runner, stage, period, cfg
        self.parts = sorted((stage / "units").glob("cell-*.parquet"))
        self.done = (stage / "riskcols" / "attrs.json").exists()
        self.tallies: list[Path] = []
        self.jobs: list[tuple[Path, Any, tuple[Any, ...]]] = []
        self.pending: _Pending = ([], {})
        self.units: gpd.GeoDataFrame | None = None
        self.cell = np.zeros(0, dtype=np.int64)
        self.keys: _UnitKeys | None = None
        self.located: dict[int, _Located] = {}
        self.workers: list[str] = []
        self.warmed = False

    @classmethod
    def start(
        cls,
        runner: _Runner,
        stage: Path,
        cells: list[tuple[int, int]],
        period: Any,
        risk_settings: Any,
    ) -> _ScoreInputs:
        """The counting of the accidents of each of ``cells`` planned (:meth:`job`; each
        cell's join task counts them: :func:`_joined_and_counted`); :meth:`read` then reads
        the units, :meth:`count` takes the counts of cell K of ``cells``."""
        self = cls(runner, stage, period, risk_settings or RiskSettings())
        if self.done:
            return self
        tally = stage / "tally"
        self.workers = sorted(runner.client.scheduler_info()["workers"])
        self.jobs = [
            (tally / f"{_cell_name(c)}.json", _tally_part, (p, tally, period, self.cfg))
            for c, p in ((c, stage / "joined" / f"{_cell_name(c)}.parquet") for c in cells)
        ]
        return self

    def job(self, k: int) -> tuple[Path, Any, tuple[Any, ...]] | None:
        """The counting of cell K's accidents (summary path, task, arguments), if planned."""
        return self.jobs[k] if self.jobs else None

    def read(self) -> None:
        """The units' columns read here (while the joins run)."""
        if not self.done:
            self._read_units()

    def count(self, k: int) -> None:
        """Cell K's counts (once its join is done) read and located among the units, its
        hazard rows and event id hashes read (:meth:`_locate`); their
        counting started first, below the joins, should its join not have counted them."""
        if self.done:
            return
        self.pending = self.runner.submit([self.jobs[k]], self.pending, priority=-1)
        self.tallies.append(self.jobs[k][0].with_suffix(".parquet"))
        if len(self.tallies) - 1 not in self.pending[1]:  # counted: its summary is on disk
            self._locate(len(self.tallies) - 1)
        if not self.warmed and len(self.jobs) - len(self.tallies) < len(self.workers):
            self._warm_fits()

    def _warm_fits(self) -> None:
        """statsmodels imported for the fits the score starts with (half a second, cold),
        once a worker is left without a join: here (a thread) and on each worker (a task of
        the lowest priority: after its join)."""
        from distributed import fire_and_forget

        self.warmed = True
        threading.Thread(target=_preload, args=(_FIT_MODULE,), daemon=True).start()
        for w in self.workers:
            fire_and_forget(
                self.runner.client.submit(
                    _preload, _FIT_MODULE, workers=[w], pure=False, priority=-2
                )
            )

    def _read_units(self) -> None:
        from ..risk import scoring

        parts = self.parts
        cols = [c for c in scoring._unit_columns(self.cfg) if c in pq.read_schema(parts[0]).names]
        frames = [pd.read_parquet(p, columns=cols) for p in parts]
        units = pd.concat(frames)
        # each unit's part, as a number; the units in unit_id order (as the build sorts them)
        cell = np.repeat(np.arange(len(parts)), [len(f) for f in frames])
        del frames
        order = units.index.argsort(kind="stable")
        units, self.cell = units.iloc[order], cell[order]
        self.keys = _UnitKeys.of(units.index)
        crs = _bbox(parts[0])[1]
        none = gpd.array.from_shapely(np.empty(len(units), dtype=object), crs=crs)
        self.units = gpd.GeoDataFrame(units, geometry=gpd.GeoSeries(none, index=units.index))

    def shares(self) -> tuple[list[Path], list[dict[str, Any]]]:
        """The counts of the cells with joined accidents (``tally/<cell>.parquet``) and the
        summaries of their counting, once done; each cell's counts read and located among
        the units (:attr:`located`, by the tally's position) as its counting is done."""
        summaries = self.runner.gather("counting accidents", self.pending, each=self._locate)
        kept = sorted(  # in the cells' order, as the parts
            (p, s) for p, s in zip(self.tallies, summaries, strict=True) if s["rows"] >= 0
        )
        return [p for p, _ in kept], [s for _, s in kept]

    def _locate(self, k: int) -> None:
        """Tally K's counts read with their units' positions in :attr:`units`, its hazard
        rows and its event ids' hashes (while the other cells are joined)."""
        path = self.tallies[k]
        if k in self.located or not path.exists():  # located, or no joined accidents there
            return
        counts = pd.read_parquet(path)
        self.located[k] = _Located(
            counts,
            None if self.keys is None else self.keys.positions(counts.index),
            pd.read_parquet(path.with_suffix(".hazards.parquet")),
            np.load(path.with_suffix(".ids.npy")),
        )


#: The module the SPF fits import (:func:`~trafficunit.risk._nb2.nb2_model`).
_FIT_MODULE = "statsmodels.discrete.discrete_model"


class _Located(NamedTuple):
    """A cell's counts by unit, their units' positions (None: look them up), its hazard rows
    and the sorted hashes of its event ids."""

    counts: pd.DataFrame
    positions: np.ndarray | None
    hazards: pd.DataFrame
    ids: np.ndarray


def _score(
    runner: _Runner, stage: Path, inputs: _ScoreInputs, hazards: Any = None
) -> dict[str, Any]:
    """Score: the workers count each cell's accidents by unit, the client sums the counts,
    fits and levels the units (attributes only, in unit_id order; ``hazards``: joined
    hazard rows counted as open hazards too); the workers join each cell's risk columns to
    its units (``risk/<cell>.parquet``)."""
    marker = stage / "riskcols" / "attrs.json"
    parts = inputs.parts
    jobs = [
        (stage / "risk" / f"{p.stem}.json", _risk_part, (p, stage / "riskcols", stage / "risk"))
        for p in parts
    ]
    if not inputs.done:
        table, attrs = _score_units(inputs, hazards)
        cell = inputs.cell
        # the rows by part (unit_id order within each) taken and written by Arrow: no
        # pandas copy of the columns per part; each part's task started once its file is
        # written, while this process writes the next, the largest parts first (the workers
        # finish together)
        by = np.argsort(cell, kind="stable")
        starts = np.searchsorted(cell[by], np.arange(len(parts) + 1))
        pending = None
        for n in map(int, np.argsort(-np.diff(starts), kind="stable")):
            p = parts[n]  # Arrow files: a working copy, written as it is
            with atomic_path(stage / "riskcols" / f"{p.stem}.arrow") as tmp:
                rows = table.take(by[starts[n] : starts[n + 1]])
                feather.write_feather(rows, tmp, compression="uncompressed")
            pending = runner.submit(jobs[n : n + 1], pending)
        _write_json(marker, attrs)
    else:
        attrs = json.loads(marker.read_text())
        pending = runner.submit(jobs)
    runner.gather("scoring", pending or ([], {}))
    return attrs


def _score_units(inputs: _ScoreInputs, hazards: Any = None) -> tuple[pa.Table, dict[str, Any]]:
    """The risk columns of every unit in unit_id order and their attributes (the single
    run's)."""
    from ..risk import scoring

    period, cfg, u = inputs.period, inputs.cfg, inputs.units
    assert u is not None
    tallies, shares = inputs.shares()
    by_path = {inputs.tallies[k]: v for k, v in inputs.located.items()}
    cells = [by_path[p] for p in tallies]  # in the cells' order
    if _ids_apart([c.ids for c in cells]):
        pos = [c.positions for c in cells if c.positions is not None]
        known = pos if len(pos) == len(cells) else None
        spans = [
            None if s["period"] is None else Period(*map(pd.Timestamp, s["period"])) for s in shares
        ]
        reports = [s["report"] for s in shares]
        counts = [c.counts for c in cells]
        summed = scoring._summed(u, counts, spans, reports, period, cfg, known)
        hz = pd.concat([c.hazards for c in cells])
    else:  # an event id in two cells: counted over all the rows, first row kept, as one run
        jparts = [inputs.stage / "joined" / p.name for p in tallies]
        jcols = [c for c in scoring._SCORED_COLUMNS if c in pq.read_schema(jparts[0]).names]
        rows = _read_parts(jparts, jcols)
        assert rows is not None
        share = scoring._tally(rows.sort_index(kind="stable").reset_index(drop=True), period, cfg)
        summed = scoring._summed(u, [share[0]], [share[1]], [share[2]], period, cfg)
        hz = share[3]
    assert hz is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hz = hz.sort_index(kind="stable")
        fitter = _fit_on_workers(inputs.runner.client)
        risk = scoring._scored(u, *summed, hz, hazards, period is not None, cfg, None, fitter)
    added = [c for c in risk.columns if c not in u.columns and c != "geometry"]
    table = pa.Table.from_pandas(pd.DataFrame(risk), columns=added, preserve_index=True)
    return table, _jsonable_attrs(risk)


def _fit_on_workers(client: Any) -> Fitter:
    """A :data:`~trafficunit.risk.spf.Fitter` that fits the largest population here (its
    rows are here: nothing to send) and the others on the workers meanwhile, the largest
    first, each on the worker with the fewest units to fit so far. The fits are those of a
    single process (:func:`~trafficunit.risk.spf._fit_each`: the same code on the same rows,
    BLAS on one thread)."""

    def fit(jobs: list[FitJob]) -> list[SafetyPerformanceFunction]:
        from ..risk.spf import _fit_each

        if not jobs:
            return []
        here, *rest = sorted(range(len(jobs)), key=lambda n: -len(jobs[n][1]))
        load = dict.fromkeys(sorted(client.scheduler_info()["workers"]), 0)
        futures: dict[int, Any] = {}
        for n in rest:
            w = min(load, key=load.__getitem__)
            load[w] += len(jobs[n][1])
            [job] = client.scatter([jobs[n]], workers=[w], hash=False)
            futures[n] = client.submit(_fit_job, job, workers=[w], pure=False)
        out: list[Any] = [None] * len(jobs)
        out[here] = _fit_each([jobs[here]])[0]
        for n, f in futures.items():
            out[n] = f.result()
            f.release()
        return out

    return fit


def _fit_job(job: FitJob) -> SafetyPerformanceFunction:
    """:func:`~trafficunit.risk.spf._fit_one` of ``job`` (a task), the collector paused."""
    from ..risk.spf import _fit_each

    with gc_paused():
        return _fit_each([job])[0]


def _joined_and_counted(
    join: tuple[Any, ...], count: tuple[Path, Any, tuple[Any, ...]] | None
) -> dict[str, Any]:
    """A cell's join (:func:`~._tasks.join_cell`, its arguments ``join``), then the counting
    of its accidents (``count``: :func:`_tally_part`'s job, its summary written as its own
    task's would be) in the same task: the joined rows counted while in the page cache, with no
    wait for a worker and no counts left when the last join is done."""
    out: dict[str, Any] = _tasks.join_cell(*join)
    if count is not None and not count[0].exists():
        summary, fn, args = count
        _write_json(summary, fn(*args))
    return out


@_tasks._cpu
def _tally_part(joined_part: Path, out_dir: Path, period: Any, cfg: RiskSettings) -> dict[str, Any]:
    """A cell's accidents counted by unit (``tally/<cell>.parquet``), its hazard rows
    (``.hazards.parquet``) and the hashes of its event ids (``.ids.npy``); its period and
    input report (a task)."""
    from ..risk import scoring

    if not joined_part.exists():  # a cell whose join found no event fragment
        return {"rows": -1, "period": None, "report": None}
    names = pq.read_schema(joined_part).names
    rows = pd.read_parquet(joined_part, columns=[c for c in scoring._SCORED_COLUMNS if c in names])
    rows = rows.sort_index(kind="stable")
    counts, per, report, hz = scoring._tally(rows, period, cfg)
    _write_part(counts, out_dir / joined_part.name)
    _write_part(hz, out_dir / f"{joined_part.stem}.hazards.parquet")
    ids = _id_hashes(rows["event_id"]) if "event_id" in rows.columns else np.zeros(0, np.uint64)
    with atomic_path(out_dir / f"{joined_part.stem}.ids.npy") as tmp, tmp.open("wb") as f:
        np.save(f, np.sort(ids))  # sorted here: the client merges the cells' runs
    span = None if per is None else [per.start.isoformat(), per.end.isoformat()]
    return {"rows": len(rows), "period": span, "report": report}


#: The multiplier and length weight of :func:`_id_hashes` (odd 64-bit constants).
_HASH_P, _HASH_Q = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def _id_hashes(ids: pd.Series) -> np.ndarray:
    """The distinct :func:`_hashes` of the ids: equal ids hash equal (two ids may share one)."""
    return np.asarray(pd.unique(_hashes(ids)), dtype=np.uint64)


def _hashes(ids: pd.Series | pd.Index) -> np.ndarray:
    """Each id's 64-bit polynomial hash of its UTF-8 bytes (``_HASH_P`` for a missing one)."""
    arr = pa.array(pd.Series(ids).astype("string").array)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    off = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8)[off[0] : off[-1]] if data else np.zeros(0, np.uint8)
    length = np.diff(off)
    width = int(length.max())
    powers = np.cumprod(np.full(width + 1, _HASH_P, dtype=np.uint64))
    h = length.astype(np.uint64) * _HASH_Q
    # each id's sum of byte x P^(i + 1), wrapping at 2^64 (in any order: the same sum)
    if n * width <= 4 * len(chars) + 4096:  # ids of similar lengths: a padded matrix, summed
        padded = np.zeros((n, width), dtype=np.uint8)  # by character position
        padded[np.arange(width) < length[:, None]] = chars
        for i in range(width):
            h += padded[:, i].astype(np.uint64) * powers[i]
    else:  # a few long ids: the bytes' terms summed id by id
        begin = off[:-1] - off[0]
        k = np.arange(len(chars)) - np.repeat(begin, length)
        some = length > 0
        if some.any():
            h[some] += np.add.reduceat(chars.astype(np.uint64) * powers[k], begin[some])
    h[np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)] = _HASH_P
    return h


class _UnitKeys:
    """The units' ids by their :func:`_hashes`, sorted: an id located by a binary search of
    its hash, then compared with the unit's id (the units' hashes are distinct, so an id equal
    to a unit's has that unit's hash): the positions ``risk.measures._positions`` gives,
    without a hash table of every unit id per lookup."""

    def __init__(self, hashes: np.ndarray, order: np.ndarray, ids: pa.Array) -> None:
        self.hashes, self.order, self.ids = hashes, order, ids

    @classmethod
    def of(cls, index: pd.Index) -> _UnitKeys | None:
        """The keys of the (unique) ``index``; None should two of its ids share a hash."""
        h = _hashes(index)
        order = np.argsort(h, kind="stable")
        h = h[order]
        if (h[1:] == h[:-1]).any():
            return None
        return cls(h, order, pa.array(pd.Series(index).astype("string").array))

    def positions(self, ids: pd.Index) -> np.ndarray:
        """Each id's position among the units, -1 where none has it (or it is missing)."""
        import pyarrow.compute as pc

        if len(ids) == 0 or len(self.hashes) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        h = _hashes(ids)
        # searched in increasing order (numpy's search starts where the last one ended: a few
        # cache lines a search instead of a random walk through millions of hashes)
        order = np.argsort(h)
        at = np.empty(len(h), dtype=np.intp)
        at[order] = np.searchsorted(self.hashes, h[order])
        at = np.minimum(at, len(self.hashes) - 1)
        pos = np.where(self.hashes[at] == h, self.order[at], -1).astype(np.int64)
        values = pa.array(pd.Series(ids).astype("string").array)
        same = pc.equal(values, self.ids.take(pa.array(np.maximum(pos, 0))))
        same = np.asarray(pc.fill_null(same, False).to_numpy(zero_copy_only=False), dtype=bool)
        pos[~same] = -1
        return pos


def _ids_apart(hashes: list[np.ndarray]) -> bool:
    """Whether no event id hash is in two cells' sorted ``hashes`` (their ``.ids.npy``; so
    no event id is); a stable sort (Timsort) merges their sorted runs."""
    h = np.sort(np.concatenate([np.zeros(0, np.uint64), *hashes]), kind="stable")
    return not bool((h[1:] == h[:-1]).any())


def _jsonable_attrs(risk: pd.DataFrame) -> dict[str, Any]:
    from ..risk.measures import _jsonable

    return dict(_jsonable(dict(risk.attrs)))


def _risk_part(units_part: Path, cols_dir: Path, out_dir: Path) -> dict[str, Any]:
    """A cell's units with their risk columns (a task): the two Parquet tables side by side,
    the risk columns before the index as GeoPandas writes them; the geometry stays WKB bytes
    (the units' GeoParquet metadata holds for the same geometries)."""
    import pyarrow.compute as pc

    units = pq.read_table(units_part)
    cols = feather.read_table(cols_dir / f"{units_part.stem}.arrow", memory_map=True)
    meta = json.loads(units.schema.metadata[b"pandas"])
    (index,) = meta["index_columns"]
    if not units.column(index).equals(cols.column(index)):  # the same units, another order
        cols = cols.take(pc.index_in(units.column(index), value_set=cols.column(index)))
    at = units.schema.get_field_index(index)
    names = [n for n in cols.column_names if n != index]
    for n, name in enumerate(names):
        units = units.add_column(at + n, cols.schema.field(name), cols.column(name))
    added = json.loads(cols.schema.metadata[b"pandas"])["columns"]
    entries = [c for c in meta["columns"] if c["name"] != index]
    entries += [c for c in added if c["name"] in names]
    meta["columns"] = entries + [c for c in meta["columns"] if c["name"] == index]
    units = units.replace_schema_metadata(
        {**units.schema.metadata, b"pandas": json.dumps(meta).encode()}
    )
    with atomic_path(out_dir / units_part.name) as tmp:
        pq.write_table(units, tmp, **_tasks._table_options(units))
    return {"rows": units.num_rows}
