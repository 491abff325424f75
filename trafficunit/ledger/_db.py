"""Storage backends of the ledger: SQLite (WAL, the embedded default) and PostgreSQL + PostGIS.

One URL chooses: ``sqlite:///relative/path.sqlite``, ``sqlite:////absolute/path.sqlite`` (or a
plain file path), or ``postgresql://user@host:port/db``. SQL is written once with ``?``
placeholders; the PostgreSQL backend rewrites them for psycopg and stores geometries as
PostGIS ``geometry(Geometry, 4326)`` with GiST indexes, SQLite stores WKB with a bounding box.

Write transactions are serialised (SQLite ``BEGIN IMMEDIATE``; PostgreSQL a transaction-level
advisory lock), so change sequence numbers commit in order and duplicate detection sees every
committed report, also across several server processes. The schema is created and migrated by
:func:`migrate` and recorded in ``schema_version``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from .._errors import InputFileError, TrafficUnitError
from .errors import ValidationError
from .lifecycle import state_check

__all__ = ["EVENT_COLUMNS", "SCHEMA_VERSION", "Database", "Tx", "connect", "migrate"]

_WRITE_LOCK_KEY = 727_000_001


class Tx:
    """One open transaction: run SQL with ``?`` placeholders, get rows as dicts."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect
        self.pg = dialect == "postgresql"
        #: SQL that turns a WKB parameter into the stored geometry.
        self.geom_in = "ST_GeomFromWKB(?, 4326)" if self.pg else "?"

    def geom_out(self, column: str = "geom") -> str:
        """SQL selecting ``column`` as WKB, named ``column``."""
        return f"ST_AsBinary({column}) AS {column}" if self.pg else column

    def _run(self, sql: str, params: Sequence[Any]) -> None:
        if self.pg:
            self._cur.execute(sql.replace("?", "%s"), tuple(params) if params else None)
        else:
            self._cur.execute(sql, tuple(params))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""
        self._run(sql, params)
        return int(self._cur.rowcount or 0)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Every row of a query."""
        self._run(sql, params)
        rows = self._cur.fetchall()
        return [dict(r) for r in rows]

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        """The first row of a query, or None."""
        self._run(sql, params)
        row = self._cur.fetchone()
        return None if row is None else dict(row)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return None if row is None else next(iter(row.values()))

    def insert(self, table: str, row: dict[str, Any]) -> int:
        """Insert one row (column -> value); the number of rows changed."""
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        return self.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per parameter row (one round trip per batch where possible)."""
        if not rows:
            return
        if self.pg:
            self._cur.executemany(sql.replace("?", "%s"), [tuple(r) for r in rows])
        else:
            self._cur.executemany(sql, [tuple(r) for r in rows])

    def next_change(self) -> int:
        """The next change sequence number (call inside a write transaction)."""
        self.execute("UPDATE counters SET value = value + 1 WHERE name = 'change'")
        return int(self.scalar("SELECT value FROM counters WHERE name = 'change'"))


class Database:
    """A ledger database: a connection source and its dialect.

    Use :func:`connect`; close with :meth:`close`.
    """

    dialect = "sqlite"
    url = ""

    @contextlib.contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Tx]:  # pragma: no cover
        """A transaction, committed on success and rolled back on any exception."""
        raise NotImplementedError
        yield

    def close(self) -> None:  # pragma: no cover
        """Close every connection."""

    @property
    def display_url(self) -> str:
        """The URL without a password."""
        p = urlparse(self.url)
        if p.password:
            return self.url.replace(f":{p.password}@", ":***@")
        return self.url


class SQLiteDatabase(Database):
    """SQLite in WAL mode: one file, no setup; several processes may share it."""

    dialect = "sqlite"

    def __init__(self, path: Path, *, synchronous: str = "FULL", busy_timeout_s: float = 30.0):
        self.path = path
        self.url = f"sqlite:///{path}"
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValidationError(
                f"SQLite synchronous must be NORMAL, FULL or EXTRA: {synchronous}"
            )
        self.synchronous = synchronous.upper()
        self.busy_timeout_s = busy_timeout_s
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # owner-only: the ledger holds reporters' descriptions and token hashes; SQLite
            # gives its -wal and -shm files the database file's permissions
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._conn()  # fail early on an unusable path

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=self.busy_timeout_s,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                raise InputFileError(
                    f"{self.path}: cannot open the ledger database ({exc})"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Tx]:
        conn = self._conn()
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(cur, self.dialect)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


