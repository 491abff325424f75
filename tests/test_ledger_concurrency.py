"""The ledger under a real uvicorn server process, on both backends: 50 parallel clients lose no
transition and open no duplicate; a server killed with SIGKILL during writes comes back
consistent with every acknowledged write present."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from trafficunit.io import write_table
from trafficunit.ledger import Ledger

from ._ledger_db import (  # noqa: F401  (fixtures)
    drop_pg_database,
    fresh_pg_database,
    pg_template,
)
from ._serverdata import DLON, LAT0, LON0, grid_units

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "concurrency-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CLIENTS = 50
#: One pytest-xdist worker runs this module (``--dist loadgroup``): its server per backend and
#: the session's PostgreSQL template start once, not once on each worker that takes a test
pytestmark = pytest.mark.xdist_group("ledger-concurrency")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``uvicorn trafficunit_server.app:app_from_env --factory`` in a child process."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        env = {
            **os.environ,
            "TRAFFICUNIT_DATA_DIR": str(self.data_dir),
            "TRAFFICUNIT_DATABASE_URL": self.database_url,
            "TRAFFICUNIT_ADMIN_TOKEN": ADMIN,
            "TRAFFICUNIT_LEDGER_SWEEP_INTERVAL_S": "0",
            "TRAFFICUNIT_LEDGER_POOL_SIZE": "20",
        }
        cmd = [sys.executable, "-m", "uvicorn", "trafficunit_server.app:app_from_env", "--factory"]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"server exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not answer /healthz within 90 s")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("concurrency")
    write_table(grid_units(), d / "units.parquet")
    return d


def _database(backend: str, tmp: Path, request: pytest.FixtureRequest) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'ledger.sqlite'}", None
    name, url = fresh_pg_database(request.getfixturevalue("pg_template"))
    return url, name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test (PostgreSQL: a new one from the session's template)."""
    url, name = _database(request.param, tmp_path, request)
    yield url
    if name:
        drop_pg_database(name)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per backend for this module's tests, on a fresh database."""
    url, name = _database(request.param, tmp_path_factory.mktemp("db"), request)
    srv = ServerProcess(data_dir, url).start()
    yield srv
    srv.stop()
    if name:
        drop_pg_database(name)


def new_token(url: str, role: str) -> dict[str, str]:
    r = httpx.post(f"{url}/tokens", json={"role": role}, headers=AUTH, timeout=30)
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def point(i: int) -> dict[str, Any]:
    """Points ~100 m apart along the grid's first row."""
    return {"type": "Point", "coordinates": [LON0 + (i % 50) * 0.0018 / 1.0, LAT0 + 0.00002]}


def test_50_clients_on_one_hazard_lose_no_transition(server: ServerProcess) -> None:
    url = server.url
    sup = new_token(url, "supervisor")
    r = httpx.post(
        f"{url}/hazards",
        json={"geometry": point(0), "category": "facility.signal", "grade": "general"},
        headers=sup,
    )
    hid = r.json()["id"]
    etag = r.headers["etag"]
    for to, extra in (
        ("registered", {}),
        ("assigned", {"responsible": "crew"}),
        ("rectifying", {}),
    ):
        r = httpx.post(
            f"{url}/hazards/{hid}/transitions",
            json={"to": to, **extra},
            headers={**sup, "If-Match": etag},
        )
        etag = r.headers["etag"]
    v0 = r.json()["version"]
    per_client = 2
    barrier = threading.Barrier(CLIENTS)
    acked: list[int] = []
    stale = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        done = 0
        with httpx.Client(base_url=url, headers=sup, timeout=60) as c:
            barrier.wait()
            while done < per_client:
                g = c.get(f"/hazards/{hid}")
                state = g.json()["properties"]["state"]
                to = "accepted" if state == "rectifying" else "rectifying"
                body = {"to": to, "comment": f"client {k} step {done}"}
                p = c.post(
                    f"/hazards/{hid}/transitions",
                    json=body,
                    headers={"If-Match": g.headers["etag"]},
                )
                with lock:
                    if p.status_code == 200:
                        acked.append(p.json()["version"])
                        done += 1
                    elif p.status_code == 412:
                        stale[0] += 1
                    else:
                        errors.append(f"{p.status_code} {p.text}")
                        return

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert errors == []
    n = CLIENTS * per_client
    # every acknowledged transition got its own version; none was lost or overwritten
    assert sorted(acked) == list(range(v0 + 1, v0 + n + 1))
    final = httpx.get(f"{url}/hazards/{hid}").json()
    assert final["version"] == v0 + n
    hist = httpx.get(f"{url}/hazards/{hid}/history").json()["events"]
    assert [e["version"] for e in hist] == list(range(1, v0 + n + 1))
    moves = hist[v0:]
    assert all(a["to"] == b["from"] for a, b in zip(moves, moves[1:], strict=False))
    assert len({e["comment"] for e in moves}) == n  # each client's every step is there once
    assert stale[0] > 0  # the clients did collide; the losers got 412 and retried
    print(f"{CLIENTS} clients, {n} transitions, {stale[0]} stale writes refused (412)")


