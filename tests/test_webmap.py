"""The web map in a real headless browser (Debian chromium driven by Playwright).

The demo data folder is built from the embedded Helsinki network and the generated sample,
``trafficunit serve`` serves it as ``make demo`` does, and chromium (SwiftShader WebGL) loads
``/`` with every request to another host aborted (the page must work offline): tiles must
arrive, units must render, a click must open the unit popup with why it has its colour, the
night filter must switch accidents to the live layer, switching to 中文 must change every
visible string, a black spot list item must fly to its spot, a signed-in engineer must report
and register a hazard by clicking, and a reporter must not see transitions it may not make.
Screenshots are kept in ``test-artifacts/`` (``docs/img/`` holds the README's copies).

The catalogue and legend tests at the top need no browser.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shapely
import shapely.geometry
from PIL import Image

from trafficunit_server import i18n
from trafficunit_server.style import legend, plain_legend

from ._serve import serve

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ADMIN = "test-admin-token-webmap-0123456789abcdef"
CATALOGUE = Path(__file__).resolve().parents[1] / "server" / "static" / "i18n"
#: The browser modules (this one, test_zones_webmap, test_permits_webmap) run on one
#: pytest-xdist worker (``--dist loadgroup``): each module's server and browser start once,
#: not once on each worker that takes some of its tests.
BROWSER_GROUP = pytest.mark.xdist_group("browser")
pytestmark = BROWSER_GROUP


# -- the message catalogue and the legend in plain words (no browser) ------------------------------


def _fields(msg: Any) -> set[str]:
    texts = msg.values() if isinstance(msg, dict) else [msg]
    return {f for text in texts for f in re.findall(r"\{(\w+)\}", text)}


def test_catalogues_have_the_same_keys_and_fields() -> None:
    en = json.loads((CATALOGUE / "en.json").read_text(encoding="utf-8"))
    zh = json.loads((CATALOGUE / "zh-CN.json").read_text(encoding="utf-8"))
    assert set(en) == set(zh)
    for key in en:
        assert _fields(en[key]) == _fields(zh[key]), key
        assert zh[key] != en[key] or key.startswith(("unit.", "map.")) or "{" in str(en[key]), key
    # domain words as the field uses them
    text = json.dumps(zh, ensure_ascii=False)
    for word in ("四色", "隐患", "占道施工", "事故多发点段", "挂牌督办"):
        assert word in text


def test_plural_and_language_negotiation() -> None:
    assert i18n.t("en", "count.hazards", n=1) == "1 hazard"
    assert i18n.t("en", "count.hazards", n=2) == "2 hazards"
    assert i18n.t("zh-CN", "count.hazards", n=1) == "1 处隐患"
    assert i18n.negotiate("zh-TW,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert i18n.negotiate("en-GB,en;q=0.9,zh-CN;q=0.5") == "en"
    assert i18n.negotiate("fi-FI") == "en"
    with pytest.raises(ValueError, match="unknown language"):
        i18n.catalogue("fr")


def _percentile_rule(edges: tuple[float, float, float]) -> dict[str, Any]:
    import trafficunit as tu
    from trafficunit.settings import RiskSettings

    units = tu.build_units(tu.read_network(tu.sample_network_path()))
    acc = tu.assign(units, tu.sample.generate(units, seed=7)["accidents"])
    risk = tu.score(units, acc, settings=RiskSettings(percentile_bands=edges))
    return dict(risk.attrs["rule"])


@pytest.fixture(scope="module")
def rule_50_80_90() -> dict[str, Any]:
    return _percentile_rule((50.0, 80.0, 90.0))


def test_legend_in_plain_words_follows_the_rule(rule_50_80_90: dict[str, Any]) -> None:
    en = plain_legend(rule_50_80_90, "en")
    texts = {lv["level"]: lv["text"] for lv in en["levels"]}
    # the shares come from the rule's bands (90 -> top 10 %, 80-90 -> 10 %, 50-80 -> 30 %)
    assert texts["red"].startswith("red: the 10 % of units of their kind and road class")
    assert "crashes above what is expected for such a road" in texts["red"]
    assert texts["orange"] == "orange: the next 10 %"
    assert texts["yellow"] == "yellow: the next 30 %"
    assert texts["blue"] == "blue: all other units"
    assert any("major hazard" in n and "by 2 levels" in n for n in en["notes"])
    zh = plain_legend(rule_50_80_90, "zh-CN")
    ztexts = {lv["level"]: lv["text"] for lv in zh["levels"]}
    assert ztexts["red"].startswith("红：") and "10%" in ztexts["red"]
    assert "超出同类道路预期的事故" in ztexts["red"]
    assert any("重大隐患升高 2 级" in n for n in zh["notes"])
    # the legend the page gets carries both languages and keeps the technical rule
    data = legend(rule_50_80_90, {"red": 3})
    assert set(data["plain"]) == {"en", "zh-CN"}
    assert data["rule"]["bands"][0]["label"].startswith("eb_excess percentile")


def test_legend_of_a_fixed_rule_names_its_thresholds() -> None:
    rule = {
        "scheme": "fixed",
        "measure": {"segment": "epdo", "intersection": "epdo"},
        "bands": [
            {"level": "red", "min": 100.0, "max": None},
            {"level": "orange", "min": 50.0, "max": 100.0},
            {"level": "yellow", "min": 10.0, "max": 50.0},
            {"level": "blue", "min": None, "max": 10.0},
        ],
        "population": ["kind"],
        "guards": {"min_crashes": 2, "positive_only": False},
    }
    texts = [lv["text"] for lv in plain_legend(rule, "en")["levels"]]
    assert texts[0] == "red: severity-weighted crashes of at least 100"
    assert texts[1] == "orange: severity-weighted crashes from 50 to under 100"
    assert texts[3] == "blue: severity-weighted crashes under 10"
    notes = plain_legend(rule, "en")["notes"]
    assert notes == ["A unit needs at least 2 crashes to rise above blue."]


# -- the served map in chromium ----------------------------------------------------------------


def _post(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read()))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_folder: Path) -> Iterator[dict[str, str]]:
    """``trafficunit serve`` over a copy of the demo folder (Granian), with role tokens for the
    tests; each module that uses it gets its own server and ledger."""
    data = tmp_path_factory.mktemp("demo") / "data"
    shutil.copytree(demo_folder, data)
    with serve(data, env={"TRAFFICUNIT_ADMIN_TOKEN": ADMIN}) as url:
        tokens = {"url": url, "data": str(data)}
        for role in ("engineer", "reporter"):
            tokens[role] = _post(f"{url}/tokens", {"role": role, "label": f"test {role}"}, ADMIN)[
                "token"
            ]
        yield tokens


@pytest.fixture(scope="module")
def server_url(server: dict[str, str]) -> str:
    return server["url"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium); CI installs it")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
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
        yield b
        b.close()


def _new_page(browser: Any, locale: str = "en-US") -> Any:
    """A page whose requests to any host but 127.0.0.1 are aborted and recorded."""
    ctx = browser.new_context(viewport={"width": 1100, "height": 800}, locale=locale)
    pg = ctx.new_page()
    errors: list[str] = []
    external: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("http://127.0.0.1:", "data:", "blob:")):
            r.continue_()
        else:
            external.append(url)
            r.abort()

    pg.route("**/*", route)
    pg.on("console", on_console)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.console_errors = errors
    pg.external_requests = external
    return pg


@pytest.fixture(scope="module")
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """One page for the module's tests; it closes before the server stops (it depends on the
    server), so no open connection of it (the alert stream) holds up the server's shutdown."""
    pg = _new_page(browser)
    yield pg
    assert pg.external_requests == [], "the map asked another host: it must work offline"
    pg.context.close()


