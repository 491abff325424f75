"""The web map's jurisdictions section (server/static/zones.js) in Chromium, on the demo folder
with its GENERATED zones: outlines coloured by the documented rule, a zone's KPIs against their
targets, both languages, no console error, no other host; a unit's popup names its road chief
appointed while the map is open."""

from __future__ import annotations

from typing import Any

from .test_webmap import (  # noqa: F401  (fixtures)
    BROWSER_GROUP,
    _click_unit,
    _open,
    _post,
    _set_lang,
    browser,
    page,
    server,
    server_url,
)

pytestmark = BROWSER_GROUP  # one worker for the browser modules (tests/test_webmap.py)


def test_zone_outlines_and_kpis_in_both_languages(page: Any, server_url: str) -> None:  # noqa: F811
    _open(page, server_url)
    _set_lang(page, "en")
    page.wait_for_function("() => window.trafficunit.zonesReady === true", timeout=60_000)
    assert page.is_visible("#zones")
    assert page.input_value("#zones-tree") == "admin"
    assert page.input_value("#zones-level") == "district"
    page.check("#toggle-zones")
    page.wait_for_function("() => (window.trafficunit.zonesLoaded || 0) > 0", timeout=60_000)
    n = page.evaluate(
        "() => window.trafficunitMap.getSource('tu-zones').serialize().data.features.length"
    )
    assert n == 4
    assert "GENERATED" in page.inner_text("#zones-note")
    # click the middle of the first district: its KPIs with targets and the health index
    lnglat = page.evaluate(
        """() => { const f = window.trafficunit.zones.zones.features[0];
                   const c = f.geometry.coordinates[0];
                   return [(c[0][0] + c[2][0]) / 2, (c[0][1] + c[2][1]) / 2]; }"""
    )
    # click only once the map is still and the zone fill is drawn under that point (the layer
    # is added a frame before it is rendered; a busy machine widens that gap)
    page.wait_for_function(
        """(ll) => { const m = window.trafficunitMap;
                     if (m.isMoving() || !m.loaded()) return false;
                     const p = m.project(ll);
                     const on = m.queryRenderedFeatures(p, { layers: ['tu-zones-fill'] });
                     return on.length > 0; }""",
        arg=lnglat,
        timeout=60_000,
    )
    point = page.evaluate(
        "(ll) => { const p = window.trafficunitMap.project(ll); return [p.x, p.y]; }", lnglat
    )
    page.mouse.click(point[0], point[1])
    page.wait_for_function("() => document.querySelectorAll('#zones-kpi tr').length === 7")
    text = page.inner_text("#zones-kpi")
    assert "Investigation rate" in text and "target 50 %" in text and "Health index" in text
    _set_lang(page, "zh-CN")
    page.wait_for_function("() => /排查率/.test(document.querySelector('#zones-kpi').innerText)")
    zh = page.inner_text("#zones")
    assert "辖区" in zh and "目标 50 %" in zh and "业务健康指数" in zh and "生成" in zh
    assert "Investigation" not in zh
    page.select_option("#zones-tree", "police")
    page.wait_for_function(
        "() => window.trafficunit.zones.tree === 'police' && window.trafficunitMap"
        ".getSource('tu-zones').serialize().data.level === 'brigade'",
        timeout=60_000,
    )
    _set_lang(page, "en")
    assert page.console_errors == []


def test_a_units_popup_names_its_road_chief_now(page: Any, server: dict[str, str]) -> None:  # noqa: F811
    url = server["url"]
    _open(page, url)
    _set_lang(page, "en")
    grids = ["GENG-1", "GENG-2", "GENG-3", "GENG-4"]  # every unit: the tiles were built before
    chief = {"name": "Grid chief Wang", "scope": "grid", "targets": grids, "body": "Roads office"}
    assert _post(f"{url}/road-chiefs", chief, server["engineer"])["id"].startswith("RC")
    _click_unit(page, "red")
    page.wait_for_function(
        "() => /Grid chief Wang/.test(document.querySelector('.unit-popup').innerText)",
        timeout=30_000,
    )
    assert "road chief\tGrid chief Wang · Roads office" in page.inner_text(".unit-popup")
    _set_lang(page, "zh-CN")
    page.wait_for_function(
        "() => /路长/.test(document.querySelector('.unit-popup').innerText)", timeout=30_000
    )
    assert "road chief" not in page.inner_text(".unit-popup")
    _set_lang(page, "en")
    assert page.console_errors == []
