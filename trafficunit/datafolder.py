"""The data folder: what ``trafficunit build`` writes and ``trafficunit serve`` serves.

This module is the one definition of a data folder: its file names, its ``manifest.json``
(read, written and migrated here only) and the checks ``serve`` runs on start and on reload.
The CLI verbs, :func:`trafficunit.build`, the demo, the Dask pipeline and the server all go
through :class:`DataFolder`.

=======================  ======================================================================
``units.parquet``        units (``tu.build_units``), scored (``tu.score``) once risk has run
``accidents.parquet``    joined accidents (``tu.assign``), one row per accident
``hazards.parquet``      joined hazards
``workzones.parquet``    joined work zones
``black_spots.parquet``  black spots (``tu.find_black_spots``)
``risk.pmtiles``         the stored tileset (any ``*.pmtiles`` is served by its stem)
``ledger.sqlite``        the hazard ledger of the server (SQLite, created by ``serve``)
``manifest.json``        schema version, sources (size, SHA-256, column mapping), CRS, period,
                         risk rule, counts, extent, time per stage
=======================  ======================================================================

>>> import tempfile, trafficunit as tu
>>> folder = tu.DataFolder(tempfile.mkdtemp(), create=True)
>>> folder.path("units").name
'units.parquet'
>>> folder.manifest["schema_version"] == tu.datafolder.SCHEMA_VERSION
True
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._errors import InputFileError, ValidationError

__all__ = [
    "DataFolder",
    "FILES",
    "TABLES",
    "EVENT_TABLES",
    "SCHEMA_VERSION",
    "check_writable",
    "file_record",
]

#: Version of the folder layout and of ``manifest.json``. Raise it when either changes and
#: teach :func:`_migrate` the step from the previous one.
SCHEMA_VERSION = 1

#: File of each part of a data folder.
FILES: dict[str, str] = {
    "units": "units.parquet",
    "accidents": "accidents.parquet",
    "hazards": "hazards.parquet",
    "workzones": "workzones.parquet",
    "black_spots": "black_spots.parquet",
    "risk_tiles": "risk.pmtiles",
    "basemap": "basemap.pmtiles",
    "ledger": "ledger.sqlite",
    "manifest": "manifest.json",
}
#: Tables of a folder (GeoParquet), in the order they are built.
TABLES = ("units", "accidents", "hazards", "workzones", "black_spots")
#: Table holding each kind of event.
EVENT_TABLES = {"accident": "accidents", "hazard": "hazards", "workzone": "workzones"}
#: Suffix of tilesets; ``risk.pmtiles`` is served as ``/tiles/risk/...``.
TILESET_SUFFIX = ".pmtiles"
#: Stage names, in pipeline order, as recorded under ``timings_s``.
STAGES = ("network", "units", "events", "join", "risk", "black_spots", "tiles", "basemap")

_SHA_CACHE: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (cached by inode, size and modification time)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _SHA_CACHE.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    _SHA_CACHE[key] = digest = h.hexdigest()
    return digest


def file_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"path", "size", "sha256", "modified"}`` of a file, for a manifest."""
    p = Path(path)
    st = p.stat()
    return {
        "path": str(p.resolve()),
        "size": st.st_size,
        "sha256": sha256_file(p),
        "modified": datetime.fromtimestamp(st.st_mtime, UTC).isoformat(timespec="seconds"),
    }


def check_writable(path: str | os.PathLike[str], *, folder: bool = False) -> Path:
    """Fail early, before any work, when ``path`` (a file, or a folder) cannot be written.

    Creates missing parent folders, then a temporary file beside the target (removed at once).

    Raises
    ------
    ValidationError
        One line naming the path and the reason.
    """
    p = Path(path)
    where = p if folder else p.parent
    if p.exists() and folder and not p.is_dir():
        raise ValidationError(f"cannot write into {p}: it is a file, not a folder")
    if p.is_dir() and not folder:
        raise ValidationError(f"cannot write {p}: it is a folder; give a file name")
    try:
        where.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".trafficunit-write-test-", dir=where)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise ValidationError(
            f"cannot write {'into ' if folder else ''}{p}: {exc.strerror or exc}; "
            "choose another output with -o"
        ) from exc
    if p.exists() and not folder and not os.access(p, os.W_OK):
        raise ValidationError(f"cannot replace {p}: it is read-only; choose another output with -o")
    return p


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def new_manifest() -> dict[str, Any]:
    """An empty manifest of the current schema."""
    from . import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "trafficunit_version": __version__,
        "created": _now(),
        "updated": _now(),
        "command": None,
        "sources": [],
        "crs": None,
        "period": None,
        "rule": {},
        "counts": {},
        "extent": None,
        "timings_s": {},
        "files": {},
        "generated_sample": False,
    }