def _open(page: Any, server_url: str) -> None:
    """Load the map unless this page shows it already (tests may run alone or in any order)."""
    if not page.url.startswith(server_url):
        page.goto(f"{server_url}/")
    _wait_idle(page)


def _wait_idle(page: Any) -> None:
    page.wait_for_function(
        "() => window.trafficunitMap && window.trafficunitMap.loaded() "
        "&& window.trafficunitMap.areTilesLoaded() && window.trafficunit.spotsLoaded > 0 "
        "&& window.trafficunit.hazardCount !== undefined",
        timeout=60_000,
    )


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path


def _set_lang(page: Any, lang: str) -> None:
    page.select_option("#lang", lang)
    page.wait_for_function(f"() => window.trafficunit.langApplied === '{lang}'", timeout=30_000)


def test_map_loads_tiles_and_renders_units(page: Any, server_url: str) -> None:
    tile_responses: list[int] = []

    def on_response(r: Any) -> None:
        if "/tiles/risk/" in r.url and r.url.endswith(".mvt"):
            tile_responses.append(r.status)

    page.on("response", on_response)
    page.goto(f"{server_url}/")
    _wait_idle(page)
    _set_lang(page, "en")
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
    legend_text = page.inner_text("#legend")
    # plain words from the rule, the technical rule one click away
    assert re.search(
        r"red: the 5 % of units of their kind and road class with the most", legend_text
    )
    assert "percentile" not in legend_text
    page.click("#legend-technical summary")
    assert "eb_excess percentile >= 95" in page.inner_text("#legend-rule")
    page.click("#legend-technical summary")
    assert page.is_visible("#sample-note")  # generated data says so
    # the map opened on the units' extent (no hash given), and the hash now keeps the view
    inside = page.evaluate(
        """() => fetch('/map-config').then(r => r.json()).then(c => {
          const b = window.trafficunitMap.getBounds(), u = c.bounds;
          const cx = (u[0] + u[2]) / 2, cy = (u[1] + u[3]) / 2;
          return b.contains([cx, cy]) && b.getWest() <= u[2] && b.getEast() >= u[0];
        })"""
    )
    assert inside
    page.wait_for_function("() => /^#\\d+(\\.\\d+)?\\/-?\\d/.test(location.hash)", timeout=30_000)
    shot = _shot(page, "webmap.png")
    # the picture shows the level colours: count pixels close to red #d7191c and blue #2c7bb6
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    near = lambda rgb: int((np.abs(image - np.array(rgb)).sum(axis=2) < 40).sum())  # noqa: E731
    assert near((0xD7, 0x19, 0x1C)) > 200, "no red units drawn"
    assert near((0x2C, 0x7B, 0xB6)) > 2000, "no blue units drawn"
    assert page.console_errors == []
    assert page.evaluate("window.trafficunit.errors") == []


