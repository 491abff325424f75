"""Property-based fuzzing of the whole HTTP API with schemathesis: counts cases, lists any 5xx.

Run on demand: ``.venv/bin/python benchmarks/fuzz_api.py [--examples 100]``.

Generates requests from the server's OpenAPI schema (valid and invalid ones, schemathesis
"all" mode) for every operation except the tiles (fuzzed in ``tests/test_server.py``), against
the app in process on a complete test data folder with jurisdictions configured, sending an
admin token so the write paths get past auth. Prints the number of cases tried per operation
and in total, and every response with a 5xx status; exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

ADMIN = "fuzz-admin-token-0123456789abcdefghij"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=100, help="Cases per operation")
    ap.add_argument("--database-url", default=None, help="Default: SQLite in a temp folder")
    args = ap.parse_args()

    import geopandas as gpd
    import schemathesis
    import shapely
    from _serverdata import DLON, LAT0, LON0, build_data_dir
    from fastapi.testclient import TestClient
    from hypothesis import HealthCheck, given, settings

    from trafficunit_server import Settings, create_app
    from trafficunit_server.settings import LedgerServerSettings

    headers = {"Authorization": f"Bearer {ADMIN}"}
    per_op: Counter[str] = Counter()
    status: Counter[int] = Counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = build_data_dir(Path(tmp) / "data")
        zones = gpd.GeoDataFrame(
            {"name": ["West", "East"]},
            geometry=[
                shapely.box(LON0 - 0.01, LAT0 - 0.01, LON0 + 2.25 * DLON, LAT0 + 0.02),
                shapely.box(LON0 + 2.25 * DLON, LAT0 - 0.01, LON0 + 0.03, LAT0 + 0.02),
            ],
            crs=4326,
        )
        zones.to_file(Path(tmp) / "zones.geojson", driver="GeoJSON")
        ledger = LedgerServerSettings(
            database_url=args.database_url or f"sqlite:///{tmp}/fuzz.sqlite",
            admin_token=ADMIN,
            jurisdictions=Path(tmp) / "zones.geojson",
            sweep_interval_s=0,
        )

        def run(op: Any, name: str) -> None:
            @settings(
                max_examples=args.examples,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=op.as_strategy())
            def check(case: Any) -> None:
                per_op[name] += 1
                try:
                    response = case.call(headers=headers)
                except Exception as exc:  # an exception escaping the app is a 500
                    failures.append(f"{name}: {type(exc).__name__}: {exc}")
                    status[500] += 1
                    return
                status[response.status_code] += 1
                if response.status_code >= 500:
                    failures.append(
                        f"{name}: {response.status_code} {response.text[:200]} "
                        f"({case.as_curl_command()})"
                    )

            check()

        with TestClient(create_app(Settings(data_dir=data, ledger=ledger))) as client:
            schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
            for result in schema.get_all_operations():
                op = result.ok()  # type: ignore[union-attr]
                if op.path.startswith("/tiles"):
                    continue
                run(op, f"{op.method.upper()} {op.path}")
    total = sum(per_op.values())
    for name, n in sorted(per_op.items()):
        print(f"{n:6d}  {name}")
    print(f"{total} cases over {len(per_op)} operations; statuses: {dict(sorted(status.items()))}")
    print(f"5xx responses: {len(failures)}")
    for f in failures[:20]:
        print("  ", f)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
