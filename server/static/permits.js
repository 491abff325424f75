/* trafficunit web map, route permits (通行许可): the active permits' routes from the live
   tileset /tiles/live-permits, a toggle in the layers list, and the permit of a clicked route
   (vehicle, state, hours, validity, length, link to its public page) under the toggle.
   Self-contained: it needs window.trafficunit (messages, language) and window.trafficunitMap
   from app.js; words come from the same catalogue (layers.permits, permits.* keys). */
(function () {
  "use strict";
  const TU = window.trafficunit || (window.trafficunit = { messages: {}, lang: "en", errors: [] });
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const msg = (key) => (TU.messages || {})[key];
  const fill = (text, p) => String(text).replace(/\{(\w+)\}/g, (m, k) => (p && p[k] !== undefined ? p[k] : m));
  const say = (key, p) => (msg(key) === undefined ? key : fill(msg(key), p));
  const st = { on: true, picked: null };
  TU.permits = st;

  // ---- the toggle and the info box, after the work zones' toggle --------------------------
  const row = document.createElement("label");
  row.innerHTML = '<input type="checkbox" id="toggle-permits" checked> <span data-i18n="layers.permits"></span> ';
  const swatch = document.createElement("span");
  Object.assign(swatch.style, { display: "inline-block", width: "1.6em", height: "0",
                                borderTop: "3px dashed #1f78b4", verticalAlign: "middle" });
  row.appendChild(swatch);
  const info = document.createElement("div");
  info.id = "permit-info";
  info.setAttribute("role", "status");
  const wz = document.getElementById("toggle-workzones");
  const after = wz ? wz.closest("label") : null;
  if (after && after.parentNode) {
    after.parentNode.insertBefore(info, after.nextSibling);
    after.parentNode.insertBefore(row, info);
  }

  function render() {
    const p = st.picked;
    if (!p) { info.innerHTML = ""; return; }
    const state = msg(`permits.state.${p.state}`) !== undefined ? say(`permits.state.${p.state}`) : p.state;
    const km = (Number(p.length_m) / 1000).toLocaleString(TU.lang, { maximumFractionDigits: 1 });
    const rows = [
      ["permits.vehicle", p.vehicle],
      ["permits.state", state],
      ["permits.windows", p.windows || say("permits.any_time")],
      ["permits.valid_to", p.valid_to || "—"],
      ["permits.length", say("permits.km", { km: km })],
    ];
    info.innerHTML = `<table class="permit">${rows.map(([k, v]) =>
      `<tr><th>${esc(say(k))}</th><td>${esc(v)}</td></tr>`).join("")}</table>` +
      `<a href="/permits/${encodeURIComponent(p.event_id)}/page" target="_blank" rel="noopener">` +
      `${esc(say("permits.page", { id: p.event_id }))}</a>`;
  }
  new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });

  function start(map) {
    map.addSource("live-permits", { type: "vector", minzoom: 10, maxzoom: 18,
                                    tiles: [`${location.origin}/tiles/live-permits/{z}/{x}/{y}.mvt`] });
    map.addLayer({ id: "permits", type: "line", source: "live-permits", "source-layer": "permits",
                   layout: { "line-cap": "round" },
                   paint: { "line-color": "#1f78b4", "line-opacity": 0.85, "line-dasharray": [2, 1],
                            "line-width": ["interpolate", ["linear"], ["zoom"], 10, 2, 16, 5] } });
    document.getElementById("toggle-permits").addEventListener("change", (e) => {
      st.on = e.target.checked;
      map.setLayoutProperty("permits", "visibility", st.on ? "visible" : "none");
      if (!st.on) { st.picked = null; render(); }
    });
    map.on("click", "permits", (e) => {
      if (!st.on || !e.features || !e.features.length) return;
      st.picked = e.features[0].properties;
      render();
    });
    TU.permitsReady = true;
  }
  const wait = setInterval(() => {
    const map = window.trafficunitMap;
    if (!map || !map.isStyleLoaded()) return;
    clearInterval(wait);
    start(map);
  }, 100);
})();
