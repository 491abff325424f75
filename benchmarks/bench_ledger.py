"""Benchmark: the Boston safety reports loaded through the hazard API, as a load test.

Run on demand: ``.venv/bin/python benchmarks/bench_ledger.py [--limit N] [--clients 8]
[--database-url postgresql://...] [--library-only]``.

Builds traffic units from ``../shared/data/osm/boston.osm.pbf``, starts a real uvicorn server
on them (SQLite ledger by default), and posts every report of
``../shared/data/hazards/boston-safety-reports-2016.csv`` from ``--clients`` parallel clients
(each report is validated, assigned to units and checked for duplicates). Prints reports/s
through the API and, as the named peer, reports/s of the same rows through the library in one
process (``Ledger.report``, no HTTP), and their ratio; and the same rows in one
``Ledger.report_many`` batch (as the server imports ``hazards.parquet``) against
``Ledger.report`` one row at a time.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

import trafficunit as tu
from trafficunit.errors import ValidationError
from trafficunit.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ADMIN = "bench-admin-token-0123456789abcdefghi"

#: Boston request types -> catalogue items.
CATEGORIES = {
    "people speed": "organisation.speeding",
    "people run red lights": "organisation.signal_violation",
    "yield while turning": "organisation.failure_to_yield",
    "yield while going straight": "organisation.failure_to_yield",
    "double park": "organisation.illegal_parking",
    "hard to see": "road.sight_distance",
    "hard for people to see": "road.sight_distance",
    "sidewalk": "facility.sidewalk",
    "walk": "facility.signal",
    "enough time to cross": "facility.signal",
    "cross away from the crosswalks": "organisation.unsafe_crossing",
    "roadway surface": "road.surface_damage",
    "bike facilities": "facility.bike",
    "too many lanes": "road.crossing_distance",
    "too far": "road.crossing_distance",
}


def category(request_type: Any) -> str:
    text = str(request_type).lower()
    for key, code in CATEGORIES.items():
        if key in text:
            return code
    return "environment.other"


def load_reports(limit: int | None) -> pd.DataFrame:
    path = SHARED / "hazards" / "boston-safety-reports-2016.csv"
    raw = pd.read_csv(path, encoding="utf-8-sig")
    raw = raw[raw["X"].notna() & raw["Y"].notna()].reset_index(drop=True)
    if limit:
        raw = raw.iloc[:limit]
    raw["category"] = raw["REQUESTTYPE"].map(category)
    raw["t"] = pd.to_datetime(raw["REQUESTDATE"], utc=True)
    return raw


def bodies(raw: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for r in raw.to_dict("records"):
        text = r["COMMENTS"] if isinstance(r["COMMENTS"], str) else None
        out.append(
            {
                "geometry": {"type": "Point", "coordinates": [r["X"], r["Y"]]},
                "category": r["category"],
                "description": text[:4000] if text else None,
                "reported_at": r["t"].isoformat(),
                "external_id": f"boston-{r['OBJECTID']}",
            }
        )
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, database_url: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "TRAFFICUNIT_DATA_DIR": str(data_dir),
        "TRAFFICUNIT_DATABASE_URL": database_url,
        "TRAFFICUNIT_ADMIN_TOKEN": ADMIN,
        "TRAFFICUNIT_LEDGER_SWEEP_INTERVAL_S": "0",
    }
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "trafficunit_server.app:app_from_env",
        "--factory",
        "--host",
    ]
    cmd += ["127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


def through_api(url: str, payloads: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    tok = httpx.post(
        f"{url}/tokens", json={"role": "reporter"}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    headers = {"Authorization": f"Bearer {tok.json()['token']}"}
    counts: dict[str, Any] = {"created": 0, "linked": 0, "errors": 0}
    lock = threading.Lock()
    next_i = [0]

    def worker() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            while True:
                with lock:
                    i = next_i[0]
                    next_i[0] += 1
                if i >= len(payloads):
                    return
                r = c.post("/hazards", json=payloads[i])
                with lock:
                    if r.status_code == 201:
                        counts["created"] += 1
                    elif r.status_code == 200:
                        counts["linked"] += int(r.json()["linked"])
                    else:
                        counts["errors"] += 1
                        if counts["errors"] <= 3:
                            print("error", r.status_code, r.text[:200])

    t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    counts["seconds"] = time.perf_counter() - t
    return counts


def through_library(
    database_url: str, units: Any, payloads: list[dict[str, Any]]
) -> dict[str, Any]:
    counts: dict[str, Any] = {"created": 0, "linked": 0}
    with Ledger.open(database_url, units=units) as led:
        t = time.perf_counter()
        for p in payloads:
            try:
                r = led.report(
                    p["geometry"],
                    category=p["category"],
                    description=p["description"],
                    reported_at=p["reported_at"],
                    external_id=p["external_id"],
                )
            except ValidationError:  # outside the served area, say: refused as by the API
                counts["refused"] = counts.get("refused", 0) + 1
                continue
            counts["created"] += int(r.created)
            counts["linked"] += int(r.linked)
        counts["seconds"] = time.perf_counter() - t
    return counts


def through_batch(database_url: str, units: Any, payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """The same rows through ``Ledger.report_many``: one transaction, one vectorised
    assignment (what the server's import of ``hazards.parquet`` uses)."""
    keys = ("geometry", "category", "description", "reported_at", "external_id")
    with Ledger.open(database_url, units=units) as led:
        t = time.perf_counter()
        batch = led.report_many([{k: p[k] for k in keys} for p in payloads], skip_invalid=True)
        seconds = time.perf_counter() - t
    linked = sum(1 for r in batch.results if r is not None and r.linked)
    return {
        "created": batch.created,
        "linked": linked,
        "refused": len(batch.errors),
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="Only the first N reports")
    ap.add_argument("--clients", type=int, default=8, help="Parallel API clients")
    ap.add_argument("--database-url", default=None, help="Default: SQLite in a temp folder")
    ap.add_argument(
        "--library-only", action="store_true", help="No server: Ledger.report vs report_many"
    )
    args = ap.parse_args()
    raw = load_reports(args.limit)
    payloads = bodies(raw)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t = time.perf_counter()
        units = tu.build_units(tu.read_network(SHARED / "osm" / "boston.osm.pbf"))
        tu.write_table(units, data / "units.parquet")
        print(f"{len(units):,} units from boston.osm.pbf in {time.perf_counter() - t:.1f} s")
        api_url = args.database_url or f"sqlite:///{data / 'api.sqlite'}"
        if not args.library_only:
            proc, url = start_server(data, api_url)
            try:
                api = through_api(url, payloads, args.clients)
                listed = httpx.get(f"{url}/hazards", params={"limit": 1}).json()["numberMatched"]
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
        lib = through_library(f"sqlite:///{data / 'lib.sqlite'}", units, payloads)
        many = through_batch(f"sqlite:///{data / 'batch.sqlite'}", units, payloads)
    n = len(payloads)
    print(f"{n:,} Boston reports")
    print(
        f"library Ledger.report_many (one batch, SQLite): {many['seconds']:.1f} s, "
        f"{n / many['seconds']:.0f} reports/s; {many['created']:,} opened, "
        f"{many['linked']:,} linked, {many['refused']:,} refused; "
        f"{lib['seconds'] / many['seconds']:.1f}x one Ledger.report per row "
        f"({lib['seconds']:.1f} s; {lib['created']:,} opened, {lib['linked']:,} linked, "
        f"{lib.get('refused', 0):,} refused)"
    )
    if args.library_only:
        return
    api_rate = n / api["seconds"]
    lib_rate = n / lib["seconds"]
    backend = "PostgreSQL" if api_url.startswith("postgres") else "SQLite"
    print(
        f"API ({backend}, {args.clients} clients): {api['seconds']:.1f} s, "
        f"{api_rate:.0f} reports/s; "
        f"{api['created']:,} hazards opened, {api['linked']:,} reports linked as duplicates, "
        f"{api['errors']} errors; {listed:,} hazards listed"
    )
    print(
        f"peer: library Ledger.report in one process (SQLite, no HTTP): {lib['seconds']:.1f} s, "
        f"{lib_rate:.0f} reports/s; {lib['created']:,} opened, {lib['linked']:,} linked"
    )
    print(f"ratio API / library: {api_rate / lib_rate:.2f}")


if __name__ == "__main__":
    main()