class PostgresDatabase(Database):
    """PostgreSQL with PostGIS through a psycopg 3 connection pool."""

    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 10, timeout_s: float = 30.0) -> None:
        try:
            import psycopg
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool
        except ModuleNotFoundError as exc:
            from .._optional import missing

            raise missing(exc, "a PostgreSQL ledger") from exc
        self.url = url
        self._psycopg = psycopg
        try:
            self.pool = ConnectionPool(
                url,
                min_size=1,
                max_size=pool_size,
                kwargs={"row_factory": dict_row},
                timeout=timeout_s,
                open=True,
            )
            self.pool.wait(timeout=timeout_s)
        except Exception as exc:
            raise InputFileError(
                f"cannot connect to the ledger database {self.display_url}: {exc}"
            ) from exc

    @contextlib.contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Tx]:
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if write:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK_KEY,))
            yield Tx(cur, self.dialect)

    def close(self) -> None:
        self.pool.close()


def connect(url: str, *, sqlite_synchronous: str = "FULL", pool_size: int = 10) -> Database:
    """Open the ledger database named by ``url`` (see the module docs); does not migrate."""
    url = str(url).strip()
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return PostgresDatabase(
            url.replace("postgresql+psycopg://", "postgresql://"), pool_size=pool_size
        )
    if url.startswith("sqlite:"):
        p = urlparse(url)
        path = unquote(p.path)
        if url.startswith("sqlite:///"):
            path = unquote(url[len("sqlite:///") :])
        if not path or path == ":memory:":
            raise ValidationError(
                f"ledger URL {url!r} names no file; use sqlite:///path/ledger.sqlite "
                "(an in-memory database cannot be shared by the server's threads)"
            )
        return SQLiteDatabase(Path(path), synchronous=sqlite_synchronous)
    if "://" in url:
        raise ValidationError(
            f"unsupported ledger database URL {url!r}; use sqlite:///path or postgresql://..."
        )
    return SQLiteDatabase(Path(url), synchronous=sqlite_synchronous)


# --------------------------------------------------------------------------------------------
# schema

#: The columns of every history table (hazard events, investigation events): who did what.
EVENT_COLUMNS = """at TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        comment TEXT,
        details TEXT"""

#: The geometry of a hazard or work zone and its bounding box (SQLite filters by the box).
SHAPE_COLUMNS = """geom {GEOM} NOT NULL,
        geom_type TEXT NOT NULL,
        minx {REAL} NOT NULL,
        miny {REAL} NOT NULL,
        maxx {REAL} NOT NULL,
        maxy {REAL} NOT NULL"""

