/* trafficunit web map, jurisdictions: zone outlines per tree and level coloured by the
   documented rule (GET /zones), and each zone's KPIs against their targets with its health
   index (GET /kpis). Self-contained: it needs only window.trafficunit (messages, language) and
   window.trafficunitMap from app.js; words come from the same catalogue (zones.* keys). */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const TU = window.trafficunit || (window.trafficunit = { messages: {}, lang: "en", errors: [] });
  const KPIS = ["investigation_rate", "discovery_rate", "rectification_rate", "fixed_at_once_rate",
                "listed_rectified_share", "on_time_rate", "accident_linkage_rate"];
  const st = { trees: {}, tree: null, level: null, on: false, zones: null, kpis: {}, selected: null, n: 0 };
  TU.zones = st;

  function t(key, params) {
    let msg = (TU.messages || {})[key];
    if (msg === undefined) return key;
    params = params || {};
    if (typeof msg === "object") msg = (params.n === 1 && msg.one !== undefined) ? msg.one : msg.other;
    return String(msg).replace(/\{(\w+)\}/g, (m, k) => (params[k] !== undefined ? params[k] : m));
  }
  function word(prefix, value) {
    const key = prefix + value;
    return (TU.messages || {})[key] !== undefined ? t(key) : String(value);
  }
  function pct(v) { return v === null || v === undefined ? t("zones.no_data") : `${Math.round(v * 100)} %`; }
  function zoneName(p) { return (TU.lang === "zh-CN" && p.name_zh) ? p.name_zh : (p.name || p.code); }

  // ---- the panel section -------------------------------------------------------------------
  const sec = document.createElement("section");
  sec.id = "zones";
  sec.hidden = true;
  sec.setAttribute("data-i18n-aria", "zones.heading");
  sec.innerHTML =
    '<h2 data-i18n="zones.heading"></h2>' +
    '<label><input type="checkbox" id="toggle-zones"> <span data-i18n="zones.show"></span></label>' +
    '<label><span data-i18n="zones.tree"></span> <select id="zones-tree"></select></label>' +
    '<label><span data-i18n="zones.level"></span> <select id="zones-level"></select></label>' +
    '<p id="zones-note" class="hint"></p><div id="zones-kpi" role="status"></div>';
  const anchor = $("blackspots");
  if (anchor && anchor.parentNode) anchor.parentNode.insertBefore(sec, anchor);
  else if ($("panel")) $("panel").appendChild(sec);

  function renderSelects() {
    const trees = Object.keys(st.trees);
    $("zones-tree").innerHTML = trees.map((k) =>
      `<option value="${esc(k)}"${k === st.tree ? " selected" : ""}>${esc(word("zones.tree.", k))}</option>`).join("");
    const levels = st.tree ? st.trees[st.tree].levels : [];
    $("zones-level").innerHTML = levels.map((k) =>
      `<option value="${esc(k)}"${k === st.level ? " selected" : ""}>${esc(word("zones.level.", k))}</option>`).join("");
  }
  function renderKpis() {
    const note = [];
    if (st.tree && st.trees[st.tree].generated) note.push(t("zones.generated"));
    if (st.on) note.push(t("zones.pick"));
    $("zones-note").textContent = note.join(" ");
    const box = $("zones-kpi");
    const row = st.selected ? st.kpis[st.selected] : null;
    const feat = st.zones && st.selected ? st.zones.features.find((f) => f.id === st.selected) : null;
    if (!row || !feat) { box.innerHTML = ""; return; }
    let html = `<h3>${esc(zoneName(feat.properties))}</h3>`;
    if (feat.properties.risk_level) html += `<p class="hint">${esc(t("zones.risk", { level: word("level.", feat.properties.risk_level) }))}</p>`;
    if (row.health_index !== null && row.health_index !== undefined) {
      html += `<p>${esc(t("zones.health", { value: Math.round(row.health_index), rank: row.health_rank, n: st.n }))}</p>`;
    }
    html += '<table class="zone-kpis"><tbody>' + KPIS.map((k) => {
      const target = row[k + "_target"], met = row[k + "_met"];
      const mark = (met === true) ? `<span class="met">${esc(t("zones.met"))}</span>`
        : (met === false) ? `<span class="missed">${esc(t("zones.missed"))}</span>` : "";
      const tg = (target !== null && target !== undefined) ? esc(t("zones.target", { target: pct(target) })) : "";
      return `<tr data-kpi="${esc(k)}"><th>${esc(t("zones.kpi." + k))}</th><td>${esc(pct(row[k]))}</td><td>${tg}</td><td>${mark}</td></tr>`;
    }).join("") + "</tbody></table>";
    box.innerHTML = html;
  }
  function render() { renderSelects(); renderKpis(); }
  new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });

  // ---- the map layers ----------------------------------------------------------------------
  function firstUnitsLayer(map) {
    const l = (map.getStyle().layers || []).find((x) => x.id.startsWith("units"));
    return l ? l.id : undefined;
  }
  function show(map) {
    const vis = st.on ? "visible" : "none";
    for (const id of ["tu-zones-fill", "tu-zones-line"]) if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", vis);
  }
  function load(map) {
    if (!st.tree || !st.level) return Promise.resolve();
    const q = `tree=${encodeURIComponent(st.tree)}&level=${encodeURIComponent(st.level)}`;
    return Promise.all([
      fetch(`/zones?${q}`).then((r) => (r.ok ? r.json() : null)),
      fetch(`/kpis?${q}`).then((r) => (r.ok ? r.json() : null)),
    ]).then(([zones, kpis]) => {
      if (!zones) return;
      st.zones = zones;
      st.kpis = {};
      ((kpis && kpis.rows) || []).forEach((r) => { st.kpis[r.code] = r; });
      st.n = Object.keys(st.kpis).length;
      if (st.selected && !st.kpis[st.selected]) st.selected = null;
      const src = map.getSource("tu-zones");
      if (src) src.setData(zones);
      else {
        map.addSource("tu-zones", { type: "geojson", data: zones });
        const before = firstUnitsLayer(map);
        map.addLayer({ id: "tu-zones-fill", type: "fill", source: "tu-zones",
                       paint: { "fill-color": ["coalesce", ["get", "colour"], "#888888"], "fill-opacity": 0.14 } }, before);
        map.addLayer({ id: "tu-zones-line", type: "line", source: "tu-zones",
                       paint: { "line-color": "#333333", "line-width": 1.5, "line-dasharray": [3, 2] } });
        map.on("click", "tu-zones-fill", (e) => {
          if (!st.on || !e.features || !e.features.length) return;
          st.selected = String(e.features[0].properties.code);
          renderKpis();
        });
      }
      show(map);
      renderKpis();
      TU.zonesLoaded = (TU.zonesLoaded || 0) + 1;
    }).catch((e) => (TU.errors || []).push(String(e)));
  }
  function start(map) {
    fetch("/zones/trees").then((r) => (r.ok ? r.json() : { trees: {} })).then((body) => {
      st.trees = body.trees || {};
      const names = Object.keys(st.trees);
      if (!names.length) return;
      st.tree = body.default || names[0];
      const levels = st.trees[st.tree].levels;
      st.level = levels.length > 1 ? levels[1] : levels[0];
      sec.hidden = false;
      render();
      $("toggle-zones").addEventListener("change", (e) => {
        st.on = e.target.checked;
        (map.getSource("tu-zones") ? Promise.resolve() : load(map)).then(() => { show(map); renderKpis(); });
      });
      $("zones-tree").addEventListener("change", (e) => {
        st.tree = e.target.value;
        const lv = st.trees[st.tree].levels;
        st.level = lv.length > 1 ? lv[1] : lv[0];
        st.selected = null;
        render();
        load(map);
      });
      $("zones-level").addEventListener("change", (e) => { st.level = e.target.value; st.selected = null; load(map); });
      TU.zonesReady = true;
    }).catch((e) => (TU.errors || []).push(String(e)));
  }
  const wait = setInterval(() => {
    const map = window.trafficunitMap;
    if (!map) return;
    clearInterval(wait);
    const ready = setInterval(() => {  // the style loaded: layers can be added
      if (!map.isStyleLoaded()) return;
      clearInterval(ready);
      start(map);
    }, 100);
  }, 100);
})();
