"""The notebooks run top to bottom, keep small outputs, and agree with the command line.

Each notebook is executed with nbclient in a kernel running this interpreter (the project's
venv). Files they write go to a temporary folder (``$TRAFFICUNIT_NOTEBOOK_OUT``). With
``TRAFFICUNIT_NOTEBOOK_SAMPLE=1`` they use the generated sample even when ``../shared/data`` is
present, so the path a fresh machine without the real data takes is tested too. The executions
the collected tests read start together (``executions``), each in its own kernel process, so
they run in parallel rather than one after another; the tests share one pytest-xdist worker
(``xdist_group``, ``--dist loadgroup`` in the Makefile) so that no notebook runs twice.
``make test`` runs each notebook once (on the real data when present); ``make test-slow``
runs the quickstart and time notebooks on the generated sample (slow families).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SHARED = ROOT.parent / "shared" / "data"
CITY_CRASHES = SHARED / "crashes" / "helsinki-city-2000-2022.csv"
LEVELS = ("red", "orange", "yellow", "blue")
#: Seconds allowed for one cell; a whole notebook takes 10-40 s on a busy 2-core machine.
CELL_TIMEOUT = 240
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: The executions the tests read, by test: (notebook, on the generated sample).
RUNS = {
    "test_quickstart_matches_the_cli": ("01-quickstart.ipynb", False),
    "test_quickstart_on_the_generated_sample_matches_demo": ("01-quickstart.ipynb", True),
    "test_hazard_engineer_notebook": ("02-hazard-engineer.ipynb", False),
    "test_time_and_before_after_notebook": ("03-time-and-before-after.ipynb", False),
    "test_time_notebook_runs_on_the_generated_sample": ("03-time-and-before-after.ipynb", True),
}
Run = tuple[str, bool]

pytestmark = pytest.mark.xdist_group("notebooks")


def _execute_module() -> Any:
    spec = importlib.util.spec_from_file_location("tu_notebook_execute", NOTEBOOKS / "execute.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


execute_nb = _execute_module()


def run(name: str, out_dir: Path, *, sample: bool = False) -> tuple[Any, str]:
    """Execute a notebook; return it (maps not slimmed) and all its text outputs joined."""
    env = {"TRAFFICUNIT_NOTEBOOK_SAMPLE": "1" if sample else "0"}
    for attempt in range(3):
        try:
            nb, seconds = execute_nb.execute(
                NOTEBOOKS / name, out_dir=out_dir, env=env, timeout=CELL_TIMEOUT, slim_outputs=False
            )
            break
        except RuntimeError as exc:
            # a kernel that died before it answered kernel_info never ran a cell: kernels
            # started at once can race for their ports (jupyter_client); start it again
            if "before replying to kernel_info" not in str(exc) or attempt == 2:
                raise
            print(f"{name}: the kernel died while starting ({exc}); starting another")
    print(f"{name} ({'sample' if sample else 'default data'}): {seconds:.1f} s")
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out["text"])
            elif "text/plain" in out.get("data", {}):
                texts.append(out["data"]["text/plain"])
    return nb, "\n".join(texts)


@pytest.fixture(scope="session")
def executions(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Run, tuple[Future[tuple[Any, str]], Path]]]:
    """Every run a collected test reads, all started at once; each with its output folder."""
    here = Path(__file__)
    wanted = sorted(
        {
            RUNS[name]
            for item in request.session.items
            if item.path == here and (name := getattr(item, "originalname", "")) in RUNS
        }
    )
    with ThreadPoolExecutor(max_workers=max(len(wanted), 1), thread_name_prefix="nb") as pool:
        started = {}
        for name, sample in wanted:
            out = tmp_path_factory.mktemp(f"{name[:2]}-{'sample' if sample else 'default'}")
            started[name, sample] = (pool.submit(run, name, out, sample=sample), out)
        yield started


def executed(
    executions: dict[Run, tuple[Future[tuple[Any, str]], Path]], name: str, *, sample: bool = False
) -> tuple[Any, str, Path]:
    """Wait for a started run: the notebook, its text outputs and its output folder."""
    future, out = executions[name, sample]
    nb, text = future.result()
    return nb, text, out


def map_outputs(nb: Any) -> list[str]:
    """The ``<iframe srcdoc>`` HTML of every interactive map the notebook displayed."""
    return [
        out["data"]["text/html"]
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("metadata", {}).get("text/html", {}).get(execute_nb.MAP_KEY)
    ]


def render_offline(iframe_html: str) -> dict[str, Any]:
    """Show a map output in headless chromium with every http(s) request refused.

    Returns the features MapLibre rendered, their colours, the requests tried and any errors;
    skips the calling test when chromium or Playwright is absent.
    """
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium); CI installs it")
    playwright = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    errors: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--ignore-gpu-blocklist",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 700})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.route("http*://**", lambda route: route.abort())
            page.set_content(f"<!doctype html><html><body>{iframe_html}</body></html>")
            frame = next(f for f in page.frames if f != page.main_frame)
            frame.wait_for_function("window.offlineMapReady === true", timeout=60_000)
            colours = frame.evaluate(
                "[...new Set(offlineMap.queryRenderedFeatures().map(f => f.properties._c))]"
            )
            n = frame.evaluate("offlineMap.queryRenderedFeatures().length")
        finally:
            browser.close()
    web = [u for u in requests if u.startswith(("http:", "https:"))]
    return {"features": n, "colours": set(colours), "web_requests": web, "errors": errors}


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def cli(args: list[str]) -> str:
    from typer.testing import CliRunner

    from trafficunit.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def parse_units(out: str) -> dict[str, int]:
    m = re.search(r"([\d,]+) units: ([\d,]+) segments .*?, ([\d,]+) intersections", out)
    assert m, out
    return {"units": _num(m[1]), "segments": _num(m[2]), "intersections": _num(m[3])}


def parse_join(out: str) -> dict[str, int]:
    m = re.search(r"matched ([\d,]+) of ([\d,]+) events", out)
    assert m, out
    return {"matched": _num(m[1]), "events": _num(m[2])}


def parse_risk(out: str) -> dict[str, Any]:
    """Rows of the 'risk levels' table and the black-spot counts, as printed."""
    row = re.compile(
        r"^\s*(red|orange|yellow|blue)\s*│\s*([\d,]+)\s*│\s*[\d.]+\s*│\s*[\d.]+\s*│"
        r"\s*([\d,]+)\s*│\s*([\d,]+)\s*│",
        re.M,
    )
    rows = {m[1]: (_num(m[2]), _num(m[3]), _num(m[4])) for m in row.finditer(out)}
    assert set(rows) == set(LEVELS), out
    spots = re.search(r"black spots \(.*?\): (\d+) points,\s+(\d+) sections", out, re.S)
    assert spots, out
    return {
        "level_segments": {lv: rows[lv][0] for lv in LEVELS},
        "level_intersections": {lv: rows[lv][1] for lv in LEVELS},
        "level_accidents": {lv: rows[lv][2] for lv in LEVELS},
        "black_spot_points": int(spots[1]),
        "black_spot_sections": int(spots[2]),
    }


def parse_demo(out: str) -> dict[str, Any]:
    def count(label: str) -> int:
        m = re.search(rf"^\s*{label}\s*│\s*([\d,]+)", out, re.M)
        assert m, (label, out)
        return _num(m[1])

    return {
        "units": count("units"),
        "accidents": count("accidents"),
        "black_spots": count("black spots"),
        "levels": {lv: count(f"{lv} units") for lv in LEVELS},
    }


@pytest.mark.slow(family="quickstart notebook")
def test_quickstart_matches_the_cli(executions: Any, tmp_path: Path) -> None:
    """Units, accidents matched, colours and black spots equal what the CLI prints."""
    nb, text, nb_out = executed(executions, "01-quickstart.ipynb")
    key = json.loads((nb_out / "01-quickstart" / "key-figures.json").read_text())
    if not CITY_CRASHES.exists():
        pytest.skip(f"{CITY_CRASHES} absent: the quickstart used the generated sample")
    assert key["data"] == "real"
    assert "REAL data: helsinki-city-2000-2022.csv" in text
    work = tmp_path / "cli"
    work.mkdir()
    u, j, r, s = (
        work / n for n in ("units.parquet", "joined.parquet", "risk.parquet", "s.parquet")
    )
    printed = parse_units(cli(["units", key["network"], "-o", str(u), "-q"]))
    printed |= parse_join(
        cli(["join", str(u), key["accidents_file"], "--preset", key["preset"], "-o", str(j), "-q"])
    )
    printed |= parse_risk(cli(["risk", str(u), str(j), "-o", str(r), "--black-spots", str(s)]))
    assert {k: key[k] for k in printed} == printed
    assert sum(key["levels"].values()) == key["units"]
    # the real data: the centre's units and the city's accidents (README of shared/data)
    assert key["units"] > 500 and 4000 < key["matched"] < 5500 and key["events"] > 50_000
    assert all(key["levels"][lv] > 0 for lv in LEVELS)
    # the exports an analyst opens elsewhere
    out = nb_out / "01-quickstart"
    for name in ("risk.gpkg", "accidents.gpkg", "black_spots.gpkg", "risk.pmtiles"):
        assert (out / name).stat().st_size > 10_000, name
    import trafficunit as tu

    gpkg = tu.read_table(out / "risk.gpkg")
    assert gpkg["level"].value_counts().to_dict() == {k: v for k, v in key["levels"].items() if v}
    # the interactive risk map draws every level's colour with the network cut off
    maps = map_outputs(nb)
    assert len(maps) == 2
    shown = render_offline(maps[1])
    assert shown["web_requests"] == [] and shown["errors"] == []
    assert shown["features"] > 300
    assert {"#d7191c", "#fdae61", "#2c7bb6"} <= shown["colours"]


@pytest.mark.slow(family="quickstart notebook")
def test_quickstart_on_the_generated_sample_matches_demo(executions: Any, tmp_path: Path) -> None:
    """Without real data the quickstart says so and matches `trafficunit demo`."""
    nb, text, nb_out = executed(executions, "01-quickstart.ipynb", sample=True)
    key = json.loads((nb_out / "01-quickstart" / "key-figures.json").read_text())
    assert key["data"] == "generated"
    assert "GENERATED sample (not real data)" in text
    demo = parse_demo(cli(["demo", "--no-serve", "-o", str(tmp_path / "demo")]))
    assert demo["units"] == key["units"]
    assert demo["accidents"] == key["events"]
    assert demo["levels"] == key["levels"]
    assert demo["black_spots"] == key["black_spot_points"] + key["black_spot_sections"]


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_hazard_engineer_notebook(executions: Any) -> None:
    """The server starts, the lifecycle rules hold over HTTP, KPIs come back, the server stops."""
    nb, text, _ = executed(executions, "02-hazard-engineer.ipynb")
    assert "with the old ETag: 412" in text  # stale versions change nothing
    assert "an engineer may not accept: 403" in text  # roles
    assert re.search(r"closed: 200 closed", text)
    assert re.search(r"linked=True", text)  # a repeat report joins the open hazard
    assert "'escalated': ['H" in text  # the overdue sweep listed a hazard
    # the live loop: ingest (idempotent), the level moves at once, an alert, dispatch, hazard
    assert "stored 3, duplicates 0, rejected 0" in text and "posted again: 3 duplicates" in text
    assert re.search(r": blue -> (yellow|orange|red), crashes \d+ -> \d+", text)
    assert "cluster-rear-end: count 3 >= 3 within 30d" in text
    assert re.search(r"dispatched to road team 3; hazard H\d+ opened", text)
    assert "level now: red" in text or "level now: orange" in text
    m = re.search(r"server up at http://127\.0\.0\.1:(\d+)", text)
    assert m and "server stopped" in text
    assert _port_closed(int(m[1]))
    # section 7: the tree, the KPIs against targets, the review list, road chiefs and zones
    assert "admin: city 1 > district 4 > street 16 > community 32" in text
    m = re.search(r"districts sum to the city: (\{.*\})", text)
    assert m, text
    sums = ast.literal_eval(m[1])  # the notebook's printed dict of tuples
    assert all(a == b for a, b in sums.values()) and sums["investigated"][0] == 12
    targets = [
        c for c in nb.cells if c.cell_type == "code" and "investigation_rate_met" in c.source
    ]
    table = targets[0].outputs[-1]["data"]["text/plain"]
    assert all(z in table for z in ("GEN-D1", "GEN-D4", "health_rank", "investigation_rate_target"))
    assert re.search(
        r"\d+ fatal accidents to review; \S+ confirmed by a supervisor: complete=True", text
    )
    review = [c for c in nb.cells if c.cell_type == "code" and '"/reviews"' in c.source][0]
    assert "deep_investigation" in review.outputs[-1]["data"]["text/plain"]
    assert re.search(
        r"RC\d+ appointed to grid GENG-2: its \d+ segment units carry \{'Grid 2 road chief'\}", text
    )
    assert re.search(r"a report in grid GENG-2 \(H\d+\) reaches Grid 2 road chief", text)
    m = re.search(r"hazards per district \(GET /hazards\?tree=admin&zone=CODE\): (\{.*\})", text)
    assert m and sum(ast.literal_eval(m[1]).values()) > 0
    kpis = [c for c in nb.cells if c.cell_type == "code" and '"/kpis"' in c.source][0]
    table = kpis.outputs[-1]["data"]["text/plain"]
    for zone in ("NW", "NE", "SW", "SE"):
        assert zone in table


@pytest.mark.slow(family="time notebook")
def test_time_and_before_after_notebook(executions: Any) -> None:
    nb, text, _ = executed(executions, "03-time-and-before-after.ipynb")
    assert re.search(r"busiest hour: \w{3} \d\d:00", text)
    m = re.search(r"theta = ([\d.]+) ± ([\d.]+) \(all other units: ([\d.]+)\)", text)
    assert m, text
    theta, se, others = (float(v) for v in m.groups())
    assert 0 < theta < 5 and se > 0 and 0 < others < 5
    if (SHARED / "crashes" / "helsinki-fta-2011-2016.csv").exists():
        assert "REAL data: helsinki-fta-2011-2016.csv" in text
        m = re.search(r"study period 2014–2016: (\d+) accidents on units", text)
        assert m and 450 < int(m[1]) < 650  # README: 523 of the table within 20 m of a road


@pytest.mark.slow(family="time notebook")
def test_time_notebook_runs_on_the_generated_sample(executions: Any) -> None:
    nb, text, _ = executed(executions, "03-time-and-before-after.ipynb", sample=True)
    assert "GENERATED sample (not real data): 1,500 accidents" in text
    assert "study period 2016–2018" in text


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_are_executed_and_small(path: Path) -> None:
    """Stored with outputs (GitHub shows them), without errors, widget state or big files."""
    nb = nbformat.read(path, as_version=4)
    assert path.stat().st_size < 1_000_000
    assert "widgets" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "run notebooks/execute.py"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if execute_nb.WIDGET_MIME in o.get("data", {})]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # static figures
    assert not any(execute_nb.MAP_KEY in json.dumps(o.get("metadata", {})) for o in outputs)
    assert max(len(json.dumps(o)) for o in outputs) < 300_000
