"""Run in a virtual environment with `pip install trafficunit` and no extras (see .ci/run).

The library's batch path works; the extras' features say which extra to install.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import trafficunit as tu
from trafficunit._optional import MissingExtraError

for module in ("fastapi", "granian", "psycopg", "distributed", "esda", "osmnx"):
    assert importlib.util.find_spec(module) is None, f"{module} is installed without its extra"

units = tu.build_units(tu.read_network(tu.sample_network_path()))
events = tu.sample.generate(units, n_accidents=500, n_hazards=20, n_workzones=5)
joined = tu.assign(units, events["accidents"])
scored = tu.score(units, joined)
assert scored["level"].notna().all()
try:
    tu.score(units, joined, hotspot_stats=True)
except MissingExtraError as exc:
    assert "trafficunit[hotspots]" in str(exc), exc
else:
    raise AssertionError("hot spots ran without esda")
done = subprocess.run(
    [sys.executable, "-m", "trafficunit.cli", "serve", ".", "--port", "18765"],
    capture_output=True,
    text=True,
)
assert done.returncode == 2 and "trafficunit[server]" in done.stderr, done
print(f"core install: {len(units)} units, {int(joined['unit_id'].notna().sum())} matched, ok")
