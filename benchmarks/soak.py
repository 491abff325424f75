"""Soak test: ``trafficunit serve --workers 2`` under mixed reads and writes, a worker killed
every few minutes. Run on demand (not in CI)::

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--kill-every 180] [--clients 2]
        [--workers 2] [--pause 0.05] [--data DIR] [--json out.json]

Builds the demo data folder (Helsinki sample, GENERATED events) in a temporary folder unless
``--data`` is given (it is copied, so its ledger is never touched), starts the server on a
free 127.0.0.1 port with a fresh SQLite ledger, and runs ``--clients`` threads, each pausing
``--pause`` s between requests (low load on purpose: this measures staying up, not speed):

* reads (60 %): ``/units?bbox=`` around a random unit, ``/hazards?bbox=``, one hazard,
  a risk tile, ``/healthz``;
* writes (40 %): a hazard report at a random unit, or a transition (reported -> registered,
  ``If-Match``) of a hazard this run reported; every acknowledged write (2xx) is remembered
  with its version.

Every ``--kill-every`` seconds one worker gets ``SIGKILL``; the script times how long until
the server answers again and until the worker is respawned. At the end it reports requests,
HTTP 5xx, transport errors (connections cut by a kill), respawns, RSS of the server processes
(first sample after warm-up, last, peak), stops the server with SIGTERM and checks with the
library that every acknowledged write is in the ledger at its acknowledged version or later.
Exit code 1 if a write is missing, a 5xx was answered, or a killed worker was not respawned.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "trafficunit")
ADMIN = "soak-admin-token-" + "0123456789abcdef" * 2
CATEGORIES = ["road.surface_damage", "facility.signal", "organisation.speeding"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_until(check: Any, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``check()`` is true, or None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(step)
    return None


class Soak:
    def __init__(self, args: argparse.Namespace, data: Path) -> None:
        self.args = args
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(data / "soak-server.log", "wb")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[str, int] = {}  # hazard id -> highest acknowledged version
        self.reported: list[tuple[str, str]] = []  # (id, etag) of hazards still "reported"
        self.codes: Counter[int] = Counter()
        self.transport: Counter[str] = Counter()
        self.kills: list[dict[str, Any]] = []
        self.rss: list[tuple[float, float, dict[int, float]]] = []
        self.points: list[tuple[float, float]] = []

    # -- server ---------------------------------------------------------------------------
    def start(self) -> None:
        env = {
            **os.environ,
            "TRAFFICUNIT_ADMIN_TOKEN": ADMIN,
            "TRAFFICUNIT_DATABASE_URL": f"sqlite:///{self.data / 'ledger.sqlite'}",
        }
        cmd = [CLI, "serve", str(self.data), "--port", str(self.port)]
        cmd += ["--workers", str(self.args.workers), "--log-level", "warning"]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait_until(self.ready, 180, 0.2) is None:
            raise SystemExit(f"the server did not become ready in 180 s; see {self.log.name}")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    # -- clients --------------------------------------------------------------------------
    def client(self, k: int, token: dict[str, str]) -> None:
        rng = random.Random(k)
        with httpx.Client(base_url=self.url, headers=token, timeout=30) as c:
            while not self.stop.is_set():
                try:
                    self.one(c, rng)
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.transport[type(exc).__name__] += 1
                self.stop.wait(self.args.pause)

    def one(self, c: httpx.Client, rng: random.Random) -> None:
        x, y = rng.choice(self.points)
        roll = rng.random()
        if roll < 0.6:
            d = 0.004
            bbox = f"{x - d},{y - d},{x + d},{y + d}"
            kind = rng.randrange(5)
            if kind == 0:
                r = c.get("/units", params={"bbox": bbox}, headers={"Accept-Encoding": "gzip"})
            elif kind == 1:
                r = c.get("/hazards", params={"bbox": bbox})
            elif kind == 2 and self.acked:
                with self.lock:
                    hid = rng.choice(list(self.acked))
                r = c.get(f"/hazards/{hid}")
            elif kind == 3:
                import math

                z = 15
                n = 2**z
                tx = int((x + 180) / 360 * n)
                ty = int((1 - math.asinh(math.tan(math.radians(y))) / math.pi) / 2 * n)
                r = c.get(f"/tiles/risk/{z}/{tx}/{ty}.mvt")
            else:
                r = c.get("/healthz")
            self.count(r)
            return
        with self.lock:
            pending = self.reported.pop() if self.reported and roll > 0.85 else None
        if pending is not None:
            hid, etag = pending
            r = c.post(
                f"/hazards/{hid}/transitions",
                json={"to": "registered", "grade": "general"},
                headers={"If-Match": etag},
            )
            self.count(r)
            if r.status_code == 200:
                with self.lock:
                    self.acked[hid] = max(self.acked.get(hid, 0), r.json()["version"])
            return
        geom = {
            "type": "Point",
            "coordinates": [x + rng.uniform(-2e-4, 2e-4), y + rng.uniform(-1e-4, 1e-4)],
        }
        r = c.post("/hazards", json={"geometry": geom, "category": rng.choice(CATEGORIES)})
        self.count(r)
        if r.status_code in (200, 201):
            body = r.json()
            with self.lock:
                self.acked[body["id"]] = max(self.acked.get(body["id"], 0), body["version"])
                if r.status_code == 201:
                    self.reported.append((body["id"], r.headers["etag"]))

    def count(self, r: httpx.Response) -> None:
        with self.lock:
            self.codes[r.status_code] += 1

    # -- killer and sampler ---------------------------------------------------------------
    def killer(self) -> None:
        assert self.proc is not None
        main = self.proc.pid
        while not self.stop.wait(self.args.kill_every):
            workers = children(main)
            if not workers:
                self.kills.append({"error": "no worker to kill"})
                continue
            victim = random.choice(workers)
            os.kill(victim, signal.SIGKILL)
            t_kill = time.monotonic()
            answered = wait_until(self.answers, 60)

            def respawned(victim: int = victim) -> bool:
                now = children(main)
                return victim not in now and len(now) >= self.args.workers

            wait_until(respawned, 60)
            back = time.monotonic() - t_kill if respawned() else None
            self.kills.append(
                {
                    "pid": victim,
                    "answered_after_s": answered,
                    "respawned_after_s": back,
                    "at_s": round(t_kill - self.t0, 1),
                }
            )
            print(
                f"[{(t_kill - self.t0) / 60:5.1f} min] killed worker {victim}: answering "
                f"after {answered if answered is None else round(answered, 2)} s, a new worker "
                f"after {back if back is None else round(back, 2)} s",
                flush=True,
            )

    def sampler(self) -> None:
        assert self.proc is not None
        main = self.proc.pid
        while not self.stop.wait(10):
            per = {pid: rss_mb(pid) for pid in children(main)}
            total = rss_mb(main) + sum(per.values())
            self.rss.append((time.monotonic() - self.t0, total, per))

    # -- the run --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        import geopandas as gpd

        units = gpd.read_parquet(self.data / "units.parquet").to_crs(4326)
        pts = units.geometry.representative_point()
        self.points = list(zip(pts.x.tolist(), pts.y.tolist(), strict=True))
        self.start()
        assert self.proc is not None
        r = httpx.post(
            f"{self.url}/tokens",
            json={"role": "engineer", "label": "soak"},
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=30,
        )
        r.raise_for_status()
        token = {"Authorization": f"Bearer {r.json()['token']}"}
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=self.client, args=(k, token), daemon=True)
            for k in range(self.args.clients)
        ]
        threads += [threading.Thread(target=self.killer, daemon=True)]
        threads += [threading.Thread(target=self.sampler, daemon=True)]
        for t in threads:
            t.start()
        end = self.t0 + self.args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(30.0, max(0.0, end - time.monotonic())))
            with self.lock:
                n = sum(self.codes.values())
            print(
                f"[{(time.monotonic() - self.t0) / 60:5.1f} min] {n} requests, "
                f"{len(self.acked)} hazards written, {len(self.kills)} kills",
                flush=True,
            )
        self.stop.set()
        for t in threads:
            t.join(timeout=120)
        # HTTP check while the server is up, then stop it (SIGTERM: drains) and check the file
        http_missing = 0
        with httpx.Client(base_url=self.url, timeout=30) as c:
            for hid, version in self.acked.items():
                r = c.get(f"/hazards/{hid}")
                if r.status_code != 200 or r.json()["version"] < version:
                    http_missing += 1
        os.killpg(self.proc.pid, signal.SIGTERM)
        stopped = True
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            stopped = False
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        from trafficunit.ledger import Ledger

        with Ledger.open(f"sqlite:///{self.data / 'ledger.sqlite'}") as led:
            consistency = led.check_consistency()
            stored = {h.id: h.version for h in led.list_hazards(limit=10_000_000)[1]}
        missing = {h: v for h, v in self.acked.items() if stored.get(h, 0) < v}
        log_text = Path(self.log.name).read_text(errors="replace")
        respawn_lines = log_text.count("respawning it")
        warm = [s for s in self.rss if s[0] >= 60] or self.rss
        kills_ok = [k for k in self.kills if "error" not in k]
        report = {
            "minutes": self.args.minutes,
            "workers": self.args.workers,
            "clients": self.args.clients,
            "requests": sum(self.codes.values()),
            "status_codes": dict(sorted(self.codes.items())),
            "http_5xx": sum(v for k, v in self.codes.items() if k >= 500),
            "transport_errors": dict(self.transport),
            "kills": len(kills_ok),
            "respawns_logged": respawn_lines,
            "max_s_to_answer_after_kill": max(
                (k["answered_after_s"] or float("inf") for k in kills_ok), default=None
            ),
            "max_s_to_respawn": max(
                (k["respawned_after_s"] or float("inf") for k in kills_ok), default=None
            ),
            "rss_mb_first_after_warmup": round(warm[0][1], 1) if warm else None,
            "rss_mb_last": round(self.rss[-1][1], 1) if self.rss else None,
            "rss_mb_peak": round(max(s[1] for s in self.rss), 1) if self.rss else None,
            "acknowledged_hazards": len(self.acked),
            "acknowledged_versions": sum(self.acked.values()),
            "missing_over_http": http_missing,
            "missing_in_ledger": len(missing),
            "ledger_consistency_problems": len(consistency),
            "stopped_cleanly_on_sigterm": stopped,
        }
        return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--kill-every", type=float, default=180.0, help="seconds between kills")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between a client's calls")
    ap.add_argument("--data", type=Path, default=None, help="data folder (copied)")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="trafficunit-soak-"))
    data = tmp / "data"
    if args.data is not None:
        shutil.copytree(args.data, data, ignore=shutil.ignore_patterns("ledger.sqlite*"))
    else:
        print("building the demo data folder...", flush=True)
        subprocess.run([CLI, "demo", "--no-serve", "-o", str(data)], check=True)
    soak = Soak(args, data)
    try:
        report = soak.run()
    finally:
        if soak.proc is not None and soak.proc.poll() is None:
            os.killpg(soak.proc.pid, signal.SIGKILL)
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    bad = (
        report["missing_in_ledger"]
        or report["missing_over_http"]
        or report["http_5xx"]
        or report["respawns_logged"] < report["kills"]
    )
    if not bad:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp} for inspection", file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
