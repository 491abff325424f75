"""Ledger test databases: a SQLite file per test, and a fresh PostgreSQL + PostGIS database.

The PostgreSQL server is ``TRAFFICUNIT_TEST_PG_URL`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``; ``.ci/run`` installs and starts one). Each
test session creates a template database with a random name and ``CREATE EXTENSION postgis``;
each test gets its own copy of it, dropped afterwards. Tests skip with the reason when no
server can be reached.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_URL = os.environ.get("TRAFFICUNIT_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """Name of this session's template database with PostGIS (skips when no server)."""
    try:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # no server, no driver, no access
        pytest.skip(f"no PostgreSQL server at {PG_URL} ({exc}); set TRAFFICUNIT_TEST_PG_URL")
    name = f"tu_test_{secrets.token_hex(4)}_tpl"
    _admin(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(_with_db(PG_URL, name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")
    except Exception as exc:
        _admin(f"DROP DATABASE IF EXISTS {name}")
        pytest.skip(f"PostGIS is not installed on {PG_URL} ({exc})")
    yield name
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def fresh_pg_database(template: str) -> tuple[str, str]:
    """A new database copied from ``template``: ``(name, url)``."""
    name = f"tu_test_{secrets.token_hex(5)}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name, _with_db(PG_URL, name)


def drop_pg_database(name: str) -> None:
    """Drop a test database, closing what still uses it."""
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def pg_session_db(pg_template: str) -> Iterator[str]:
    """URL of one migrated database for this session (emptied before each test using it)."""
    from trafficunit.ledger._db import connect, migrate

    name, url = fresh_pg_database(pg_template)
    db = connect(url)
    migrate(db)
    db.close()
    yield url
    drop_pg_database(name)


_TABLES = (
    "hazard_units, hazard_reports, hazard_events, hazards, tokens, workzone_units, workzones, meta"
    ", accidents, level_history, alerts, alert_events, subscriptions, deliveries, "
    "delivery_attempts"
)


def empty_pg_database(url: str) -> None:
    """Remove every row of the ledger's tables (the schema stays)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE")
        conn.execute("UPDATE counters SET value = 0")


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty ledger database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite'}"
        return
    url = request.getfixturevalue("pg_session_db")
    empty_pg_database(url)
    yield url