def _migrate(data: dict[str, Any], where: Path) -> dict[str, Any]:
    """Bring a manifest of an older schema to :data:`SCHEMA_VERSION`, or refuse clearly."""
    version = data.get("schema_version", 0)
    if not isinstance(version, int):
        raise InputFileError(f"{where}: schema_version {version!r} is not a number")
    if version > SCHEMA_VERSION:
        raise InputFileError(
            f"{where}: written by a newer trafficunit (folder schema {version}, this one reads "
            f"up to {SCHEMA_VERSION}); upgrade trafficunit"
        )
    if version == 0:
        # the demo's manifest before schema versions: same keys, fewer of them; `timings_s`
        # and `rule`/`period`/`counts` keep their meaning
        out = new_manifest()
        out.update({k: v for k, v in data.items() if k in out or k in ("network", "tiles")})
        if "network" in data and not out["sources"]:
            out["sources"] = [{"kind": "network", "path": data["network"]}]
        out["schema_version"] = SCHEMA_VERSION
        out["migrated_from"] = 0
        out.setdefault("created", data.get("created") or _now())
        return out
    return data


class _Table:
    """A table of the folder read when the attribute is asked for (``None`` when absent)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, folder: DataFolder | None, owner: type | None = None) -> Any:
        return self if folder is None else folder.read(self.name)


class DataFolder:
    """A data folder: its tables, tilesets and manifest.

    Parameters
    ----------
    path
        The folder.
    create
        Create it when missing (otherwise a missing folder is an :class:`InputFileError`).

    Examples
    --------
    >>> import tempfile, trafficunit as tu
    >>> folder = tu.DataFolder(tempfile.mkdtemp())
    >>> folder.units is None, folder.tilesets
    (True, {})
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False) -> None:
        self.root = Path(path)
        if create:
            check_writable(self.root, folder=True)
        elif not self.root.is_dir():
            raise InputFileError(
                f"{self.root}: no such data folder; build one with "
                f"`trafficunit build city.toml -o {self.root}` (or `trafficunit demo --no-serve "
                f"-o {self.root}`)"
            )

    def __repr__(self) -> str:
        return f"DataFolder({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # -- names
    def path(self, part: str) -> Path:
        """Path of a part of the folder (a key of :data:`FILES`)."""
        try:
            return self.root / FILES[part]
        except KeyError:
            raise ValidationError(
                f"a data folder has no part {part!r}; parts: {', '.join(FILES)}"
            ) from None

    def has(self, part: str) -> bool:
        return self.path(part).exists()

    @staticmethod
    def table_for_kind(kind: str) -> str:
        """Table of an event kind: ``"accident"`` → ``"accidents"``."""
        try:
            return EVENT_TABLES[kind]
        except KeyError:
            raise ValidationError(
                f"unknown event kind {kind!r}; use one of {', '.join(EVENT_TABLES)}"
            ) from None

    @property
    def tilesets(self) -> dict[str, Path]:
        """Tilesets by name (file stem), e.g. ``{"risk": Path(".../risk.pmtiles")}``."""
        return {
            p.stem: p
            for p in sorted(self.root.glob(f"*{TILESET_SUFFIX}"))
            if not p.name.startswith(".")
        }

    # -- tables
    def read(self, table: str) -> Any:
        """A table as a GeoDataFrame, or ``None`` when the folder has none."""
        from .io import read_table

        if table not in TABLES:
            raise ValidationError(f"a data folder has no table {table!r}; tables: {TABLES}")
        path = self.path(table)
        if not path.exists():
            return None
        return read_table(path, index="unit_id" if table == "units" else None)

    @property
    def units(self) -> Any:
        """Units (scored when risk has run), indexed by ``unit_id``; ``None`` when absent."""
        return self.read("units")

    accidents = _Table()
    hazards = _Table()
    workzones = _Table()
    black_spots = _Table()

    def write(self, table: str, frame: Any) -> Path:
        """Write a table atomically and record it (size, SHA-256, rows) in the manifest."""
        from .io import write_table

        if table not in TABLES:
            raise ValidationError(f"a data folder has no table {table!r}; tables: {TABLES}")
        out = frame.copy()
        out.attrs = {}
        path = write_table(out, self.path(table))
        self.record_file(table, rows=len(frame))
        return path

    def record_file(self, part: str, **extra: Any) -> None:
        """Note the current size and SHA-256 of a part in the manifest (``files``)."""
        path = self.path(part) if part in FILES else self.root / part
        with self.edit_manifest() as m:
            m["files"][path.name] = {**file_record(path), **extra, "written": _now()}

    # -- manifest
    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest, migrated to the current schema (an empty one when absent)."""
        return self.read_manifest()

    def read_manifest(self) -> dict[str, Any]:
        path = self.path("manifest")
        if not path.exists():
            return new_manifest()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputFileError(
                f"{path}: not a readable manifest ({exc}); rebuild the folder with "
                f"{self.rebuild_command()}"
            ) from exc
        if not isinstance(data, dict):
            raise InputFileError(f"{path}: not a manifest (a JSON object is expected)")
        return _migrate(data, path)

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        """Write ``manifest.json`` atomically (schema version and update time set here)."""
        from . import __version__
        from .io import atomic_path

        data = _jsonable(dict(manifest))
        data["schema_version"] = SCHEMA_VERSION
        data["trafficunit_version"] = __version__
        data["updated"] = _now()
        path = self.path("manifest")
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    @contextlib.contextmanager
    def edit_manifest(self) -> Iterator[dict[str, Any]]:
        """Read, change and write back the manifest: ``with folder.edit_manifest() as m: ...``."""
        m = self.read_manifest()
        m.setdefault("files", {})
        m.setdefault("timings_s", {})
        m.setdefault("counts", {})
        m.setdefault("sources", [])
        yield m
        self.write_manifest(m)

    def rebuild_command(self) -> str:
        """The command that (re)builds this folder, from the manifest when it says."""
        with contextlib.suppress(Exception):
            data = json.loads(self.path("manifest").read_text(encoding="utf-8"))
            if isinstance(data, dict) and data.get("command"):
                return f"`{data['command']}`"
        return f"`trafficunit build city.toml -o {self.root}`"

    def record_source(
        self,
        kind: str,
        path: str | os.PathLike[str] | None,
        *,
        options: Mapping[str, Any] | None = None,
        report: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A source entry (kind, file size and SHA-256, options, column mapping), replacing an
        earlier entry of the same kind and path."""
        entry: dict[str, Any] = {"kind": kind}
        if path is not None and Path(path).is_file():
            entry.update(file_record(path))
        elif path is not None:
            entry["path"] = str(path)
        if options:
            entry["options"] = _jsonable({k: v for k, v in options.items() if v is not None})
        if report:
            entry.update(source_report(report))
        with self.edit_manifest() as m:
            m["sources"] = [
                s
                for s in m["sources"]
                if not (s.get("kind") == kind and s.get("path") == entry.get("path"))
            ]
            m["sources"].append(entry)
        return entry

    def record_stage(self, stage: str, seconds: float, **fields: Any) -> None:
        """Time of a stage and top-level fields (``rule``, ``period``, ``counts``...)."""
        with self.edit_manifest() as m:
            m["timings_s"][stage] = round(float(seconds), 3)
            for k, v in fields.items():
                if k == "counts" and isinstance(v, Mapping):
                    m["counts"].update(_jsonable(dict(v)))
                else:
                    m[k] = _jsonable(v)

    # -- checks
    def problems(self, *, deep: bool = False) -> list[str]:
        """What is missing or inconsistent, one short sentence each (empty: all is well).

        ``deep`` also opens every table's Parquet footer and every tileset's header (the check
        ``serve`` runs on start); a corrupt file raises :class:`InputFileError` there.
        """
        m = self.read_manifest()
        out: list[str] = []
        if not self.has("units"):
            out.append(f"no {FILES['units']}")
        if deep:
            self.verify()
        units_cols = self._columns("units")
        scored = units_cols is not None and "level" in units_cols
        if units_cols is not None and not scored:
            out.append(f"units are not scored (run `trafficunit risk {self.root} -o {self.root}`)")
        if not self.has("accidents"):
            out.append(f"no {FILES['accidents']} (/accidents answers 503)")
        if not self.has("black_spots"):
            out.append(f"no {FILES['black_spots']} (/black-spots answers 503)")
        if not self.tilesets:
            out.append(f"no tileset ({FILES['risk_tiles']})")
        if not self.has("manifest"):
            out.append("no manifest.json (the legend has no rule or period)")
        elif scored and not m.get("rule"):
            out.append("manifest.json has no risk rule (the legend cannot explain the levels)")
        if scored and self.has("accidents"):
            stale = self._changed_since_scoring(m)
            if stale:
                out.append(stale)
        tiles = (m.get("files") or {}).get(FILES["risk_tiles"]) or {}
        if (
            tiles.get("units_sha256")
            and self.has("units")
            and self.has("risk_tiles")
            and sha256_file(self.path("units")) != tiles["units_sha256"]
        ):
            out.append(
                f"{FILES['risk_tiles']} was built from other units than {FILES['units']} "
                f"(run `trafficunit tiles {self.root} -o {self.root}`)"
            )
        return out

    def _columns(self, table: str) -> list[str] | None:
        path = self.path(table)
        if not path.exists():
            return None
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:
            raise InputFileError(
                f"{path}: corrupt or not a Parquet table ({exc}); rebuild it with "
                f"{self.rebuild_command()}"
            ) from exc

    def _changed_since_scoring(self, m: Mapping[str, Any]) -> str | None:
        scored_with = (m.get("risk_inputs") or {}).get("accidents")
        acc = self.path("accidents")
        if isinstance(scored_with, Mapping) and scored_with.get("sha256"):
            if sha256_file(acc) != scored_with["sha256"]:
                return (
                    f"{FILES['accidents']} changed after the scores were computed "
                    f"(run `trafficunit risk {self.root} -o {self.root}`)"
                )
            return None
        if acc.stat().st_mtime > self.path("units").stat().st_mtime + 1:
            return (
                f"{FILES['accidents']} is newer than the scores in {FILES['units']} "
                f"(run `trafficunit risk {self.root} -o {self.root}`)"
            )
        return None

    def verify(self) -> None:
        """Open every table's footer and every tileset's header; raise on a corrupt one."""
        for table in TABLES:
            self._columns(table)
        for name, path in self.tilesets.items():
            try:
                with path.open("rb") as f:
                    head = f.read(7)
            except OSError as exc:
                raise InputFileError(f"{path}: cannot read tileset {name!r} ({exc})") from exc
            if head != b"PMTiles":
                raise InputFileError(
                    f"{path}: not a PMTiles archive; rebuild it with "
                    f"`trafficunit tiles {self.root} -o {self.root}`"
                )
        self.read_manifest()

    def status_line(self, *, deep: bool = False) -> str:
        """One line: what the folder holds, and what is missing or inconsistent."""
        problems = self.problems(deep=deep)
        held = [n for n in TABLES if self.has(n)] + [f"{t}.pmtiles" for t in self.tilesets]
        line = f"{self.root}: {', '.join(held) or 'empty'}"
        return line + ("; " + "; ".join(problems) if problems else "; complete")


def source_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """What a manifest keeps of a reader's ``.attrs['report']``: everything it says (field →
    column mapping, what was detected, rows read, kept and dropped) except the example rows.
    Keys the reader did not give are left out, never filled in."""
    inner = report.get("read")
    read: Mapping[str, Any] = inner if isinstance(inner, Mapping) else report
    return {
        k: _jsonable(v)
        for k, v in read.items()
        if k not in ("examples", "source", "kind") and v not in (None, {}, [], "")
    }


def timer() -> Any:
    """A lap timer: ``lap = timer(); ...; seconds = lap()``."""
    t = [time.perf_counter()]

    def lap() -> float:
        now = time.perf_counter()
        dt, t[0] = now - t[0], now
        return dt

    return lap


def is_folder_output(path: str | os.PathLike[str]) -> bool:
    """``-o`` names a data folder (an existing folder, or a name without a suffix)."""
    p = Path(path)
    return p.is_dir() or (not p.suffix and not p.exists())
