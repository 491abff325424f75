/* trafficunit web map: units by risk level, events, unit popup, live accident filter. */
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const fmt = (v) => (typeof v === "number" && !Number.isInteger(v)) ? v.toFixed(2) : v;
  window.trafficunit = { tilesLoaded: 0, popupShown: false, errors: [] };

  const initialHash = location.hash;
  fetch("/style.json").then((r) => r.json()).then((style) => {
    const legend = (style.metadata || {})["trafficunit:legend"] || {};
    renderLegend(legend);
    const map = new maplibregl.Map({ container: "map", style: style, center: [24.944, 60.169],
                                     zoom: 14, hash: true, attributionControl: { compact: true } });
    window.trafficunitMap = map;
    map.addControl(new maplibregl.NavigationControl(), "top-right");
    map.addControl(new maplibregl.ScaleControl(), "bottom-right");
    map.on("error", (e) => window.trafficunit.errors.push(String(e.error && e.error.message)));
    map.on("sourcedata", (e) => { if (e.tile) window.trafficunit.tilesLoaded += 1; });
    map.once("load", () => {
      fitToData(map);
      wireToggles(map);
      wireFilter(map);
      wirePopup(map);
    });
  });

  function renderLegend(legend) {
    const ul = $("legend-levels");
    (legend.levels || []).forEach((lv) => {
      const li = document.createElement("li");
      li.innerHTML = `<span class="swatch" style="background:${esc(lv.colour)}"></span>` +
        `<span>${esc(lv.label)}</span><span class="hint">${esc(lv.count)}</span>`;
      ul.appendChild(li);
    });
    const lines = legend.explanation || [];
    $("legend-rule").textContent = lines.length ? lines.join("; ") : "units are not scored yet (tu.score)";
    if (legend.generated_sample) $("sample-note").hidden = false;
  }

  function fitToData(map) {
    const src = map.getSource("risk");
    if (!src) return;
    const done = () => {
      const b = src.bounds;
      const pad = { top: 30, bottom: 30, right: 30, left: Math.min(320, window.innerWidth / 3) };
      if (b && !initialHash) map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: pad, duration: 0 });
    };
    if (src.loaded()) done(); else map.once("sourcedata", done);
  }

  function setVisible(map, id, on) {
    if (map.getLayer(id)) map.setLayoutProperty(id, "visibility", on ? "visible" : "none");
  }

  function liveActive() { return window.trafficunit.liveQuery && window.trafficunit.liveQuery.length > 0; }

  function wireToggles(map) {
    $("toggle-accidents").addEventListener("change", (e) => {
      setVisible(map, "accidents", e.target.checked && !liveActive());
      setVisible(map, "accidents-live", e.target.checked && liveActive());
    });
    $("toggle-hazards").addEventListener("change", (e) => setVisible(map, "hazards", e.target.checked));
    $("toggle-workzones").addEventListener("change", (e) => setVisible(map, "workzones", e.target.checked));
  }

  function wireFilter(map) {
    const apply = () => {
      const q = new URLSearchParams();
      if ($("filter-from").value) q.set("from", $("filter-from").value);
      if ($("filter-to").value) q.set("to", $("filter-to").value);
      if ($("filter-light").value) q.set("light", $("filter-light").value);
      const qs = q.toString();
      window.trafficunit.liveQuery = qs;
      const on = $("toggle-accidents").checked;
      const live = map.getSource("live-accidents");
      if (qs && live) {
        const base = `${location.origin}/tiles/live-accidents/{z}/{x}/{y}.mvt`;
        live.setTiles([`${base}?${qs}`]);
        setVisible(map, "accidents", false);
        setVisible(map, "accidents-live", on);
        $("filter-status").textContent = `live tiles: ${qs.replace(/&/g, ", ")}`;
      } else {
        setVisible(map, "accidents-live", false);
        setVisible(map, "accidents", on);
        $("filter-status").textContent = "showing all accidents (stored tiles)";
      }
    };
    $("filter-apply").addEventListener("click", apply);
    $("filter-clear").addEventListener("click", () => {
      $("filter-from").value = ""; $("filter-to").value = ""; $("filter-light").value = "";
      apply();
    });
  }

  function wirePopup(map) {
    let selected = null;
    const layers = ["units-segments", "units-intersections"].filter((id) => map.getLayer(id));
    layers.forEach((id) => {
      map.on("mouseenter", id, () => { map.getCanvas().style.cursor = "pointer"; });
      map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
    });
    map.on("click", (e) => {
      const hits = map.queryRenderedFeatures(e.point, { layers });
      if (!hits.length) return;
      const f = hits.sort((a, b) => (b.properties.level_rank || 0) - (a.properties.level_rank || 0))[0];
      if (selected !== null) map.setFeatureState({ source: "risk", sourceLayer: "units", id: selected }, { selected: false });
      selected = f.id;
      if (selected !== undefined) map.setFeatureState({ source: "risk", sourceLayer: "units", id: selected }, { selected: true });
      showUnit(map, e.lngLat, f.properties);
    });
  }

  function showUnit(map, lngLat, p) {
    const popup = new maplibregl.Popup({ maxWidth: "340px" }).setLngLat(lngLat)
      .setHTML(unitHtml(p, null)).addTo(map);
    window.trafficunit.popupShown = true;
    fetch(`/units/${encodeURIComponent(p.unit_id)}`).then((r) => r.ok ? r.json() : null).then((u) => {
      if (u) popup.setHTML(unitHtml(Object.assign({}, p, u.properties), u));
    });
  }

  function unitHtml(p, full) {
    const rows = [
      ["kind", p.kind], ["road", [p.name, p.ref].filter(Boolean).join(" ") || "-"],
      ["class", p.road_class], ["speed limit", p.maxspeed_kmh != null ? `${p.maxspeed_kmh} km/h` : "-"],
      ["lanes", p.lanes], ["length", p.length_m ? `${fmt(p.length_m)} m` : "-"],
      ["crashes", p.crashes], ["K / A", p.K != null ? `${p.K} / ${p.A}` : "-"],
      ["EPDO / km", p.epdo_per_km], ["EB excess", p.eb_excess],
      ["percentile", p.score_percentile], ["open hazards", p.open_hazards],
    ].filter((r) => r[1] !== undefined && r[1] !== null && r[1] !== "");
    let html = `<div class="popup"><h3>${esc(p.unit_id)} <span class="level" ` +
      `style="background:${esc(p.colour || "#ccc")}">${esc(p.level || "")}</span></h3><table>`;
    rows.forEach((r) => { html += `<tr><td>${esc(r[0])}</td><td>${esc(fmt(r[1]))}</td></tr>`; });
    html += "</table>";
    if (full) {
      html += `<p>${full.accidents.length} accidents · ${full.hazards.length} hazards · ` +
        `${full.workzones.length} work zones</p>`;
    }
    return html + "</div>";
  }
})();
