"""The web map in a real headless browser (Debian chromium driven by Playwright).

The demo data folder is built from the embedded Helsinki network and the generated sample,
``trafficunit serve`` serves it as ``make demo`` does, and chromium (SwiftShader WebGL) loads
``/``: tiles must arrive, units must render, a click must open the unit popup, and the night
filter must switch accidents to the live layer. The screenshot is kept in
``test-artifacts/webmap.png``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ._serve import serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian chromium is not installed (apt-get install chromium); CI installs it",
)


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``trafficunit serve`` over the demo folder, as ``make demo`` runs it (Granian)."""
    from trafficunit.cli.serve import build_demo

    data = tmp_path_factory.mktemp("demo")
    build_demo(data)
    with serve(data) as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url: str) -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--ignore-gpu-blocklist",
            ],
        )
        pg = browser.new_page(viewport={"width": 1100, "height": 800})
        errors: list[str] = []

        def on_console(msg: Any) -> None:
            if msg.type == "error":
                errors.append(msg.text)

        pg.on("console", on_console)
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.console_errors = errors
        yield pg
        browser.close()


def _open(page: Any, server_url: str) -> None:
    """Load the map unless this page shows it already (tests may run alone or in any order)."""
    if not page.url.startswith(server_url):
        page.goto(f"{server_url}/")
    _wait_idle(page)


def _wait_idle(page: Any) -> None:
    page.wait_for_function(
        "() => window.trafficunitMap && window.trafficunitMap.loaded() "
        "&& window.trafficunitMap.areTilesLoaded()",
        timeout=30_000,
    )


def test_map_loads_tiles_and_renders_units(page: Any, server_url: str) -> None:
    tile_responses: list[int] = []

    def on_response(r: Any) -> None:
        if "/tiles/risk/" in r.url and r.url.endswith(".mvt"):
            tile_responses.append(r.status)

    page.on("response", on_response)
    page.goto(f"{server_url}/")
    _wait_idle(page)
    assert page.evaluate("window.trafficunit.tilesLoaded") > 0
    assert tile_responses and set(tile_responses) <= {200, 204}
    assert 200 in tile_responses
    n_units = page.evaluate(
        "window.trafficunitMap.queryRenderedFeatures({layers: ['units-segments']}).length"
    )
    assert n_units > 50
    levels = set(
        page.evaluate(
            "[...new Set(window.trafficunitMap.queryRenderedFeatures("
            "{layers: ['units-segments', 'units-intersections']}).map(f => f.properties.level))]"
        )
    )
    assert {"red", "blue"} <= levels
    legend = page.inner_text("#legend")
    assert "red" in legend and "percentile" in legend
    assert page.is_visible("#sample-note")  # generated data says so
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "webmap.png"
    page.screenshot(path=str(shot))
    # the picture shows the level colours: count pixels close to red #d7191c and blue #2c7bb6
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    near = lambda rgb: int((np.abs(image - np.array(rgb)).sum(axis=2) < 40).sum())  # noqa: E731
    assert near((0xD7, 0x19, 0x1C)) > 200, "no red units drawn"
    assert near((0x2C, 0x7B, 0xB6)) > 2000, "no blue units drawn"
    assert page.console_errors == []
    assert page.evaluate("window.trafficunit.errors") == []


def test_click_on_a_unit_opens_its_popup(page: Any, server_url: str) -> None:
    _open(page, server_url)
    point = page.evaluate(
        """() => {
          const m = window.trafficunitMap;
          const fs = m.queryRenderedFeatures({layers: ['units-intersections']});
          const f = fs.find(f => f.properties.level === 'red') || fs[0];
          const p = m.project(f.geometry.coordinates);
          return {x: p.x, y: p.y, id: f.properties.unit_id};
        }"""
    )
    box = page.query_selector("#map canvas").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    popup = page.wait_for_selector(".maplibregl-popup-content", timeout=10_000)
    page.wait_for_function(
        "() => /accidents/.test(document.querySelector('.maplibregl-popup-content').innerText)",
        timeout=10_000,
    )
    text = popup.inner_text()
    assert text.startswith(("I", "S"))
    assert "accidents" in text and "percentile" in text
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webmap-popup.png"))


def test_night_filter_switches_accidents_to_live_tiles(page: Any, server_url: str) -> None:
    _open(page, server_url)
    with page.expect_response(
        lambda r: "/tiles/live-accidents/" in r.url and "light=night" in r.url, timeout=15_000
    ) as resp:
        page.select_option("#filter-light", "night")
        page.click("#filter-apply")
    assert resp.value.status in (200, 204)
    _wait_idle(page)
    vis = page.evaluate(
        "['accidents', 'accidents-live'].map(id => "
        "window.trafficunitMap.getLayoutProperty(id, 'visibility'))"
    )
    assert vis == ["none", "visible"]
    hours = page.evaluate(
        "[...new Set(window.trafficunitMap.queryRenderedFeatures({layers: ['accidents-live']})"
        ".map(f => f.properties.hour))]"
    )
    assert hours and all(h >= 19 or h < 7 for h in hours)
    assert "light=night" in page.inner_text("#filter-status")
    page.click("#filter-clear")
    assert page.evaluate("window.trafficunitMap.getLayoutProperty('accidents', 'visibility')") in (
        "visible",
        None,
    )
