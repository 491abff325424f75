"""The web map's permits layer (server/static/permits.js) in Chromium, on the demo folder: an
active permit's route comes from the live tileset, a click on it shows the permit in the
panel, and its words follow the language (zh-CN / English)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import shapely
import shapely.geometry

from .test_webmap import (  # noqa: F401
    ADMIN,
    BROWSER_GROUP,
    _new_page,
    _open,
    _post,
    _set_lang,
    browser,
    server,
)

pytestmark = BROWSER_GROUP  # one worker for the browser modules (tests/test_webmap.py)


def _permit(url: str) -> dict[str, Any]:
    """An active permit between two segments of the demo network (admin token)."""
    with urllib.request.urlopen(f"{url}/map-config", timeout=30) as r:
        w, s, e, n = json.loads(r.read())["bounds"]
    with urllib.request.urlopen(f"{url}/units?bbox={w},{s},{e},{n}&limit=5000", timeout=30) as r:
        feats = json.loads(r.read())["features"]
    segs = [f for f in feats if f["properties"].get("kind") == "segment"]
    segs.sort(key=lambda f: -float(f["properties"].get("length_m") or 0))
    a, b = (shapely.geometry.shape(f["geometry"]).interpolate(0.5, True) for f in segs[:2])
    p = _post(
        f"{url}/permits", {"vehicle": "粤B54321", "from": [a.x, a.y], "to": [b.x, b.y]}, ADMIN
    )
    for to in ("approved", "active"):
        req = urllib.request.Request(
            f"{url}/permits/{p['id']}/transitions",
            data=json.dumps({"to": to}).encode(),
            headers={
                "Authorization": f"Bearer {ADMIN}",
                "Content-Type": "application/json",
                "If-Match": "*",
            },
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            p = json.loads(r.read())
    assert p["properties"]["state"] == "active"
    return p


def test_active_permit_route_is_drawn_and_clicked(browser: Any, server: dict[str, str]) -> None:  # noqa: F811
    url = server["url"]
    p = _permit(url)
    mid = shapely.geometry.shape(p["geometry"]).interpolate(0.5, normalized=True)
    page = _new_page(browser)
    try:
        _open(page, url)
        _set_lang(page, "en")
        page.wait_for_function("() => window.trafficunit.permitsReady === true", timeout=30_000)
        assert page.inner_text("label:has(#toggle-permits)").strip() == "route permits (通行许可)"
        page.evaluate(
            f"() => window.trafficunitMap.jumpTo({{center: [{mid.x}, {mid.y}], zoom: 16}})"
        )
        point = page.wait_for_function(
            """() => {
              const m = window.trafficunitMap;
              if (!m.areTilesLoaded()) return null;
              const fs = m.queryRenderedFeatures({layers: ['permits']});
              if (!fs.length) return null;
              const c = fs[0].geometry.type === 'LineString' ? fs[0].geometry.coordinates
                : fs[0].geometry.coordinates[0];
              const j = Math.max(1, Math.floor(c.length / 2));
              const q = [(c[j - 1][0] + c[j][0]) / 2, (c[j - 1][1] + c[j][1]) / 2];
              const px = m.project(q);
              return {x: px.x, y: px.y, id: fs[0].properties.event_id};
            }""",
            timeout=60_000,
        ).json_value()
        assert point["id"] == p["id"]
        box = page.query_selector("#map canvas").bounding_box()
        page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
        page.wait_for_function(
            "() => /粤B54321/.test(document.getElementById('permit-info').innerText)",
            timeout=30_000,
        )
        info = page.inner_text("#permit-info")
        assert "vehicle" in info and "active" in info and "any time" in info
        href = page.get_attribute("#permit-info a", "href")
        assert href == f"/permits/{p['id']}/page"
        _set_lang(page, "zh-CN")
        page.wait_for_function(
            "() => /车辆/.test(document.getElementById('permit-info').innerText)", timeout=30_000
        )
        info = page.inner_text("#permit-info")
        assert "生效中" in info and "全天" in info and "vehicle" not in info
        assert page.inner_text("label:has(#toggle-permits)").strip() == "通行许可"
        # the toggle hides the layer
        page.click("#toggle-permits")
        vis = page.evaluate(
            "() => window.trafficunitMap.getLayoutProperty('permits', 'visibility')"
        )
        assert vis == "none"
        assert page.console_errors == [] and page.external_requests == []
    finally:
        page.context.close()