def test_hash_reopens_the_same_view(browser: Any, server_url: str) -> None:
    pg = _new_page(browser)
    pg.goto(f"{server_url}/#17.5/60.1700/24.9420")
    _wait_idle(pg)
    view = pg.evaluate(
        "(() => { const m = window.trafficunitMap, c = m.getCenter();"
        " return [m.getZoom(), c.lat, c.lng]; })()"
    )
    assert view == pytest.approx([17.5, 60.17, 24.942], abs=1e-3)
    assert pg.external_requests == []
    pg.context.close()


def _click_unit(page: Any, level: str = "red") -> str:
    point = page.evaluate(
        f"""() => {{
          const m = window.trafficunitMap;
          const fs = m.queryRenderedFeatures({{layers: ['units-intersections']}});
          // a unit of that level with no hazard drawn on top (a hazard's popup would open)
          const free = (f) => m.queryRenderedFeatures(m.project(f.geometry.coordinates),
            {{layers: ['hazards-ledger']}}).length === 0;
          const f = fs.find(f => f.properties.level === '{level}' && free(f)) || fs.find(free);
          const p = m.project(f.geometry.coordinates);
          return {{x: p.x, y: p.y, id: f.properties.unit_id}};
        }}"""
    )
    box = page.query_selector("#map canvas").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_selector(".unit-popup", timeout=30_000)
    return str(point["id"])


def test_click_on_a_unit_says_why_it_has_its_colour(page: Any, server_url: str) -> None:
    _open(page, server_url)
    _set_lang(page, "en")
    _click_unit(page, "red")
    page.wait_for_function(
        "() => { const p = document.querySelector('.unit-popup');"
        " return p && /accident/.test(p.innerText) && p.querySelector('.why li'); }",
        timeout=30_000,
    )
    text = page.inner_text(".unit-popup")
    assert text.startswith("intersection")
    assert "Why this colour" in text
    # a red unit: its crash score ranks high, or open hazards raised it
    assert re.search(r"higher than that of \d+ % of units|Open hazards raise it to red", text)
    assert "Severity:" in text
    assert not re.search(r"\b1 (hazards|accidents|crashes)\b", text)
    assert not re.search(r"\d\.\d{3,}", text), "numbers are rounded for people"
    links = page.eval_on_selector_all(".unit-popup .links a", "as => as.map(a => a.href)")
    assert any("/accidents?unit_id=" in h for h in links)
    assert any("/hazards?unit_id=" in h for h in links)
    _shot(page, "webmap-popup.png")


def test_people_formats(page: Any, server_url: str) -> None:
    _open(page, server_url)
    _set_lang(page, "en")
    got = page.evaluate(
        "[32.18688, 50, 48.28032, 41.3, null].map(v => window.trafficunit.fmt.speed(v))"
    )
    assert got == ["20 mph", "50 km/h", "30 mph", "41 km/h", None]
    assert page.evaluate("window.trafficunit.fmt.t('count.hazards', {n: 1})") == "1 hazard"
    assert page.evaluate("window.trafficunit.fmt.t('count.hazards', {n: 3})") == "3 hazards"