def test_50_clients_reporting_the_same_hazard_open_one(server: ServerProcess) -> None:
    url = server.url
    rep = new_token(url, "reporter")
    barrier = threading.Barrier(CLIENTS)
    codes: list[int] = []
    ids: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        geom = {"type": "Point", "coordinates": [LON0 + 3.5 * DLON + k * 1e-6, LAT0 + 0.00002]}
        with httpx.Client(base_url=url, headers=rep, timeout=60) as c:
            barrier.wait()
            r = c.post("/hazards", json={"geometry": geom, "category": "organisation.speeding"})
            with lock:
                codes.append(r.status_code)
                ids.append(r.json()["id"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert sorted(codes) == [200] * (CLIENTS - 1) + [201]
    assert len(set(ids)) == 1
    h = httpx.get(f"{url}/hazards/{ids[0]}").json()
    assert h["properties"]["report_count"] == CLIENTS and h["version"] == CLIENTS
    assert len(httpx.get(f"{url}/hazards/{ids[0]}/reports").json()["reports"]) == CLIENTS
    near = f"{LON0 + 3 * DLON},{LAT0 - 0.001},{LON0 + 4 * DLON},{LAT0 + 0.001}"
    listed = httpx.get(f"{url}/hazards", params={"bbox": near, "category": "organisation.speeding"})
    assert listed.json()["numberMatched"] == 1


def test_kill_9_during_writes_keeps_every_acknowledged_write(
    data_dir: Path, database_url: str
) -> None:
    srv = ServerProcess(data_dir, database_url).start()
    eng = new_token(srv.url, "engineer")
    acked: dict[str, int] = {}  # hazard id -> highest acknowledged version
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        i = 0
        with httpx.Client(base_url=srv.url, headers=eng, timeout=10) as c:
            while not stop.is_set():
                try:
                    geom = point(w * 7 + i)
                    geom["coordinates"][1] += 0.0009 * w + 0.0000001 * i  # distinct spots
                    r = c.post(
                        "/hazards",
                        json={
                            "geometry": geom,
                            "category": "road.surface_damage",
                            "grade": "general",
                        },
                    )
                    if r.status_code not in (200, 201):
                        continue
                    hid, version = r.json()["id"], r.json()["version"]
                    with lock:
                        acked[hid] = max(acked.get(hid, 0), version)
                    r = c.post(
                        f"/hazards/{hid}/transitions",
                        json={"to": "registered"},
                        headers={"If-Match": r.headers["etag"]},
                    )
                    if r.status_code == 200:
                        with lock:
                            acked[hid] = max(acked[hid], r.json()["version"])
                except httpx.HTTPError:
                    return  # the server is gone
                i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    # kill once enough writes were acknowledged, however slow the machine is (no fixed sleep)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with lock:
            if len(acked) > 20:
                break
        stop.wait(0.05)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) > 10, "too few writes before the kill to test anything"
    # the store is consistent straight after the crash (the library reads it directly)
    with Ledger.open(database_url) as led:
        assert led.check_consistency() == []
        if database_url.startswith("sqlite"):
            with led.db.transaction() as tx:
                assert tx.scalar("PRAGMA integrity_check") == "ok"
        stored = {h.id: h.version for h in led.list_hazards(limit=100_000)[1]}
    missing = {h: v for h, v in acked.items() if stored.get(h, 0) < v}
    assert missing == {}
    # and a restarted server serves them and takes new writes
    again = ServerProcess(data_dir, database_url).start()
    try:
        for hid, version in list(acked.items())[:20]:
            assert httpx.get(f"{again.url}/hazards/{hid}").json()["version"] >= version
        r = httpx.post(
            f"{again.url}/hazards",
            json={"geometry": point(3), "category": "road.steep_grade"},
            headers=eng,
        )
        assert r.status_code == 201
    finally:
        again.stop()
    print(f"kill -9 after {len(acked)} acknowledged hazards: all present, store consistent")
