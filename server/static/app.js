/* trafficunit web map: four-colour units over the basemap, black spots, "why this colour",
   hazard work (report, transitions, history), live accident filter; zh-CN / en from one
   message catalogue (/static/i18n/<lang>.json). No inline script, no external request. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const LANGS = ["en", "zh-CN"];
  const TOKEN_KEY = "trafficunit.token";
  const LANG_KEY = "trafficunit.lang";
  const TU = window.trafficunit = { tilesLoaded: 0, fmt: {}, popupShown: false, errors: [], lang: "en",
                                    messages: {}, role: null, lastAnswer: null };
  let map = null, cfg = {}, legendData = {}, categories = null, spots = [], spotWhy = {};
  let popup = null, rerender = null, reportMode = false;

  // ---- messages ----------------------------------------------------------------------------
  function t(key, params) {
    let msg = TU.messages[key];
    if (msg === undefined) return key;  // a missing key shows as itself: the tests look for it
    params = params || {};
    if (typeof msg === "object") msg = (params.n === 1 && msg.one !== undefined) ? msg.one : msg.other;
    return String(msg).replace(/\{(\w+)\}/g, (m, k) => (params[k] !== undefined ? params[k] : m));
  }
  function has(key) { return TU.messages[key] !== undefined; }
  function word(prefix, value) {  // a data code in words when the catalogue knows it
    if (value === null || value === undefined || value === "") return "";
    const key = `${prefix}.${String(value).replace(/ /g, "_")}`;
    return has(key) ? t(key) : String(value);
  }
  function num(v, digits) {
    return new Intl.NumberFormat(TU.lang, { maximumFractionDigits: digits || 0 }).format(v);
  }
  function pct(share) { return num(Math.round(share * 100)); }
  /** A speed limit as signed: whole km/h on a 5 grid, else a whole mph (32.18688 -> 20 mph). */
  function speed(kmh) {
    if (kmh === null || kmh === undefined || !isFinite(kmh)) return null;
    const k = Math.round(kmh);
    if (Math.abs(kmh - k) < 0.05 && k % 5 === 0) return t("unit.kmh", { n: k });
    const mph = kmh / 1.609344, m = Math.round(mph);
    if (Math.abs(mph - m) < 0.05) return t("unit.mph", { n: m });
    return t("unit.kmh", { n: k });
  }
  function length(m) {
    if (!isFinite(m) || m <= 0) return null;
    return m >= 1000 ? t("unit.km", { n: num(m / 1000, 1) }) : t("unit.m", { n: num(m) });
  }
  function level(lv) { return has(`level.${lv}`) ? t(`level.${lv}`) : t("level.none"); }
  function sevMix(sev) {
    return ["K", "A", "B", "C", "O"].filter((k) => sev[k] > 0)
      .map((k) => `${num(sev[k])} ${t("severity." + k)}`).join(TU.lang === "zh-CN" ? "，" : ", ");
  }

  Object.assign(TU.fmt, { t: (k, p) => t(k, p), speed: (v) => speed(v), length: (v) => length(v) });

  function pickLang() {
    const saved = localStorage.getItem(LANG_KEY);
    if (LANGS.includes(saved)) return saved;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      if (/^zh/i.test(l)) return "zh-CN";
      if (/^en/i.test(l)) return "en";
    }
    return "en";
  }
  const cache = {};
  function loadLang(lang) {
    if (!cache[lang]) cache[lang] = fetch(`/static/i18n/${lang}.json`).then((r) => r.json());
    return cache[lang];
  }
  function setLang(lang) {
    return loadLang(lang).then((m) => {
      TU.messages = m; TU.lang = lang;
      document.documentElement.lang = lang;
      $("lang").value = lang;
      localStorage.setItem(LANG_KEY, lang);
      translatePage();
      translateMapUi();
      labelLanguage();
      TU.langApplied = lang;
    });
  }
  function translatePage() {
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-aria]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nAria)));
    document.querySelectorAll("[data-i18n-title]").forEach((el) => el.setAttribute("title", t(el.dataset.i18nTitle)));
    renderLegend();
    renderSpotList();
    renderAlerts();
    renderAuth();
    filterStatus();
    if (rerender) rerender();
  }

  /** MapLibre's own words (control titles, scale units, popup close) from the catalogue. */
  function mapUi() {
    return { "NavigationControl.ZoomIn": t("map.zoom_in"), "NavigationControl.ZoomOut": t("map.zoom_out"),
             "NavigationControl.ResetBearing": t("map.reset_bearing"), "Popup.Close": t("map.close_popup"),
             "ScaleControl.Meters": t("map.meters"), "ScaleControl.Kilometers": t("map.kilometers"),
             "Map.Title": t("map.title") };
  }
  function translateMapUi() {
    if (!map) return;
    if (map._locale) Object.assign(map._locale, mapUi());  // read when MapLibre makes a string
    const set = (sel, key) => document.querySelectorAll(sel).forEach((el) => {
      el.setAttribute("title", t(key)); el.setAttribute("aria-label", t(key)); });
    set(".maplibregl-ctrl-zoom-in", "map.zoom_in");
    set(".maplibregl-ctrl-zoom-out", "map.zoom_out");
    set(".maplibregl-ctrl-compass", "map.reset_bearing");
    set(".maplibregl-popup-close-button", "map.close_popup");
    const canvas = map.getCanvas();
    canvas.setAttribute("aria-label", t("map.title"));
    document.querySelectorAll(".tu-attribution").forEach((el) => { el.textContent = t("links.attribution"); });
    map.triggerRepaint();
  }
  /** Basemap labels: OSM's name:zh on the Chinese page where the extract has it. */
  function labelLanguage() {
    if (!map || !map.isStyleLoaded()) return;
    const field = TU.lang === "zh-CN" ? ["coalesce", ["get", "name_zh"], ["get", "name"]] : ["get", "name"];
    ["basemap-road-labels", "basemap-place-labels"].forEach((id) => {
      if (map.getLayer(id)) map.setLayoutProperty(id, "text-field", field);
    });
  }
  /** An external basemap style (TRAFFICUNIT_BASEMAP_STYLE) under the risk layers. */
  function withExternalBasemap(style) {
    const url = cfg.basemap && cfg.basemap.style;
    if (!url) return Promise.resolve(style);
    return fetch(url).then((r) => r.json()).then((ext) => {
      const ours = style.layers.filter((l) => l.id !== "background" && !l.id.startsWith("basemap-"));
      const sources = Object.assign({}, ext.sources || {});
      Object.entries(style.sources).forEach(([k, v]) => { if (k !== "basemap") sources[k] = v; });
      const merged = Object.assign({}, style, { sources: sources,
        layers: (ext.layers || []).map((l) => Object.assign({}, l, { id: `basemap-ext-${l.id}` })).concat(ours) });
      delete merged.glyphs; delete merged.sprite;
      if (ext.glyphs) merged.glyphs = ext.glyphs;
      if (ext.sprite) merged.sprite = ext.sprite;
      return merged;
    }).catch((e) => { TU.errors.push(`external basemap style: ${e}`); return style; });
  }

  /** The attribution in the reader's language (the tiles' own string is English). */
  class Attribution {
    onAdd() {
      this.el = document.createElement("div");
      this.el.className = "maplibregl-ctrl maplibregl-ctrl-attrib tu-attribution";
      this.el.textContent = t("links.attribution");
      return this.el;
    }
    onRemove() { this.el.remove(); }
  }

  // ---- legend --------------------------------------------------------------------------------
  function renderLegend() {
    const legend = legendData;
    const plain = (legend.plain || {})[TU.lang] || { levels: [], notes: [] };
    const counts = {};
    (legend.levels || []).forEach((lv) => { counts[lv.level] = lv; });
    const ul = $("legend-levels");
    ul.innerHTML = "";
    plain.levels.forEach((lv) => {
      const c = counts[lv.level] || {};
      const li = document.createElement("li");
      li.innerHTML = `<span class="swatch" style="background:${esc(c.colour || "#ccc")}"></span>` +
        `<span>${esc(lv.text)}</span><span class="hint count">${esc(t("legend.units", { n: c.count || 0 }))}</span>`;
      ul.appendChild(li);
    });
    $("legend-notes").innerHTML = plain.notes.map((n) => `<li>${esc(n)}</li>`).join("") ||
      (plain.levels.length ? "" : `<li>${esc(t("legend.not_scored"))}</li>`);
    const rule = legend.rule || {};
    const rows = [];
    if (rule.scheme) rows.push(["rule.scheme", rule.scheme]);
    if (rule.measure) rows.push(["rule.measure", Object.entries(rule.measure).map(([k, v]) => `${v} (${k})`).join(", ")]);
    if (rule.population) rows.push(["rule.population", rule.population.join(" × ")]);
    (rule.bands || []).forEach((b) => rows.push([null, `${b.level}: ${b.label}`]));
    if (rule.guards) rows.push(["rule.min_crashes", `${rule.guards.min_crashes}` + (rule.guards.positive_only ? ", > 0" : "")]);
    if (rule.hazard_raise) rows.push(["rule.hazard_raise", Object.entries(rule.hazard_raise).map(([k, v]) => `${k} +${v}`).join(", ")]);
    if (rule.epdo_version) rows.push(["rule.epdo", rule.epdo_version]);
    if (rule.period) rows.push(["rule.period", rule.period.map((p) => String(p).slice(0, 10)).join(" – ")]);
    $("legend-rule").innerHTML = rows.map(([k, v]) => (k ? `<dt>${esc(t(k))}</dt>` : "") + `<dd><code>${esc(v)}</code></dd>`).join("");
    $("sample-note").hidden = !legend.generated_sample;
  }

  // ---- map -------------------------------------------------------------------------------------
  const initialHash = location.hash;
  Promise.all([fetch("/style.json").then((r) => r.json()), fetch("/map-config").then((r) => r.json()),
               setLang(pickLang())]).then(([style, config]) => {
    cfg = config;
    return withExternalBasemap(style);
  }).then((style) => {
    legendData = (style.metadata || {})["trafficunit:legend"] || {};
    renderLegend();
    const opts = { container: "map", style: style, hash: true, attributionControl: false, locale: mapUi(),
                   localIdeographFontFamily: "'Noto Sans CJK SC', 'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', 'Microsoft YaHei', sans-serif" };
    if (!initialHash && cfg.bounds) {
      opts.bounds = cfg.bounds;
      opts.fitBoundsOptions = { padding: { top: 30, bottom: 30, right: 30, left: Math.min(320, window.innerWidth / 3) } };
    } else if (!initialHash) { opts.center = [0, 0]; opts.zoom = 1; }
    map = new maplibregl.Map(opts);
    window.trafficunitMap = map;
    map.addControl(new maplibregl.NavigationControl(), "top-right");
    map.addControl(new maplibregl.ScaleControl(), "bottom-right");
    map.addControl(new Attribution(), "bottom-right");
    map.on("error", (e) => TU.errors.push(String(e.error && e.error.message)));
    map.on("sourcedata", (e) => { if (e.tile) TU.tilesLoaded += 1; });
    if (style.layers.some((l) => l.id.startsWith("basemap-"))) $("basemap-toggle").hidden = false;
    map.once("load", () => {
      labelLanguage();
      wireToggles();
      wireFilter();
      wireClicks();
      loadBlackSpots();
      loadLedgerHazards();
      restoreAuth();
      loadAlerts();
    });
  }).catch((e) => TU.errors.push(String(e)));
  $("lang").addEventListener("change", (e) => setLang(e.target.value));

  function setVisible(id, on) {
    if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
  }
  function liveActive() { return TU.liveQuery && TU.liveQuery.length > 0; }

  function wireToggles() {
    $("toggle-accidents").addEventListener("change", (e) => {
      setVisible("accidents", e.target.checked && !liveActive());
      setVisible("accidents-live", e.target.checked && liveActive());
    });
    $("toggle-hazards").addEventListener("change", (e) => {
      setVisible(map.getSource("ledger-hazards") ? "hazards-ledger" : "hazards", e.target.checked);
    });
    $("toggle-workzones").addEventListener("change", (e) => setVisible("workzones", e.target.checked));
    $("toggle-alerts").addEventListener("change", (e) => setVisible("alerts", e.target.checked));
    $("toggle-blackspots").addEventListener("change", (e) => {
      ["blackspots-sections", "blackspots-points"].forEach((id) => setVisible(id, e.target.checked));
    });
    $("toggle-basemap").addEventListener("change", (e) => {
      map.getStyle().layers.filter((l) => l.id.startsWith("basemap-")).forEach((l) => setVisible(l.id, e.target.checked));
    });
  }

  function filterStatus() {
    const el = $("filter-status");
    if (!el) return;
    if (!liveActive()) { el.textContent = t("filter.status_all"); return; }
    const parts = [];
    if ($("filter-from").value) parts.push(t("filter.part_from", { date: $("filter-from").value }));
    if ($("filter-to").value) parts.push(t("filter.part_to", { date: $("filter-to").value }));
    if ($("filter-light").value) parts.push(t(`filter.${$("filter-light").value}`));
    el.textContent = t("filter.status_live", { parts: parts.join(TU.lang === "zh-CN" ? "，" : ", ") });
  }

  function wireFilter() {
    const apply = () => {
      const q = new URLSearchParams();
      if ($("filter-from").value) q.set("from", $("filter-from").value);
      if ($("filter-to").value) q.set("to", $("filter-to").value);
      if ($("filter-light").value) q.set("light", $("filter-light").value);
      const qs = q.toString();
      TU.liveQuery = qs;
      const on = $("toggle-accidents").checked;
      const live = map.getSource("live-accidents");
      if (qs && live) {
        live.setTiles([`${location.origin}/tiles/live-accidents/{z}/{x}/{y}.mvt?${qs}`]);
        setVisible("accidents", false);
        setVisible("accidents-live", on);
      } else {
        TU.liveQuery = "";
        setVisible("accidents-live", false);
        setVisible("accidents", on);
      }
      filterStatus();
    };
    $("filter-apply").addEventListener("click", apply);
    $("filter-clear").addEventListener("click", () => {
      $("filter-from").value = ""; $("filter-to").value = ""; $("filter-light").value = "";
      apply();
    });
  }

  function showPopup(lngLat, render) {
    if (popup) popup.remove();
    popup = new maplibregl.Popup({ maxWidth: "360px" }).setLngLat(lngLat).addTo(map);
    rerender = () => { if (popup && popup.isOpen()) { popup.setHTML(render()); wirePopup(); translateMapUi(); } };
    popup.on("close", () => { if (popup && !popup.isOpen()) rerender = null; });
    rerender();
    TU.popupShown = true;
  }

  function wireClicks() {
    let selected = null;
    const unitLayers = ["units-segments", "units-intersections"].filter((id) => map.getLayer(id));
    const pointer = ["alerts", "hazards-ledger", "blackspots-points", "blackspots-sections", ...unitLayers];
    pointer.forEach((id) => {
      map.on("mouseenter", id, () => { if (!reportMode) map.getCanvas().style.cursor = "pointer"; });
      map.on("mouseleave", id, () => { if (!reportMode) map.getCanvas().style.cursor = ""; });
    });
    map.on("click", (e) => {
      if (reportMode) { openReport(e.lngLat); return; }
      const q = (layers) => map.queryRenderedFeatures(e.point, { layers: layers.filter((id) => map.getLayer(id)) });
      const al = q(["alerts"]);
      if (al.length) { openAlert(al[0].properties.id, al[0].geometry.coordinates); return; }
      const hz = q(["hazards-ledger"]);
      if (hz.length) { openHazard(hz[0].properties.id, e.lngLat); return; }
      const bs = q(["blackspots-points"]).concat(q(["blackspots-sections"]));
      const hits = q(unitLayers);
      if (bs.length && !hits.length) { openSpot(bs[0].properties.spot_id, e.lngLat); return; }
      if (!hits.length) { if (bs.length) openSpot(bs[0].properties.spot_id, e.lngLat); return; }
      const f = hits.sort((a, b) => (b.properties.level_rank || 0) - (a.properties.level_rank || 0))[0];
      if (selected !== null) map.setFeatureState({ source: "risk", sourceLayer: "units", id: selected }, { selected: false });
      selected = f.id;
      if (selected !== undefined) map.setFeatureState({ source: "risk", sourceLayer: "units", id: selected }, { selected: true });
      openUnit(e.lngLat, f.properties);
    });
  }

  // ---- unit popup: why this colour -------------------------------------------------------------
  function openUnit(lngLat, p) {
    const state = { p: p, full: null, why: null };
    showPopup(lngLat, () => unitHtml(state));
    const id = encodeURIComponent(p.unit_id);
    fetch(`/units/${id}`).then((r) => (r.ok ? r.json() : null)).then((u) => {
      if (u) { state.full = u; state.p = Object.assign({}, p, u.properties); if (rerender) rerender(); }
    });
    fetch(`/units/${id}/why`).then((r) => (r.ok ? r.json() : null)).then((w) => {
      if (w) { state.why = w; if (rerender) rerender(); }
    });
  }

  function whyItems(w) {
    const items = [];
    const population = (w.population || []).slice().sort((a, b) => (a !== "kind") - (b !== "kind"))
      .map((p) => word("population", p)).join(t("population.and"));
    if (w.guard === "min_crashes") items.push(t("why.guard_min"));
    else if (w.guard === "positive_only") items.push(t("why.guard_positive"));
    else if (w.percentile !== null && w.percentile !== undefined) {
      items.push(t("why.rank", { measure: word("measure", w.measure), pct: num(Math.floor(w.percentile)), population: population }));
    }
    if (w.crash_level) items.push(t("why.crash_level", { level: level(w.crash_level) }));
    if (w.crash_level && w.level && w.level !== w.crash_level) items.push(t("why.raised", { level: level(w.level) }));
    if (!w.observed) { items.push(t("why.none")); }
    else {
      const obs = t("count.crashes", { n: w.observed });
      if (w.expected !== null && w.expected !== undefined) items.push(t("why.expected", { observed: obs, expected: num(w.expected, 1) }));
      items.push(t("why.severity", { mix: sevMix(w.severity || {}) }));
    }
    items.push(...profileItems(w));
    const attrs = (w.attributes || []).map((a) => {
      if (a.key === "speed") return t("attr.speed", { speed: speed(a.speed_kmh), median: speed(a.median_kmh) });
      if (a.key === "lanes") return t("count.lanes", { n: a.n });
      if (a.key === "legs") return t("count.legs", { n: a.n });
      return t(`attr.${a.key}`, { n: a.n });
    });
    if (w.open_hazards) attrs.push(t("count.open_hazards", { n: w.open_hazards }));
    if (attrs.length) items.push(t("why.attributes", { list: attrs.join(TU.lang === "zh-CN" ? "，" : ", ") }));
    return items;
  }
  function profileItems(w) {
    const items = [];
    if (w.top_type) items.push(t("why.top_type", { type: word("collision", w.top_type), share: pct(w.top_type_share) }));
    if (w.top_time) items.push(t("why.top_time", { time: word("time", w.top_time), share: pct(w.top_time_share) }));
    if (w.night_share) items.push(t("why.night", { share: pct(w.night_share) }));
    return items;
  }

  function unitHtml(s) {
    const p = s.p;
    const road = [p.name, p.ref].filter(Boolean).join(" ");
    const sev = {}; ["K", "A", "B", "C", "O"].forEach((k) => { sev[k] = p[k] || 0; });
    const rows = [
      ["popup.road", road || null],
      ["popup.class", p.road_class ? word("road_class", p.road_class) : null],
      ["popup.road_chief", p.road_chief ? [p.road_chief, p.road_chief_body].filter(Boolean).join(" · ") : null],
      ["popup.speed", speed(p.maxspeed_kmh) || t("popup.unknown")],
      ["popup.lanes", p.lanes ? num(p.lanes) : null],
      ["popup.length", p.kind === "segment" ? length(p.length_m) : null],
      ["popup.crashes", p.crashes != null ? t("count.crashes", { n: p.crashes }) : null],
      ["popup.severity", p.crashes ? sevMix(sev) : null],
      ["popup.epdo", p.epdo != null ? num(p.epdo) : null],
      ["popup.eb_excess", p.eb_excess != null && isFinite(p.eb_excess) ? num(p.eb_excess, 1) : null],
      ["popup.percentile", p.score_percentile != null && isFinite(p.score_percentile) ? num(Math.floor(p.score_percentile)) : null],
    ].filter((r) => r[1] !== null && r[1] !== undefined && r[1] !== "");
    let html = `<div class="popup unit-popup"><h3>${esc(t("kind." + p.kind))} <code>${esc(p.unit_id)}</code> ` +
      `<span class="level" style="background:${esc(p.colour || "#ccc")}">${esc(level(p.level))}` +
      (has(`level_name.${p.level}`) ? ` · ${esc(t("level_name." + p.level))}` : "") + `</span></h3>`;
    html += `<section class="why"><h4>${esc(t("why.heading"))}</h4>`;
    html += s.why ? `<ul>${whyItems(s.why).map((i) => `<li>${esc(i)}</li>`).join("")}</ul>` : `<p class="hint">${esc(t("page.loading"))}</p>`;
    html += `</section><table>`;
    rows.forEach((r) => { html += `<tr><td>${esc(t(r[0]))}</td><td>${esc(r[1])}</td></tr>`; });
    html += "</table>";
    if (s.full) html += levelHistoryHtml(s.full.level_history);
    if (s.full) {
      const u = encodeURIComponent(p.unit_id);
      html += `<p class="links">${esc(t("popup.links"))}: <a target="_blank" href="/accidents?unit_id=${u}&amp;format=csv">` +
        `${esc(t("count.accidents", { n: s.full.accidents.length }))}</a> · <a target="_blank" href="/hazards?unit_id=${u}&amp;format=csv">` +
        `${esc(t("count.hazards", { n: s.full.hazards.length }))}</a> · ${esc(t("count.workzones", { n: s.full.workzones.length }))}</p>`;
      if (s.full.hazards.length) {
        html += `<ul class="hazard-links">` + s.full.hazards.slice(0, 20).map((h) => {
          const hp = h.properties || {};
          return `<li><button type="button" class="linklike" data-hazard="${esc(hp.id || h.id)}">${esc(hp.id || h.id)}</button> ` +
            `${esc(categoryName(hp.category))} · ${esc(word("state", hp.state))}</li>`;
        }).join("") + "</ul>";
      }
    }
    return html + "</div>";
  }

  function wirePopup() {
    const root = popup && popup.getElement();
    if (!root) return;
    root.querySelectorAll("[data-hazard]").forEach((b) => b.addEventListener("click", () => openHazard(b.dataset.hazard, popup.getLngLat())));
    root.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => doTransition(b.dataset.hid, b.dataset.to, b.dataset.action)));
    root.querySelectorAll("[data-history]").forEach((b) => b.addEventListener("click", () => loadHistory(b.dataset.history)));
    root.querySelectorAll("[data-alert-to]").forEach((b) => b.addEventListener("click", () => alertTransition(b.dataset.alertTo)));
    root.querySelectorAll("[data-alert-hazard]").forEach((b) => b.addEventListener("click", () => alertHazard()));
    const form = root.querySelector("form.report");
    if (form) form.addEventListener("submit", (e) => { e.preventDefault(); sendReport(form); });
  }

  // ---- black spots ------------------------------------------------------------------------------
  function loadBlackSpots() {
    Promise.all([fetch("/black-spots?limit=10000").then((r) => (r.ok ? r.json() : null)),
                 fetch("/black-spots/why").then((r) => (r.ok ? r.json() : {}))]).then(([fc, why]) => {
      if (!fc) { spots = []; renderSpotList(); return; }
      spotWhy = why || {};
      // rank: worst first as the library orders them (EPDO, then crashes)
      spots = fc.features.slice().sort((a, b) => (b.properties.epdo - a.properties.epdo) ||
        (b.properties.crashes - a.properties.crashes) || String(a.properties.spot_id).localeCompare(b.properties.spot_id));
      spots.forEach((f, i) => { f.properties.rank = i + 1; });
      map.addSource("black-spots", { type: "geojson", data: { type: "FeatureCollection", features: spots } });
      const before = map.getLayer("units-casing") ? "units-casing" : undefined;
      map.addLayer({ id: "blackspots-sections", type: "line", source: "black-spots",
        filter: ["!=", ["geometry-type"], "Point"], layout: { "line-cap": "round", "line-join": "round" },
        paint: { "line-color": "#6a00a8", "line-opacity": 0.22,
                 "line-width": ["interpolate", ["linear"], ["zoom"], 10, 4, 16, 16] } }, before);
      map.addLayer({ id: "blackspots-points", type: "circle", source: "black-spots",
        filter: ["==", ["geometry-type"], "Point"],
        paint: { "circle-color": "rgba(106,0,168,0.12)", "circle-stroke-color": "#6a00a8", "circle-stroke-width": 2,
                 "circle-radius": ["interpolate", ["exponential", 2], ["zoom"], 12, 4, 18, 160] } });
      renderSpotList();
      TU.spotsLoaded = spots.length;
    });
  }

  function spotTitle(p) {
    return `${t("blackspots.rank", { rank: p.rank })} · ${t("blackspots." + p.type)} · ${p.road || p.spot_id}`;
  }
  function renderSpotList() {
    const ol = $("blackspot-list");
    if (!ol) return;
    $("blackspots-count").textContent = spots.length ? t("blackspots.count", { n: spots.length }) : t("blackspots.none");
    ol.innerHTML = spots.map((f) => {
      const p = f.properties;
      return `<li><button type="button" class="linklike spot" data-spot="${esc(p.spot_id)}">${esc(spotTitle(p))}</button> ` +
        `<span class="hint">${esc(t("count.crashes", { n: p.crashes }))}</span></li>`;
    }).join("");
    ol.querySelectorAll("[data-spot]").forEach((b) => b.addEventListener("click", () => flyToSpot(b.dataset.spot)));
  }

  function bbox(geom) {
    const b = [Infinity, Infinity, -Infinity, -Infinity];
    const walk = (c) => { if (typeof c[0] === "number") { b[0] = Math.min(b[0], c[0]); b[1] = Math.min(b[1], c[1]); b[2] = Math.max(b[2], c[0]); b[3] = Math.max(b[3], c[1]); } else c.forEach(walk); };
    walk(geom.coordinates);
    return b;
  }
  function flyToSpot(id) {
    const f = spots.find((s) => s.properties.spot_id === id);
    if (!f) return;
    const b = bbox(f.geometry);
    const center = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
    TU.flyTarget = center;
    if (f.geometry.type === "Point") map.flyTo({ center: center, zoom: 17, duration: 800 });
    else map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: { top: 60, bottom: 60, right: 60, left: Math.min(340, window.innerWidth / 3) }, maxZoom: 17, duration: 800 });
    openSpot(id, center);
  }

  function openSpot(id, lngLat) {
    const f = spots.find((s) => s.properties.spot_id === id);
    if (!f) return;
    showPopup(lngLat, () => spotHtml(f.properties));
  }
  function spotHtml(p) {
    const w = spotWhy[p.spot_id] || {};
    const items = [t("why.severity", { mix: sevMix(p) }), ...profileItems(w)];
    if (w.speed_kmh) items.push(t("why.attributes", { list: `${t("popup.speed")} ${speed(w.speed_kmh)}` }));
    let html = `<div class="popup spot-popup"><h3>${esc(spotTitle(p))}</h3><table>` +
      `<tr><td>${esc(t("popup.crashes"))}</td><td>${esc(t("count.crashes", { n: p.crashes }))}</td></tr>` +
      `<tr><td>${esc(t("popup.epdo"))}</td><td>${esc(num(p.epdo))}</td></tr>` +
      `<tr><td>${esc(t("blackspots.index"))}</td><td>${esc(num(p.index, 1))}</td></tr>`;
    const len = p.type === "section" ? length(p.length_m) : length(p.radius_m);
    if (len) html += `<tr><td>${esc(t("blackspots.length"))}</td><td>${esc(len)}</td></tr>`;
    const nunits = String(p.unit_ids || "").split(";").filter(Boolean).length;
    html += `<tr><td>${esc(t("popup.links"))}</td><td>${esc(t("blackspots.units", { n: nunits }))}</td></tr></table>`;
    html += `<section class="why"><h4>${esc(t("why.heading"))}</h4><ul>${items.map((i) => `<li>${esc(i)}</li>`).join("")}</ul></section>`;
    html += `<details><summary>${esc(t("blackspots.profile"))}</summary><code>${esc(p.rule || "")}</code></details>`;
    return html + "</div>";
  }

  // ---- hazards from the ledger (live states) -----------------------------------------------------
  function loadLedgerHazards() {
    return fetch("/hazards?limit=10000").then((r) => (r.ok ? r.json() : null)).then((fc) => {
      if (!fc) return;
      const data = { type: "FeatureCollection", features: fc.features.map((f) => ({
        type: "Feature", geometry: f.geometry, properties: Object.assign({}, f.properties, { id: f.properties.id || f.id }) })) };
      const src = map.getSource("ledger-hazards");
      if (src) { src.setData(data); TU.hazardCount = data.features.length; return; }
      map.addSource("ledger-hazards", { type: "geojson", data: data });
      map.addLayer({ id: "hazards-ledger", type: "circle", source: "ledger-hazards",
        filter: ["==", ["geometry-type"], "Point"],
        paint: { "circle-color": ["match", ["get", "state"], "closed", "#dddddd", "accepted", "#e6f5d0", "#ffffff"],
                 "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 3, 16, 7],
                 "circle-stroke-color": ["match", ["get", "grade"], "major", "#7a0177", "general", "#e08214", "#555555"],
                 "circle-stroke-width": ["interpolate", ["linear"], ["zoom"], 10, 1.5, 16, 3] } });
      setVisible("hazards", false);  // the ledger's live states replace the build-time snapshot
      setVisible("hazards-ledger", $("toggle-hazards").checked);
      TU.hazardCount = data.features.length;
      loadCategories();
    });
  }
  function loadCategories() {
    if (!TU.categoriesLoading) {
      TU.categoriesLoading = fetch("/hazard-categories").then((r) => (r.ok ? r.json() : null))
        .then((c) => { categories = c; if (rerender) rerender(); });
    }
    return TU.categoriesLoading;
  }

  function categoryName(code) {
    if (!categories || !code) return code || "";
    for (const cls of categories.classes || []) {
      for (const it of cls.items || []) {
        if (it.code === code) return (TU.lang === "zh-CN" && it.name_zh) ? it.name_zh : it.name;
      }
    }
    return code;
  }

  function authHeaders(extra) {
    const h = Object.assign({}, extra || {});
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) h.Authorization = `Bearer ${tok}`;
    return h;
  }
  function answerText(status, body) {
    const detail = body && (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
    return detail ? t("server.answer", { status: status, detail: detail }) : t("server.ok", { status: status });
  }

  function openHazard(id, lngLat) {
    const state = { id: id, h: null, etag: null, history: null, answer: null };
    TU.hazardState = state;
    showPopup(lngLat, () => hazardHtml(state));
    refreshHazard(state);
  }
  function refreshHazard(state) {
    return fetch(`/hazards/${encodeURIComponent(state.id)}`, { headers: authHeaders() }).then((r) => {
      state.etag = r.headers.get("ETag");
      return r.ok ? r.json() : null;
    }).then((f) => { if (f) { state.h = f.properties; if (rerender) rerender(); } });
  }
  function allowedSteps(h) {
    const acts = (cfg.permissions || {})[TU.role] || [];
    return (cfg.transitions || []).filter((tr) => tr.from === h.state && acts.includes(tr.action));
  }
  function hazardHtml(s) {
    let html = `<div class="popup hazard-popup"><h3>${esc(t("hazard.heading", { id: s.id }))}</h3>`;
    if (!s.h) return html + `<p class="hint">${esc(t("page.loading"))}</p></div>`;
    const h = s.h;
    const rows = [
      ["hazard.category", categoryName(h.category)],
      ["hazard.grade", h.grade ? word("grade", h.grade) : t("grade.unknown")],
      ["hazard.state", word("state", h.state) + (h.overdue ? ` · ${t("hazard.overdue")}` : "")],
      ["hazard.deadline", h.deadline ? String(h.deadline).slice(0, 10) : null],
      ["hazard.responsible", h.responsible],
      ["hazard.supervision", h.supervision ? word("state", h.supervision) : null],
      ["hazard.reported_at", h.reported_at ? String(h.reported_at).slice(0, 16).replace("T", " ") : null],
      ["hazard.description", h.description],
    ].filter((r) => r[1]);
    html += "<table>" + rows.map((r) => `<tr><td>${esc(t(r[0]))}</td><td>${esc(r[1])}</td></tr>`).join("") + "</table>";
    html += `<h4>${esc(t("hazard.actions"))}</h4>`;
    if (!TU.role) html += `<p class="hint">${esc(t("hazard.sign_in_to_act"))}</p>`;
    else {
      const steps = allowedSteps(h);
      if (!steps.length) html += `<p class="hint">${esc(t("hazard.no_actions"))}</p>`;
      else {
        html += `<div class="steps">`;
        if (steps.some((s2) => s2.action === "register")) {
          html += `<label>${esc(t("report.grade"))} <select class="tr-grade"><option value="general">${esc(t("grade.general"))}</option>` +
            `<option value="major">${esc(t("grade.major"))}</option></select></label>`;
        }
        if (steps.some((s2) => s2.action === "assign")) {
          html += `<label>${esc(t("hazard.responsible"))} <input class="tr-responsible" value="${esc(h.responsible || "")}"></label>`;
        }
        html += `<label>${esc(t("hazard.comment"))} <input class="tr-comment"></label>`;
        html += steps.map((st) => `<button type="button" data-hid="${esc(s.id)}" data-to="${esc(st.to)}" data-action="${esc(st.action)}">` +
          `${esc(word("action", st.action))} → ${esc(word("state", st.to))}</button>`).join(" ") + "</div>";
      }
    }
    if (s.answer) html += `<p class="answer ${s.answer.ok ? "ok" : "bad"}" role="status">${esc(s.answer.text)}</p>`;
    html += `<p><button type="button" class="linklike" data-history="${esc(s.id)}">${esc(t("hazard.history"))}</button></p>`;
    if (s.history) {
      html += `<ol class="history">` + s.history.map((ev) => `<li>${esc(t("hazard.history_row", {
        time: String(ev.at || "").slice(0, 16).replace("T", " "),
        event: ev.to ? `${word("action", ev.action)} → ${word("state", ev.to)}` : word("action", ev.action),
        actor: word("role", ev.role) || ev.actor || "" }))}</li>`).join("") + "</ol>";
    }
    return html + "</div>";
  }
  function loadHistory(id) {
    const s = TU.hazardState;
    fetch(`/hazards/${encodeURIComponent(id)}/history`, { headers: authHeaders() }).then((r) => r.json().then((b) => [r, b]))
      .then(([r, b]) => {
        if (r.ok) s.history = b.events; else s.answer = { ok: false, text: answerText(r.status, b) };
        if (rerender) rerender();
      });
  }
  function doTransition(id, to, action) {
    const s = TU.hazardState, root = popup.getElement();
    const body = { to: to };
    const val = (sel) => { const el = root.querySelector(sel); return el && el.value.trim() ? el.value.trim() : null; };
    if (action === "register") body.grade = val(".tr-grade");
    if (action === "assign" && val(".tr-responsible")) body.responsible = val(".tr-responsible");
    if (val(".tr-comment")) body.comment = val(".tr-comment");
    fetch(`/hazards/${encodeURIComponent(id)}/transitions`, {
      method: "POST", body: JSON.stringify(body),
      headers: authHeaders({ "Content-Type": "application/json", "If-Match": s.etag || "" }),
    }).then((r) => r.json().catch(() => null).then((b) => [r, b])).then(([r, b]) => {
      s.answer = { ok: r.ok, text: answerText(r.status, r.ok ? null : b) };
      TU.lastAnswer = { status: r.status, body: b };
      if (r.ok) { s.h = b.properties; s.etag = r.headers.get("ETag"); s.history = null; loadLedgerHazards(); }
      if (rerender) rerender();
    });
  }

  // ---- warning alerts: layer, feed, live stream, work ----------------------------------------------
  const ALERT_COLOURS = ["match", ["get", "state"], "new", "#d7191c", "acknowledged", "#fdae61",
                         "dispatched", "#2b83ba", "#999999"];
  let alerts = [], alertSince = 0, alertSource = null, freshAlerts = new Set();
  TU.alertCount = 0; TU.alertEvents = 0; TU.alertStream = "closed";
  function alertFeature(a) {
    const props = Object.assign({}, a); delete props.geometry;
    return { type: "Feature", id: a.n, geometry: a.geometry || null, properties: props };
  }
  function alertData() {
    return { type: "FeatureCollection", features: alerts.filter((a) => a.geometry).map(alertFeature) };
  }
  function upsertAlert(a, fresh) {
    const i = alerts.findIndex((x) => x.id === a.id);
    if (i >= 0) a = Object.assign({}, alerts[i], a);
    if (i >= 0) alerts[i] = a; else alerts.push(a);
    alerts.sort((x, y) => y.n - x.n);  // newest first
    alertSince = Math.max(alertSince, a.n || 0);
    if (fresh) freshAlerts.add(a.id);
    TU.alertCount = alerts.length;
  }
  function drawAlerts() {
    const src = map && map.getSource("alerts");
    if (src) src.setData(alertData());
    renderAlerts();
    if (TU.alertState && rerender) {
      const cur = alerts.find((x) => x.id === TU.alertState.id);
      if (cur) { TU.alertState.a = Object.assign({}, TU.alertState.a, cur); rerender(); }
    }
  }
  function loadAlerts() {
    return fetch("/alerts?format=geojson&order=newest&limit=500", { headers: authHeaders() }).then((r) => {
      if (!r.ok) { TU.alertsFailed = r.status; renderAlerts(); return null; }
      TU.alertsFailed = null;
      return r.json();
    }).then((fc) => {
      if (!fc) return;
      fc.features.forEach((f) => upsertAlert(Object.assign({ id: f.id, geometry: f.geometry }, f.properties), false));
      if (!map.getSource("alerts")) {
        map.addSource("alerts", { type: "geojson", data: alertData() });
        map.addLayer({ id: "alerts", type: "circle", source: "alerts",
          paint: { "circle-color": ALERT_COLOURS, "circle-opacity": 0.85,
                   "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 5, 16, 11],
                   "circle-stroke-color": "#000000", "circle-stroke-width": 1.5 } });
        setVisible("alerts", $("toggle-alerts").checked);
      }
      drawAlerts();
      TU.alertsLoaded = true;
      streamAlerts();
    }).catch((e) => TU.errors.push(`alerts: ${e}`));
  }
  /** New alerts as they fire: server-sent events, resumed after the last one seen (the browser
      sends Last-Event-ID when it reconnects). Reads that need a token: polled with it instead. */
  function streamAlerts() {
    if (alertSource) return;
    if (!window.EventSource) { pollAlerts(); return; }
    const es = alertSource = new EventSource(`/alerts/stream?after=${alertSince}`);
    es.addEventListener("open", () => { TU.alertStream = "open"; renderAlertsLive(); });
    es.addEventListener("alert", (e) => {
      const a = JSON.parse(e.data);
      TU.alertEvents += 1;
      upsertAlert(a, true);
      drawAlerts();
    });
    es.addEventListener("error", () => {
      TU.alertStream = es.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
      renderAlertsLive();
      if (es.readyState === EventSource.CLOSED) { alertSource = null; pollAlerts(); }
    });
  }
  function pollAlerts() {
    if (TU.alertPolling) return;
    TU.alertPolling = true; TU.alertStream = "polling"; renderAlertsLive();
    const tick = () => fetch("/alerts?order=newest&limit=100", { headers: authHeaders() })
      .then((r) => (r.ok ? r.json() : null)).then((b) => {
        if (b) { b.alerts.filter((a) => a.n > alertSince).reverse().forEach((a) => upsertAlert(a, true)); drawAlerts(); }
      }).catch(() => null).then(() => setTimeout(tick, 5000));
    tick();
  }
  function renderAlertsLive() {
    const el = $("alerts-live");
    if (el) el.textContent = t(`alerts.stream_${TU.alertStream}`);
  }
  function alertWhen(a) { return String(a.time || a.created_at || "").slice(0, 16).replace("T", " "); }
  function ruleName(id) { return has(`warn_rule.${id}`) ? t(`warn_rule.${id}`) : null; }
  function ruleHtml(id) {  // a rule of the shipped four in words, a site's own rule as its id
    const name = ruleName(id);
    return name ? esc(name) : `<code>${esc(id)}</code>`;
  }
  function renderAlerts() {
    const ol = $("alert-list");
    if (!ol) return;
    renderAlertsLive();
    $("alerts-count").textContent = TU.alertsFailed ? t("alerts.need_token") :
      (alerts.length ? t("alerts.count", { n: alerts.length }) : t("alerts.none"));
    ol.innerHTML = alerts.slice(0, 200).map((a) => {
      const units = (a.unit_ids || []).slice(0, 3).join(", ") + ((a.unit_ids || []).length > 3 ? " …" : "");
      return `<li class="state-${esc(a.state)}${freshAlerts.has(a.id) ? " fresh" : ""}" data-alert-id="${esc(a.id)}">` +
        `<button type="button" class="linklike" data-alert-fly="${esc(a.id)}">${ruleHtml(a.rule)}</button> ` +
        `<span class="hint">${esc(alertWhen(a))}</span><br><span class="alert-state">${esc(word("alert_state", a.state))}</span>` +
        ` · ${esc(t("count.accidents", { n: (a.evidence || []).length }))}` +
        ` · ${esc(a.assignee ? t("alerts.assigned_to", { who: a.assignee }) : t("alerts.unassigned"))}` +
        (units ? ` · <code>${esc(units)}</code>` : "") + "</li>";
    }).join("");
    ol.querySelectorAll("[data-alert-fly]").forEach((b) => b.addEventListener("click", () => flyToAlert(b.dataset.alertFly)));
  }
  function flyToAlert(id) {
    const a = alerts.find((x) => x.id === id);
    if (!a) return;
    freshAlerts.delete(id);
    renderAlerts();
    if (a.geometry) {
      TU.flyTarget = a.geometry.coordinates;
      map.flyTo({ center: a.geometry.coordinates, zoom: Math.max(map.getZoom(), 16), duration: 800 });
      openAlert(id, a.geometry.coordinates);
    } else openAlert(id, map.getCenter());
  }
  function openAlert(id, lngLat) {
    const state = { id: id, a: alerts.find((x) => x.id === id) || null, answer: null };
    TU.alertState = state;
    showPopup(lngLat, () => alertHtml(state));
  }
  function alertSteps(a) {
    const acts = (cfg.permissions || {})[TU.role] || [];
    return (cfg.alert_transitions || []).filter((tr) => tr.from === a.state && acts.includes(tr.action));
  }
  function alertHtml(s) {
    const a = s.a;
    let html = `<div class="popup alert-popup"><h3>${esc(t("alerts.one"))} · ${ruleHtml(a.rule)}</h3><table>`;
    const ev = (a.evidence || []);
    const rows = [
      ["alerts.scope", esc(word("warn_scope", a.scope)) + (a.scope !== "unit" ? ` <code>${esc(a.scope_id)}</code>` : "")],
      ["alerts.units", `<code>${esc((a.unit_ids || []).join(", "))}</code>`],
      ["alerts.evidence", esc(t("count.accidents", { n: ev.length })) + (ev.length ? ` <code>${esc(ev.slice(0, 10).join(", "))}${ev.length > 10 ? " …" : ""}</code>` : "")],
      ["alerts.time", esc(alertWhen(a))],
      ["alerts.state", esc(word("alert_state", a.state))],
      ["alerts.assignee", esc(a.assignee || t("alerts.unassigned"))],
      ["alerts.detail", a.detail ? `<code>${esc(a.detail)}</code>` : null],
      ["alerts.hazard", a.hazard_id ? `<button type="button" class="linklike" data-hazard="${esc(a.hazard_id)}">${esc(a.hazard_id)}</button>` : null],
    ].filter((r) => r[1]);
    html += rows.map((r) => `<tr><td>${esc(t(r[0]))}</td><td>${r[1]}</td></tr>`).join("") + "</table>";
    html += `<h4>${esc(t("hazard.actions"))}</h4>`;
    if (!TU.role) html += `<p class="hint">${esc(t("alerts.sign_in_to_act"))}</p>`;
    else {
      const steps = alertSteps(a);
      const mayHazard = ((cfg.permissions || {})[TU.role] || []).includes("report") && !a.hazard_id;
      if (!steps.length && !mayHazard) html += `<p class="hint">${esc(t("hazard.no_actions"))}</p>`;
      else {
        html += `<div class="steps">`;
        if (steps.some((st) => st.to === "dispatched")) {
          html += `<label>${esc(t("alerts.dispatch_to"))} <input class="al-assignee" value="${esc(a.assignee || "")}"></label>`;
        }
        if (steps.length) html += `<label>${esc(t("hazard.comment"))} <input class="al-comment"></label>`;
        html += steps.map((st) => `<button type="button" data-alert-to="${esc(st.to)}">${esc(word("alert_action", st.to))}</button>`).join(" ");
        if (mayHazard) html += ` <button type="button" data-alert-hazard="${esc(a.id)}">${esc(t("alerts.open_hazard"))}</button>`;
        html += "</div>";
      }
    }
    if (s.answer) html += `<p class="answer ${s.answer.ok ? "ok" : "bad"}" role="status">${esc(s.answer.text)}</p>`;
    return html + "</div>";
  }
  function alertAnswer(s, r, b) {
    s.answer = { ok: r.ok, text: answerText(r.status, r.ok ? null : b) };
    TU.lastAnswer = { status: r.status, body: b };
    if (r.ok) { upsertAlert(Object.assign({ geometry: s.a.geometry }, b), false); s.a = alerts.find((x) => x.id === s.id); drawAlerts(); }
    if (rerender) rerender();
    return r.ok;
  }
  function alertTransition(to) {
    const s = TU.alertState, root = popup.getElement();
    const val = (sel) => { const el = root.querySelector(sel); return el && el.value.trim() ? el.value.trim() : null; };
    const body = { to: to };
    if (to === "dispatched" && val(".al-assignee")) body.assignee = val(".al-assignee");
    if (val(".al-comment")) body.comment = val(".al-comment");
    fetch(`/alerts/${encodeURIComponent(s.id)}/transitions`, { method: "POST", body: JSON.stringify(body),
      headers: authHeaders({ "Content-Type": "application/json" }) })
      .then((r) => r.json().catch(() => null).then((b) => alertAnswer(s, r, b)));
  }
  function alertHazard() {
    const s = TU.alertState;
    fetch(`/alerts/${encodeURIComponent(s.id)}/hazard`, { method: "POST", body: "{}",
      headers: authHeaders({ "Content-Type": "application/json" }) })
      .then((r) => r.json().catch(() => null).then((b) => {
        if (alertAnswer(s, r, b)) { s.answer.text = t("alerts.hazard_opened", { id: b.hazard_id }); loadLedgerHazards(); rerender(); }
      }));
  }

  /** Why a unit's level changed, in words (the server writes "accident E1, E2 and 3 more",
      "open hazard(s) H1 (major)", "hazard closed"); anything else is shown as written. */
  function levelReason(reason) {
    const r = String(reason || "");
    let m = r.match(/^accident (.+?)(?: and (\d+) more)?$/);
    if (m) {
      const ids = m[1].split(", ");
      return `${esc(t("levels.by_accidents", { n: ids.length + Number(m[2] || 0) }))} <code>${esc(m[1])}${m[2] ? " …" : ""}</code>`;
    }
    m = r.match(/^open hazard\(s\) (.+) \((.+)\)$/);
    if (m) return `${esc(t("levels.by_hazards", { grades: m[2].split(", ").map((g) => word("grade", g)).join("、") }))} <code>${esc(m[1])}</code>`;
    if (r === "hazard closed") return esc(t("levels.hazard_closed"));
    return `<code>${esc(r)}</code>`;
  }
  function levelHistoryHtml(hist) {
    if (!hist || !hist.length) return "";
    return `<section class="level-history"><h4>${esc(t("levels.heading"))}</h4><ol class="levels">` +
      hist.slice(0, 10).map((h) => `<li>${esc(t("levels.row", { time: String(h.at || "").slice(0, 16).replace("T", " "),
        from: level(h.from), to: level(h.to) }))} ${levelReason(h.reason)}</li>`).join("") + "</ol></section>";
  }

  // ---- sign in and report --------------------------------------------------------------------------
  function renderAuth() {
    const signed = !!TU.role;
    $("signin").hidden = signed;
    $("signout").hidden = !signed;
    const mayReport = signed && ((cfg.permissions || {})[TU.role] || []).includes("report");
    $("report-start").hidden = !mayReport || reportMode;
    $("report-cancel").hidden = !reportMode;
    $("auth-status").textContent = signed ? t("auth.signed_in", { role: word("role", TU.role) }) : t("auth.signed_out");
    if (reportMode) $("work-status").textContent = t("report.click");
  }
  function signIn(token) {
    return fetch("/tokens/me", { headers: { Authorization: `Bearer ${token}` } })
      .then((r) => r.json().catch(() => null).then((b) => [r, b])).then(([r, b]) => {
        if (r.ok) {
          sessionStorage.setItem(TOKEN_KEY, token); TU.role = b.role; $("work-status").textContent = "";
          if (TU.alertsFailed && map) loadAlerts();  // reads that need a token
        }
        else { sessionStorage.removeItem(TOKEN_KEY); TU.role = null; $("work-status").textContent = t("auth.failed", { reason: answerText(r.status, b) }); }
        renderAuth();
        if (rerender) rerender();
      });
  }
  function restoreAuth() {
    const tok = sessionStorage.getItem(TOKEN_KEY);
    if (tok) signIn(tok); else renderAuth();
  }
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const tok = $("token").value.trim();
    $("token").value = "";
    if (tok) signIn(tok);
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY); TU.role = null; reportMode = false;
    $("work-status").textContent = ""; renderAuth(); if (rerender) rerender();
  });
  $("report-start").addEventListener("click", () => {
    reportMode = true; map.getCanvas().style.cursor = "crosshair"; renderAuth();
    loadCategories();
  });
  $("report-cancel").addEventListener("click", () => {
    reportMode = false; map.getCanvas().style.cursor = ""; $("work-status").textContent = ""; renderAuth();
  });

  function openReport(lngLat) {
    reportMode = false; map.getCanvas().style.cursor = ""; renderAuth();
    $("work-status").textContent = "";
    const state = { lngLat: lngLat, answer: null };
    TU.reportState = state;
    showPopup(lngLat, () => reportHtml(state));
  }
  function reportHtml(s) {
    const groups = ((categories && categories.classes) || []).map((cls) => {
      const name = (TU.lang === "zh-CN" && cls.name_zh) ? cls.name_zh : cls.name;
      return `<optgroup label="${esc(name)}">` + (cls.items || []).map((it) =>
        `<option value="${esc(it.code)}">${esc((TU.lang === "zh-CN" && it.name_zh) ? it.name_zh : it.name)}</option>`).join("") + "</optgroup>";
    }).join("");
    let html = `<div class="popup report-popup"><h3>${esc(t("report.heading"))}</h3><form class="report">` +
      `<label>${esc(t("report.category"))}<select name="category" required><option value="">${esc(t("report.choose"))}</option>${groups}</select></label>` +
      `<label>${esc(t("report.grade"))}<select name="grade"><option value="">${esc(t("grade.unknown"))}</option>` +
      `<option value="general">${esc(t("grade.general"))}</option><option value="major">${esc(t("grade.major"))}</option></select></label>` +
      `<label>${esc(t("report.description"))}<textarea name="description" rows="3" maxlength="4000"></textarea></label>` +
      `<label>${esc(t("report.photo"))}<input type="file" name="photo" accept="image/jpeg,image/png,image/webp"></label>` +
      `<button type="submit">${esc(t("report.submit"))}</button></form>`;
    if (s.answer) html += `<p class="answer ${s.answer.ok ? "ok" : "bad"}" role="status">${esc(s.answer.text)}</p>`;
    return html + "</div>";
  }
  // a photo goes to the hazard's evidence (POST /evidence/hazard/{id}, the file as the body)
  function attachPhoto(id, file) {
    const url = `/evidence/hazard/${encodeURIComponent(id)}?filename=${encodeURIComponent(file.name || "photo")}`;
    return fetch(url, { method: "POST", body: file, headers: authHeaders({ "Content-Type": file.type || "application/octet-stream" }) })
      .then((r) => r.json().catch(() => null).then((b) => {
        TU.lastPhoto = { status: r.status, body: b };
        return r.ok ? t("report.photo_saved") : t("report.photo_failed", { why: answerText(r.status, b) });
      }));
  }
  function sendReport(form) {
    const s = TU.reportState;
    const data = new FormData(form);
    if (!data.get("category")) { s.answer = { ok: false, text: t("report.need_category") }; rerender(); return; }
    const body = { geometry: { type: "Point", coordinates: [s.lngLat.lng, s.lngLat.lat] }, category: data.get("category") };
    if (data.get("grade")) body.grade = data.get("grade");
    if (String(data.get("description") || "").trim()) body.description = String(data.get("description")).trim();
    fetch("/hazards", { method: "POST", body: JSON.stringify(body), headers: authHeaders({ "Content-Type": "application/json" }) })
      .then((r) => r.json().catch(() => null).then((b) => [r, b])).then(([r, b]) => {
        TU.lastAnswer = { status: r.status, body: b };
        if (!r.ok) { s.answer = { ok: false, text: answerText(r.status, b) }; rerender(); return; }
        const id = b.properties.id;
        const said = `${t(b.linked ? "report.linked" : "report.created", { id: id })} · ${t("server.ok", { status: r.status })}`;
        $("work-status").textContent = said;
        const photo = data.get("photo");
        const attached = (photo && photo.size) ? attachPhoto(id, photo).then((ok) => {
          $("work-status").textContent = `${said} · ${ok}`;
        }) : Promise.resolve();
        attached.then(() => loadLedgerHazards()).then(() => openHazard(id, s.lngLat));
      });
  }
})();