def test_night_filter_switches_accidents_to_live_tiles(page: Any, server_url: str) -> None:
    _open(page, server_url)
    _set_lang(page, "en")
    with page.expect_response(
        lambda r: "/tiles/live-accidents/" in r.url and "light=night" in r.url, timeout=60_000
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
    assert "live tiles: night only" in page.inner_text("#filter-status")
    page.click("#filter-clear")
    assert page.evaluate("window.trafficunitMap.getLayoutProperty('accidents', 'visibility')") in (
        "visible",
        None,
    )


def _english_words() -> set[str]:
    """Words of the English catalogue that the Chinese one does not use (leftover markers)."""
    en = json.loads((CATALOGUE / "en.json").read_text(encoding="utf-8"))
    zh = json.loads((CATALOGUE / "zh-CN.json").read_text(encoding="utf-8"))
    words = lambda cat: {  # noqa: E731
        w.lower()
        for v in cat.values()
        for text in (v.values() if isinstance(v, dict) else [v])
        for w in re.findall(r"[A-Za-z]{3,}", re.sub(r"\{\w+\}", "", text))
    }
    return words(en) - words(zh)


_VISIBLE_TEXT = """() => {
  const skip = (el) => !el || el.closest('code, script, style, [lang]:not(html)');
  const shown = (el) => el.checkVisibility ? el.checkVisibility() : el.offsetParent !== null;
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (n.textContent.trim() && !skip(el) && shown(el)) out.push(n.textContent.trim());
  }
  document.querySelectorAll('[title], [aria-label], [placeholder]').forEach((el) => {
    if (skip(el) || !shown(el)) return;
    for (const a of ['title', 'aria-label', 'placeholder']) {
      if (el.getAttribute(a)) out.push(el.getAttribute(a));
    }
  });
  out.push(document.title);
  return out;
}"""


def test_switching_to_chinese_changes_every_visible_string(page: Any, server_url: str) -> None:
    _open(page, server_url)
    _set_lang(page, "zh-CN")
    page.click("#legend-technical summary")
    _click_unit(page, "red")
    page.wait_for_function(
        "() => document.querySelector('.unit-popup .why li') && "
        "/起事故/.test(document.querySelector('.unit-popup').innerText)",
        timeout=30_000,
    )
    texts = page.evaluate(_VISIBLE_TEXT)
    keys = set(json.loads((CATALOGUE / "en.json").read_text(encoding="utf-8")))
    english = _english_words()
    leftovers = sorted(
        {w for s in texts for w in re.findall(r"[A-Za-z]{3,}", s) if w.lower() in english}
    )
    untranslated = sorted({s for s in texts if s in keys or re.fullmatch(r"[a-z_]+\.[a-z_.-]+", s)})
    assert untranslated == [], f"catalogue keys shown as text: {untranslated}"
    assert leftovers == [], f"English left on the Chinese page: {leftovers}"
    # a black spot's popup too
    page.click("#blackspot-list li:first-child button")
    page.wait_for_selector(".spot-popup", timeout=30_000)
    texts = page.evaluate(_VISIBLE_TEXT)
    leftovers = sorted(
        {w for s in texts for w in re.findall(r"[A-Za-z]{3,}", s) if w.lower() in english}
    )
    assert leftovers == [], f"English left in the black spot popup: {leftovers}"
    assert "第 1 名" in page.inner_text(".spot-popup")
    body = page.inner_text("body")
    for word in ("四色", "隐患", "占道施工", "事故多发点段"):
        assert word in body
    # Chinese is drawn with a real CJK font, not as empty boxes (Debian: fonts-noto-cjk)
    tofu = page.evaluate(
        """() => {
          const c = document.createElement('canvas'); c.width = 80; c.height = 40;
          const g = c.getContext('2d');
          const draw = (s) => { g.clearRect(0, 0, 80, 40); g.font = '28px sans-serif';
            g.fillText(s, 4, 32); return Array.from(g.getImageData(0, 0, 80, 40).data).join(); };
          return draw('重大') === draw(String.fromCodePoint(0x10FFFD, 0x10FFFD));
        }"""
    )
    assert not tofu, "no CJK font: install fonts-noto-cjk"
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    _shot(page, "webmap-zh.png")
    # and back: the switch is kept for the next visit
    _set_lang(page, "en")
    assert "rank 1" in page.inner_text(".spot-popup")
    page.click("#legend-technical summary")
    assert page.console_errors == []


def test_language_comes_from_the_browser(browser: Any, server_url: str) -> None:
    pg = _new_page(browser, locale="zh-CN")
    pg.goto(f"{server_url}/")
    pg.wait_for_function("() => window.trafficunit.langApplied === 'zh-CN'", timeout=30_000)
    assert pg.inner_text("h1") == "交通单元风险"
    assert pg.input_value("#lang") == "zh-CN"
    pg.context.close()
    pg = _new_page(browser, locale="en-GB")
    pg.goto(f"{server_url}/")
    pg.wait_for_function("() => window.trafficunit.langApplied === 'en'", timeout=30_000)
    assert pg.inner_text("h1") == "Traffic-unit risk"
    pg.context.close()


def test_black_spot_list_flies_to_its_spot(page: Any, server_url: str) -> None:
    _open(page, server_url)
    _set_lang(page, "en")
    items = page.query_selector_all("#blackspot-list button")
    assert len(items) > 10
    assert page.inner_text("#blackspot-list li:first-child").startswith("rank 1")
    ranks = page.evaluate(
        "[...document.querySelectorAll('#blackspot-list [data-spot]')].map(b => b.dataset.spot)"
    )
    # the list is the library's worst-first order
    assert ranks[:3] == ["BS0001", "BS0002", "BS0003"] or len(set(ranks)) == len(ranks)
    # pick a spot away from the current view's centre, then fly to it
    page.evaluate("window.trafficunitMap.jumpTo({center: [24.90, 60.15], zoom: 13})")
    target = items[4]
    spot = target.get_attribute("data-spot")
    target.click()
    page.wait_for_function(
        """() => { const m = window.trafficunitMap, t = window.trafficunit.flyTarget;
          if (!t || m.isMoving()) return false;
          const c = m.getCenter();
          return Math.abs(c.lng - t[0]) < 0.002 && Math.abs(c.lat - t[1]) < 0.001
            && m.getZoom() > 14; }""",
        timeout=30_000,
    )
    popup = page.wait_for_selector(".spot-popup", timeout=30_000)
    assert "rank 5" in popup.inner_text()
    rendered = page.evaluate(
        "window.trafficunitMap.queryRenderedFeatures({layers: ['blackspots-points', "
        "'blackspots-sections']}).map(f => f.properties.spot_id)"
    )
    assert spot in rendered
    _wait_idle(page)
    _shot(page, "webmap-blackspot.png")


def _sign_in(page: Any, token: str, role_word: str) -> None:
    if page.is_visible("#signout"):
        page.click("#signout")
    page.fill("#token", token)
    page.click("#signin-button")
    page.wait_for_function(
        f"() => document.querySelector('#auth-status').innerText.includes('{role_word}')",
        timeout=30_000,
    )
    assert token not in page.url
    assert page.evaluate("sessionStorage.getItem('trafficunit.token')") == token


def test_engineer_reports_a_hazard_by_clicking_and_registers_it(
    page: Any, server: dict[str, str]
) -> None:
    _open(page, server["url"])
    _set_lang(page, "en")
    page.evaluate("window.trafficunitMap.jumpTo({center: [24.9445, 60.1700], zoom: 17})")
    _wait_idle(page)
    before = page.evaluate("window.trafficunit.hazardCount")
    _sign_in(page, server["engineer"], "engineer")
    page.click("#report-start")
    assert "click on the map" in page.inner_text("#work-status")
    box = page.query_selector("#map canvas").bounding_box()
    x, y = box["x"] + 700, box["y"] + 420
    page.mouse.click(x, y)
    page.wait_for_selector(".report-popup form", timeout=30_000)
    # the category picker is the catalogue's (GET /hazard-categories)
    page.wait_for_selector(".report-popup option[value='facility.signs']", state="attached")
    options = page.eval_on_selector_all(".report-popup option", "os => os.map(o => o.value)")
    assert "facility.signs" in options, options
    page.select_option(".report-popup select[name=category]", "facility.signs")
    page.fill(".report-popup textarea", "stop sign knocked down (browser test)")
    # a photo with the report: stored as the hazard's evidence, served back as it was sent
    png = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(png, format="PNG")
    photo = {"name": "sign.png", "mimeType": "image/png", "buffer": png.getvalue()}
    page.set_input_files(".report-popup input[name=photo]", files=[photo])
    page.click(".report-popup button[type=submit]")
    page.wait_for_function("() => window.trafficunit.lastAnswer", timeout=30_000)
    answer = page.evaluate("window.trafficunit.lastAnswer")
    assert answer["status"] == 201, answer
    hid = answer["body"]["properties"]["id"]
    page.wait_for_function("() => window.trafficunit.lastPhoto", timeout=30_000)
    stored = page.evaluate("window.trafficunit.lastPhoto")
    assert stored["status"] == 201, stored
    req = urllib.request.Request(
        server["url"] + stored["body"]["href"],
        headers={"Authorization": f"Bearer {server['engineer']}"},
    )
    with urllib.request.urlopen(req, timeout=30) as got:
        assert got.headers["content-type"] == "image/png"
        assert got.read() == png.getvalue()
    assert "photo attached" in page.inner_text("#work-status")
    assert hid in page.inner_text("#work-status") and "201" in page.inner_text("#work-status")
    page.wait_for_selector(f".hazard-popup >> text=Hazard {hid}", timeout=30_000)
    page.wait_for_function(
        "() => document.querySelector('.hazard-popup [data-action=register]')", timeout=30_000
    )
    # the new hazard is on the map, where it was clicked
    page.wait_for_function(f"() => window.trafficunit.hazardCount === {before + 1}", timeout=30_000)
    here = page.evaluate(
        f"window.trafficunitMap.queryRenderedFeatures([[{x - box['x'] - 6}, {y - box['y'] - 6}],"
        f" [{x - box['x'] + 6}, {y - box['y'] + 6}]], {{layers: ['hazards-ledger']}})"
        ".map(f => f.properties.id)"
    )
    assert hid in here
    # an engineer may register it, not accept or close it
    actions = page.eval_on_selector_all(
        ".hazard-popup [data-action]", "bs => bs.map(b => b.dataset.action)"
    )
    assert actions == ["register"]
    page.select_option(".hazard-popup .tr-grade", "major")
    page.click(".hazard-popup [data-action=register]")
    page.wait_for_function(
        "() => window.trafficunit.lastAnswer && window.trafficunit.lastAnswer.status === 200 "
        "&& document.querySelector('.hazard-popup .answer.ok')",
        timeout=30_000,
    )
    text = page.inner_text(".hazard-popup")
    assert "registered" in text and "major" in text and "server answered 200" in text
    assert page.eval_on_selector_all(
        ".hazard-popup [data-action]", "bs => bs.map(b => b.dataset.action)"
    ) == ["assign"]
    page.click(".hazard-popup [data-history]")
    page.wait_for_selector(".hazard-popup .history li:nth-child(2)", timeout=30_000)
    history = page.inner_text(".hazard-popup .history")
    assert "report" in history and "register → registered" in history
    _shot(page, "webmap-hazard.png")
    page.click("#signout")


def test_reporter_does_not_see_transitions_it_may_not_make(
    browser: Any, server: dict[str, str]
) -> None:
    pg = _new_page(browser)
    pg.goto(f"{server['url']}/")
    _wait_idle(pg)
    _sign_in(pg, server["reporter"], "reporter")
    assert pg.is_visible("#report-start")  # a reporter may report
    point = pg.evaluate(
        """() => { const m = window.trafficunitMap;
          const f = m.queryRenderedFeatures({layers: ['hazards-ledger']})
            .find(f => f.properties.state === 'reported' || f.properties.state === 'registered');
          const p = m.project(f.geometry.coordinates); return {x: p.x, y: p.y}; }"""
    )
    box = pg.query_selector("#map canvas").bounding_box()
    pg.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    pg.wait_for_selector(".hazard-popup table", timeout=30_000)
    assert pg.query_selector_all(".hazard-popup [data-action]") == []
    assert "no step your role may take now" in pg.inner_text(".hazard-popup")
    _shot(pg, "webmap-reporter.png")
    # signed out: no work controls at all
    pg.click("#signout")
    assert not pg.is_visible("#report-start")
    assert pg.evaluate("sessionStorage.getItem('trafficunit.token')") is None
    assert pg.external_requests == []
    pg.context.close()


def test_html_pages_are_hardened_and_answer_head(server_url: str) -> None:
    for path in ("/", "/docs", "/redoc"):
        for method in ("GET", "HEAD"):
            req = urllib.request.Request(f"{server_url}{path}", method=method)
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 200
                body = r.read()
                h = r.headers
            assert (body == b"") == (method == "HEAD"), (path, method)
            if method == "GET":  # the shared opening (static/head.html), once, then the page
                assert body.startswith(b'<!doctype html>\n<html lang="en">\n<head>\n')
                assert body.count(b'<meta charset="utf-8">') == 1
                assert body.count(b"<title") == 1 and body.rstrip().endswith(b"</html>")
            csp = h["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "script-src 'self';" in csp  # no inline scripts, no CDN
            assert "connect-src 'self'" in csp  # fetch and the alerts' EventSource
            assert h["X-Content-Type-Options"] == "nosniff"
            assert h["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize(
    ("path", "ready"),
    [
        ("/docs", "() => document.querySelectorAll('.opblock').length > 10"),
        (
            "/redoc",
            "() => /black spots/i.test(document.body.innerText) && "
            "document.querySelectorAll('[data-section-id]').length > 10",
        ),
    ],
)
def test_api_docs_work_offline(browser: Any, server_url: str, path: str, ready: str) -> None:
    pg = _new_page(browser)
    pg.goto(f"{server_url}{path}")
    pg.wait_for_function(ready, timeout=60_000)
    assert pg.external_requests == []
    assert pg.console_errors == []
    _shot(pg, f"api{path.replace('/', '-')}.png")
    pg.context.close()


def test_basemap_draws_streets_and_labels_under_the_units(page: Any, server_url: str) -> None:
    _open(page, server_url)
    _set_lang(page, "en")
    page.evaluate("window.trafficunitMap.jumpTo({center: [24.9440, 60.1685], zoom: 16})")
    _wait_idle(page)
    page.wait_for_function(
        "() => window.trafficunitMap.queryRenderedFeatures("
        "{layers: ['basemap-road-labels']}).length > 0",
        timeout=30_000,
    )
    counts = page.evaluate(
        """() => Object.fromEntries(['basemap-roads', 'basemap-paths', 'basemap-buildings',
          'basemap-road-labels', 'basemap-parks', 'units-segments'].map(id =>
          [id, window.trafficunitMap.queryRenderedFeatures({layers: [id]}).length]))"""
    )
    assert counts["basemap-roads"] > 20 and counts["basemap-paths"] > 5, counts
    assert counts["basemap-buildings"] > 10 and counts["basemap-road-labels"] > 3, counts
    assert counts["units-segments"] > 0
    labels = page.evaluate(
        "window.trafficunitMap.queryRenderedFeatures({layers: ['basemap-road-labels']})"
        ".map(f => f.properties.name)"
    )
    assert any(name and name.endswith("katu") for name in labels)  # Helsinki street names
    order = page.evaluate("window.trafficunitMap.getStyle().layers.map(l => l.id)")
    assert max(order.index(i) for i in order if i.startswith("basemap-")) < order.index(
        "units-casing"
    ), "the basemap is drawn under the risk layers"
    assert page.evaluate("window.trafficunit.errors") == []
    _shot(page, "webmap-basemap.png")


def test_an_external_basemap_style_replaces_the_built_one(
    browser: Any, server: dict[str, str]
) -> None:
    """``TRAFFICUNIT_BASEMAP_STYLE`` points the map at another style (here a second local
    server, as a tile host would be); it is drawn under the risk layers."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    ring = [[24.90, 60.14], [24.99, 60.14], [24.99, 60.19], [24.90, 60.19], [24.90, 60.14]]
    ext = {
        "version": 8,
        "sources": {
            "land": {
                "type": "geojson",
                "data": {"type": "Polygon", "coordinates": [ring]},
            }
        },
        "layers": [
            {"id": "background", "type": "background", "paint": {"background-color": "#dde"}},
            {"id": "land", "type": "fill", "source": "land", "paint": {"fill-color": "#efe"}},
        ],
    }
    body = json.dumps(ext).encode()

    class Style(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    host = ThreadingHTTPServer(("127.0.0.1", 0), Style)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    style_url = f"http://127.0.0.1:{host.server_address[1]}/style.json"
    try:
        with serve(Path(server["data"]), env={"TRAFFICUNIT_BASEMAP_STYLE": style_url}) as url:
            with urllib.request.urlopen(f"{url}/", timeout=30) as r:
                assert (
                    f"http://127.0.0.1:{host.server_address[1]}"
                    in r.headers["Content-Security-Policy"]
                )
            pg = _new_page(browser)
            pg.goto(f"{url}/")
            _wait_idle(pg)
            ids = pg.evaluate("window.trafficunitMap.getStyle().layers.map(l => l.id)")
            assert "basemap-ext-land" in ids and "basemap-roads" not in ids
            assert ids.index("basemap-ext-land") < ids.index("units-casing")
            n = pg.evaluate(
                "window.trafficunitMap.queryRenderedFeatures({layers: ['basemap-ext-land']}).length"
            )
            assert n > 0
            assert pg.evaluate("window.trafficunit.errors") == []
            assert pg.external_requests == []
            pg.context.close()
    finally:
        host.shutdown()


# -- the live loop on the map: alerts feed, level changes ------------------------------------------


def _leftovers(pg: Any) -> tuple[list[str], list[str]]:
    """(catalogue keys shown as text, English words left) on a Chinese page."""
    texts = pg.evaluate(_VISIBLE_TEXT)
    keys = set(json.loads((CATALOGUE / "en.json").read_text(encoding="utf-8")))
    english = _english_words()
    untranslated = sorted({s for s in texts if s in keys or re.fullmatch(r"[a-z_]+\.[a-z_.-]+", s)})
    left = sorted(
        {w for s in texts for w in re.findall(r"[A-Za-z]{3,}", s) if w.lower() in english}
    )
    return untranslated, left


def test_posted_accidents_raise_an_alert_in_the_feed_without_reload(
    browser: Any, server: dict[str, str]
) -> None:
    url = server["url"]
    pg = _new_page(browser)
    pg.goto(f"{url}/")
    _wait_idle(pg)
    _set_lang(pg, "en")
    pg.wait_for_function(
        "() => window.trafficunit.alertsLoaded && window.trafficunit.alertStream === 'open'",
        timeout=30_000,
    )
    assert "live" in pg.inner_text("#alerts-live")
    pg.evaluate("window.__sameDocument = true")
    before = pg.evaluate("window.trafficunit.alertCount")
    # a blue road segment, clicked at its middle (away from the intersections at its ends)
    target = pg.evaluate(
        """() => window.trafficunitMap.queryRenderedFeatures({layers: ['units-segments']})
          .filter((f) => f.properties.level === 'blue' && f.properties.length_m > 80)
          .map((f) => f.properties.unit_id)"""
    )
    assert target, "the demo has blue segments"
    with urllib.request.urlopen(f"{url}/units/{target[0]}", timeout=30) as r:
        geom = shapely.geometry.shape(json.loads(r.read())["geometry"])
    mid = shapely.line_interpolate_point(geom, 0.5, normalized=True)
    lon, lat = mid.x, mid.y
    feats = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {
                "event_id": f"webmap-live-{i}",
                "time": f"2026-11-0{i + 1}T08:15:00+00:00",
                "severity": "K",
                "collision_type": "rear_end",
            },
        }
        for i in range(4)
    ]
    fc = {"type": "FeatureCollection", "features": feats}
    got = _post(f"{url}/accidents", fc, server["engineer"])
    assert got["stored"] == 4, got
    uid = got["items"][0]["unit_id"]
    assert uid == target[0], got["items"]
    # the feed shows the new alert, pushed over server-sent events (the page was not reloaded)
    pg.wait_for_function(
        f"() => window.trafficunit.alertEvents > 0 && Array.from(document.querySelectorAll("
        f"'#alert-list li')).some((li) => /rear-end cluster/.test(li.innerText) && "
        f"li.innerText.includes('{uid}'))",
        timeout=60_000,
    )
    assert pg.evaluate("window.__sameDocument") is True
    assert pg.evaluate("window.trafficunit.alertCount") > before
    item = pg.locator("#alert-list li", has_text="rear-end cluster").first
    text = item.inner_text()
    assert "new" in text and "3 accidents" in text, text
    # click: the map flies to it and opens it; an engineer acknowledges and opens a hazard
    _sign_in(pg, server["engineer"], "engineer")
    item.locator("button").click()
    pg.wait_for_selector(".alert-popup", timeout=30_000)
    fly = pg.evaluate("window.trafficunit.flyTarget")
    assert abs(fly[0] - lon) < 0.01 and abs(fly[1] - lat) < 0.01
    pg.wait_for_function("() => !window.trafficunitMap.isMoving()", timeout=30_000)
    drawn = pg.evaluate(
        "(() => { const m = window.trafficunitMap;"
        " const p = m.project(window.trafficunit.flyTarget);"
        " return m.queryRenderedFeatures([[p.x - 8, p.y - 8], [p.x + 8, p.y + 8]],"
        " {layers: ['alerts']}).map((f) => f.properties.rule); })()"
    )
    assert "cluster-rear-end" in drawn
    popup = pg.inner_text(".alert-popup")
    assert uid in popup and "webmap-live-0" in popup
    steps = pg.eval_on_selector_all(
        ".alert-popup [data-alert-to]", "bs => bs.map(b => b.dataset.alertTo)"
    )
    assert steps == ["acknowledged", "dispatched"]  # resolving is a supervisor's
    hazards_before = pg.evaluate("window.trafficunit.hazardCount")
    pg.click(".alert-popup [data-alert-to=acknowledged]")
    pg.wait_for_function(
        "() => document.querySelector('.alert-popup .answer.ok') && "
        "window.trafficunit.lastAnswer.status === 200",
        timeout=30_000,
    )
    assert "acknowledged" in pg.inner_text(".alert-popup")
    pg.wait_for_function(
        "() => Array.from(document.querySelectorAll('#alert-list li.state-acknowledged'))"
        ".some((li) => /rear-end cluster/.test(li.innerText))",
        timeout=30_000,
    )
    pg.click(".alert-popup [data-alert-hazard]")
    pg.wait_for_function(
        "() => window.trafficunit.lastAnswer.status === 201 && "
        f"window.trafficunit.hazardCount === {hazards_before + 1}",
        timeout=30_000,
    )
    hid = pg.evaluate("window.trafficunit.lastAnswer.body.hazard_id")
    assert f"hazard investigation {hid} opened" in pg.inner_text(".alert-popup")
    assert pg.query_selector(".alert-popup [data-alert-hazard]") is None  # once only
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / "webmap-alerts.png"))
    # the unit's popup says when and why its level changed
    with urllib.request.urlopen(f"{url}/units/{uid}", timeout=30) as r:
        hist = json.loads(r.read())["level_history"]
    # newest first: the accidents raised it from blue; the hazard opened on it may raise it more
    assert hist and hist[-1]["from"] == "blue" and hist[-1]["reason"].startswith("accident"), hist
    for toggle in ("#toggle-alerts", "#toggle-hazards"):  # both are drawn on the unit
        pg.uncheck(toggle)
    pg.click(".maplibregl-popup-close-button")
    pg.wait_for_selector(".alert-popup", state="detached", timeout=30_000)
    pg.wait_for_function("() => window.trafficunitMap.areTilesLoaded()", timeout=30_000)
    pt = pg.evaluate(f"(() => window.trafficunitMap.project([{lon}, {lat}]))()")
    box = pg.query_selector("#map canvas").bounding_box()
    pg.mouse.click(box["x"] + pt["x"], box["y"] + pt["y"])
    pg.wait_for_selector(".unit-popup .level-history li", timeout=30_000)
    changes = pg.inner_text(".unit-popup .level-history")
    assert f"blue → {hist[-1]['to']}, after 4 accidents" in changes, changes
    assert hist[-1]["at"][:16].replace("T", " ") in changes
    if len(hist) > 1:
        assert "open hazards (general)" in changes, changes
    # all of it in Chinese: no key and no English left, with the field's words
    _set_lang(pg, "zh-CN")
    changes = pg.inner_text(".unit-popup .level-history")
    assert "四色等级变化" in changes and "因 4 起事故" in changes, changes
    body = pg.inner_text("body")
    assert "预警推送" in body and "追尾事故聚集" in body and "已确认" in body
    untranslated, left = _leftovers(pg)
    assert untranslated == [] and left == [], (untranslated, left)
    pg.locator("#alert-list li", has_text="追尾事故聚集").first.locator("button").click()
    pg.wait_for_selector(".alert-popup", timeout=30_000)
    untranslated, left = _leftovers(pg)
    assert untranslated == [] and left == [], (untranslated, left)
    assert pg.console_errors == [] and pg.external_requests == []
    pg.context.close()