# The hazard states' CHECK comes from the lifecycle (``{STATE_CHECK}``); a database created
# before a new state was added needs a migration that rebuilds the constraint.
_DDL_V1 = [
    "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO counters (name, value) VALUES ('change', 0)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)",
    """CREATE TABLE hazards (
        pk {PK},
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        category TEXT NOT NULL,
        grade TEXT,
        source TEXT NOT NULL,
        description TEXT,
        road_name TEXT,
        responsible TEXT,
        road_chief TEXT,
        deadline TEXT,
        supervision TEXT,
        listed_at TEXT,
        report_count INTEGER NOT NULL,
        reopen_count INTEGER NOT NULL DEFAULT 0,
        reported_at TEXT NOT NULL,
        last_reported_at TEXT NOT NULL,
        registered_at TEXT,
        assigned_at TEXT,
        rectifying_at TEXT,
        accepted_at TEXT,
        closed_at TEXT,
        updated_at TEXT NOT NULL,
        reported_by TEXT,
        unit_ids TEXT NOT NULL,
        {SHAPE_COLUMNS},
        change_seq BIGINT NOT NULL,
        {STATE_CHECK},
        CHECK (version >= 1)
    )""",
    "CREATE INDEX hazards_state ON hazards (state, deadline)",
    "CREATE INDEX hazards_change ON hazards (change_seq)",
    "CREATE INDEX hazards_bbox ON hazards (minx, maxx, miny, maxy)",
    """CREATE TABLE hazard_units (
        hazard_pk BIGINT NOT NULL REFERENCES hazards (pk),
        unit_id TEXT NOT NULL,
        distance_m {REAL},
        match TEXT,
        PRIMARY KEY (hazard_pk, unit_id)
    )""",
    "CREATE INDEX hazard_units_unit ON hazard_units (unit_id)",
    """CREATE TABLE hazard_reports (
        pk {PK},
        hazard_pk BIGINT NOT NULL REFERENCES hazards (pk),
        reported_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        reported_by TEXT,
        source TEXT,
        description TEXT,
        external_id TEXT UNIQUE,
        distance_m {REAL},
        geom {GEOM} NOT NULL
    )""",
    "CREATE INDEX hazard_reports_hazard ON hazard_reports (hazard_pk)",
    """CREATE TABLE hazard_events (
        pk {PK},
        hazard_pk BIGINT NOT NULL REFERENCES hazards (pk),
        version INTEGER NOT NULL,
        {EVENT_COLUMNS},
        UNIQUE (hazard_pk, version)
    )""",
    """CREATE TABLE tokens (
        pk {PK},
        token_id TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL,
        label TEXT,
        created_at TEXT NOT NULL,
        created_by TEXT,
        revoked_at TEXT
    )""",
    """CREATE TABLE workzones (
        pk {PK},
        site_code TEXT NOT NULL UNIQUE,
        version INTEGER NOT NULL,
        start_at TEXT NOT NULL,
        end_at TEXT,
        lanes_taken INTEGER,
        night_works INTEGER,
        contractor TEXT,
        permit TEXT,
        description TEXT,
        unit_ids TEXT NOT NULL,
        {SHAPE_COLUMNS},
        created_at TEXT NOT NULL,
        created_by TEXT,
        updated_at TEXT NOT NULL,
        change_seq BIGINT NOT NULL
    )""",
    "CREATE INDEX workzones_period ON workzones (start_at, end_at)",
    "CREATE INDEX workzones_bbox ON workzones (minx, maxx, miny, maxy)",
    """CREATE TABLE workzone_units (
        workzone_pk BIGINT NOT NULL REFERENCES workzones (pk),
        unit_id TEXT NOT NULL,
        distance_m {REAL},
        match TEXT,
        PRIMARY KEY (workzone_pk, unit_id)
    )""",
    "CREATE INDEX workzone_units_unit ON workzone_units (unit_id)",
]

_APPEND_ONLY_SQLITE = [
    """CREATE TRIGGER hazard_events_no_update BEFORE UPDATE ON hazard_events
       BEGIN SELECT RAISE(ABORT, 'hazard history is append-only'); END""",
    """CREATE TRIGGER hazard_events_no_delete BEFORE DELETE ON hazard_events
       BEGIN SELECT RAISE(ABORT, 'hazard history is append-only'); END""",
]
_APPEND_ONLY_PG = [
    """CREATE FUNCTION tu_append_only() RETURNS trigger LANGUAGE plpgsql AS $f$
       BEGIN RAISE EXCEPTION 'hazard history is append-only'; END $f$""",
    """CREATE TRIGGER hazard_events_append_only BEFORE UPDATE OR DELETE ON hazard_events
       FOR EACH ROW EXECUTE FUNCTION tu_append_only()""",
    "CREATE INDEX hazards_geom ON hazards USING GIST (geom)",
    "CREATE INDEX workzones_geom ON workzones USING GIST (geom)",
]


def _v1(dialect: str) -> list[str]:
    if dialect == "postgresql":
        subst = {
            "PK": "BIGSERIAL PRIMARY KEY",
            "GEOM": "geometry(Geometry, 4326)",
            "REAL": "DOUBLE PRECISION",
            "STATE_CHECK": state_check(),
            "EVENT_COLUMNS": EVENT_COLUMNS,
        }
        subst["SHAPE_COLUMNS"] = SHAPE_COLUMNS.format(**subst)
        return (
            ["CREATE EXTENSION IF NOT EXISTS postgis"]
            + [s.format(**subst) for s in _DDL_V1]
            + _APPEND_ONLY_PG
        )
    subst = {
        "PK": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "GEOM": "BLOB",
        "REAL": "REAL",
        "STATE_CHECK": state_check(),
        "EVENT_COLUMNS": EVENT_COLUMNS,
    }
    subst["SHAPE_COLUMNS"] = SHAPE_COLUMNS.format(**subst)
    return [s.format(**subst) for s in _DDL_V1] + _APPEND_ONLY_SQLITE


#: v2: the live loop: posted accidents, the units' level history, warning alerts.
_DDL_V2 = [
    """CREATE TABLE accidents (
        pk {PK},
        event_id TEXT NOT NULL UNIQUE,
        unit_id TEXT,
        severity TEXT,
        time TEXT,
        t_ns BIGINT,
        hour INTEGER,
        lon {REAL} NOT NULL,
        lat {REAL} NOT NULL,
        distance_m {REAL},
        properties TEXT NOT NULL,
        received_at TEXT NOT NULL,
        actor TEXT NOT NULL,
        change_seq BIGINT NOT NULL
    )""",
    "CREATE INDEX accidents_change_seq ON accidents (change_seq)",
    "CREATE INDEX accidents_unit ON accidents (unit_id)",
    """CREATE TABLE level_history (
        pk {PK},
        unit_id TEXT NOT NULL,
        from_level TEXT NOT NULL,
        to_level TEXT NOT NULL,
        at TEXT NOT NULL,
        reason TEXT NOT NULL,
        change_seq BIGINT NOT NULL,
        UNIQUE (unit_id, change_seq)
    )""",
    "CREATE INDEX level_history_unit ON level_history (unit_id, pk)",
    """CREATE TABLE alerts (
        pk {PK},
        alert_id TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL,
        scope TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        unit_ids TEXT NOT NULL,
        evidence TEXT NOT NULL,
        detail TEXT,
        time TEXT,
        created_at TEXT NOT NULL,
        state TEXT NOT NULL,
        assignee TEXT,
        hazard_id TEXT,
        version INTEGER NOT NULL,
        change_seq BIGINT NOT NULL
    )""",
    "CREATE INDEX alerts_change_seq ON alerts (change_seq)",
    """CREATE TABLE alert_events (
        pk {PK},
        alert_id TEXT NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        at TEXT NOT NULL,
        comment TEXT
    )""",
    "CREATE INDEX alert_events_alert ON alert_events (alert_id, pk)",
    """CREATE TABLE subscriptions (
        pk {PK},
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        rules TEXT,
        label TEXT,
        state TEXT NOT NULL,
        paused_reason TEXT,
        failures INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL
    )""",
    """CREATE TABLE deliveries (
        pk {PK},
        subscription INTEGER NOT NULL,
        alert_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_at {REAL} NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT,
        UNIQUE (subscription, alert_id)
    )""",
    "CREATE INDEX deliveries_due ON deliveries (state, next_at)",
    """CREATE TABLE delivery_attempts (
        pk {PK},
        delivery INTEGER NOT NULL,
        at TEXT NOT NULL,
        status INTEGER,
        error TEXT,
        duration_ms {REAL}
    )""",
    "CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery, pk)",
]


def _v2(dialect: str) -> list[str]:
    subst = (
        {"PK": "BIGSERIAL PRIMARY KEY", "REAL": "DOUBLE PRECISION"}
        if dialect == "postgresql"
        else {"PK": "INTEGER PRIMARY KEY AUTOINCREMENT", "REAL": "REAL"}
    )
    return [s.format(**subst) for s in _DDL_V2]


#: Migrations in order: version -> statements for a dialect.
MIGRATIONS = {1: _v1, 2: _v2}
SCHEMA_VERSION = max(MIGRATIONS)


def migrate(db: Database) -> int:
    """Create or upgrade the schema to :data:`SCHEMA_VERSION`; the version before.

    Runs in one write transaction, so concurrent servers starting together migrate once.
    """
    with db.transaction(write=True) as tx:
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        before = int(tx.scalar("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version"))
        if before > SCHEMA_VERSION:
            raise TrafficUnitError(
                f"the ledger database {db.display_url} has schema version {before}, newer than "
                f"this trafficunit knows ({SCHEMA_VERSION}); upgrade trafficunit"
            )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for version in range(before + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[version](db.dialect):
                tx.execute(stmt)
            tx.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now)
            )
    return before
