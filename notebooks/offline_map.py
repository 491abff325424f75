"""Interactive maps for the notebooks that work without an internet connection.

The map is a small HTML page running MapLibre GL JS — the copy vendored in the ``server``
package for the project's web map — with the data inlined as GeoJSON, shown in an ``<iframe
srcdoc>``. Nothing is fetched from the network: no CDN, no background tiles (the roads are the
map). Pan, zoom, and click a feature for its attributes.

>>> from offline_map import MapLayer, offline_map
>>> offline_map(MapLayer(units, color="colour", popup=["name", "level"]))  # doctest: +SKIP

:func:`offline_map` returns an object Jupyter displays as the map; ``.save(path)`` writes the
same page as a standalone HTML file. The page is about 1.1 MB (MapLibre itself), so
``notebooks/execute.py`` replaces these outputs by a one-line note before notebooks are committed.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

#: Output metadata key marking a displayed offline map (``execute.py`` strips those outputs).
METADATA_KEY = "trafficunit_offline_map"
PLACEHOLDER = "[interactive map: run the notebook to pan and zoom it (works offline)]"


@dataclass
class MapLayer:
    """One layer of an :func:`offline_map`.

    Attributes
    ----------
    frame
        Features to draw (any CRS; shown in WGS84). Points draw as circles, lines as lines,
        polygons as filled areas.
    color
        A CSS colour for every feature, or the name of a column holding one per feature
        (e.g. the ``colour`` column of :func:`trafficunit.score`).
    size
        Line width or circle radius in pixels: a number, a column name or an array.
    popup
        Columns listed when a feature is clicked.
    name
        Layer name (shown in the legend when ``legend`` is given to :func:`offline_map`).
    opacity
        0-1.
    """

    frame: gpd.GeoDataFrame
    color: str = "#2c7bb6"
    size: float | str | Sequence[float] | np.ndarray = 2.0
    popup: Sequence[str] = field(default_factory=list)
    name: str | None = None
    opacity: float = 0.9

    def geojson(self) -> dict[str, Any]:
        """The layer's features as a GeoJSON FeatureCollection in WGS84 (6 decimals)."""
        gdf = self.frame
        if gdf.crs is None:
            raise ValueError(f"layer {self.name!r}: the frame has no CRS")
        gdf = gdf.to_crs(4326) if not gdf.crs.equals("EPSG:4326") else gdf
        keep = [c for c in self.popup if c in gdf.columns]
        props = pd.DataFrame(index=gdf.index)
        for col in keep:
            s = gdf[col]
            if pd.api.types.is_float_dtype(s):
                s = s.round(3)
            props[col] = (
                s.astype(object)
                .where(s.notna(), None)
                .map(lambda v: v if isinstance(v, (int, float, bool, type(None))) else str(v))
            )
        colour = gdf[self.color] if self.color in gdf.columns else pd.Series(self.color, gdf.index)
        props["_c"] = colour.astype(str).to_numpy()
        if isinstance(self.size, str):
            size = pd.to_numeric(gdf[self.size], errors="coerce").to_numpy(dtype=float)
        else:
            size = np.broadcast_to(np.asarray(self.size, dtype=float), (len(gdf),))
        props["_s"] = np.nan_to_num(size, nan=1.0)
        geoms = shapely.set_precision(np.asarray(gdf.geometry.array), 1e-6)
        ok = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        records = props.loc[ok].to_dict(orient="records")
        shapes = [shapely.geometry.mapping(g) for g in geoms[ok]]
        return {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "geometry": g, "properties": p}
                for g, p in zip(shapes, records, strict=True)
            ],
        }

    def kind(self) -> str:
        """``circle``, ``line`` or ``fill`` from the geometry types."""
        types = set(self.frame.geometry.geom_type.dropna())
        if types <= {"Point", "MultiPoint"}:
            return "circle"
        if types <= {"LineString", "MultiLineString", "LinearRing"}:
            return "line"
        if types <= {"Polygon", "MultiPolygon"}:
            return "fill"
        raise ValueError(f"layer {self.name!r}: mixed geometry types {sorted(types)}")


def _vendor(name: str) -> str:
    return (files("trafficunit_server") / "static" / "vendor" / "maplibre-gl" / name).read_text("utf-8")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{css}</style>
<style>
html, body, #map {{ margin: 0; height: 100%; font: 12px/1.4 system-ui, sans-serif; }}
#legend {{ position: absolute; left: 8px; bottom: 8px; background: #fffe; padding: 6px 8px;
          border-radius: 4px; box-shadow: 0 1px 3px #0004; }}
#legend span {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px;
               vertical-align: -2px; border-radius: 2px; }}
.maplibregl-popup-content td {{ padding: 0 6px 0 0; }}
</style></head>
<body><div id="map"></div>{legend}
<script>{js}</script>
<script>
const LAYERS = {layers};
const map = new maplibregl.Map({{
  container: "map",
  style: {{version: 8, sources: {{}},
           layers: [{{id: "background", type: "background",
                      paint: {{"background-color": "#f5f5f2"}}}}]}},
  bounds: {bounds}, fitBoundsOptions: {{padding: 24}}, attributionControl: false,
}});
window.offlineMap = map;
map.addControl(new maplibregl.NavigationControl(), "top-right");
map.addControl(new maplibregl.ScaleControl(), "bottom-right");
map.on("load", () => {{
  for (const layer of LAYERS) {{
    map.addSource(layer.id, {{type: "geojson", data: layer.data}});
    const paint = {{
      circle: {{"circle-color": ["get", "_c"], "circle-radius": ["get", "_s"],
                "circle-opacity": layer.opacity, "circle-stroke-color": "#000",
                "circle-stroke-width": 0.5}},
      line: {{"line-color": ["get", "_c"], "line-width": ["get", "_s"],
              "line-opacity": layer.opacity}},
      fill: {{"fill-color": ["get", "_c"], "fill-opacity": layer.opacity * 0.4,
              "fill-outline-color": "#000"}},
    }}[layer.kind];
    const spec = {{id: layer.id, type: layer.kind, source: layer.id, paint: paint}};
    if (layer.kind === "line") spec.layout = {{"line-cap": "round", "line-join": "round"}};
    map.addLayer(spec);
    map.on("mouseenter", layer.id, () => {{ map.getCanvas().style.cursor = "pointer"; }});
    map.on("mouseleave", layer.id, () => {{ map.getCanvas().style.cursor = ""; }});
    map.on("click", layer.id, (e) => {{
      const p = e.features[0].properties;
      const rows = layer.popup.filter((k) => p[k] !== undefined && p[k] !== null)
        .map((k) => "<tr><td><b>" + k + "</b></td><td>" +
             String(p[k]).replace(/[&<>]/g, (c) => ({{"&": "&amp;", "<": "&lt;", ">": "&gt;"}}[c]))
             + "</td></tr>");
      if (rows.length) new maplibregl.Popup().setLngLat(e.lngLat)
        .setHTML("<table>" + rows.join("") + "</table>").addTo(map);
    }});
  }}
  map.once("idle", () => {{ window.offlineMapReady = true; }});
}});
</script></body></html>
"""


class OfflineMap:
    """A map page; Jupyter displays it in an iframe, :meth:`save` writes it to a file."""

    def __init__(self, page: str, height: int) -> None:
        self.page = page
        self.height = height

    def iframe(self) -> str:
        """The ``<iframe srcdoc>`` element Jupyter shows."""
        return (
            f'<iframe srcdoc="{html.escape(self.page, quote=True)}" '
            f'style="width: 100%; height: {self.height}px; border: 1px solid #ddd;"></iframe>'
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        data = {"text/html": self.iframe(), "text/plain": PLACEHOLDER}
        return data, {"text/html": {METADATA_KEY: True}}

    def save(self, path: str | Path) -> Path:
        """Write the page as a standalone HTML file (opens offline in any browser)."""
        out = Path(path)
        out.write_text(self.page, encoding="utf-8")
        return out


def offline_map(
    *layers: MapLayer,
    height: int = 520,
    legend: dict[str, str] | None = None,
    title: str = "trafficunit map",
) -> OfflineMap:
    """An interactive map of ``layers`` (drawn in order, the last on top), without network.

    Parameters
    ----------
    layers
        The layers (:class:`MapLayer`).
    height
        Height of the map in the notebook, pixels.
    legend
        ``{label: colour}`` entries of a small legend box.
    title
        Title of the standalone page.
    """
    if not layers:
        raise ValueError("give at least one MapLayer")
    bounds = np.array(
        [lyr.frame.to_crs(4326).total_bounds for lyr in layers if len(lyr.frame)], dtype=float
    )
    if not len(bounds):
        raise ValueError("every layer is empty")
    box = [
        [float(bounds[:, 0].min()), float(bounds[:, 1].min())],
        [float(bounds[:, 2].max()), float(bounds[:, 3].max())],
    ]
    spec = [
        {
            "id": f"layer{i}",
            "name": lyr.name,
            "kind": lyr.kind(),
            "popup": list(lyr.popup),
            "opacity": lyr.opacity,
            "data": lyr.geojson(),
        }
        for i, lyr in enumerate(layers)
    ]
    legend_html = ""
    if legend:
        legend_html = (
            '<div id="legend">'
            + "<br>".join(
                f'<span style="background:{html.escape(c)}"></span>{html.escape(label)}'
                for label, c in legend.items()
            )
            + "</div>"
        )
    page = _PAGE.format(
        title=html.escape(title),
        css=_vendor("maplibre-gl.css"),
        js=_vendor("maplibre-gl.js").replace("</script", "<\\/script"),
        layers=json.dumps(spec, separators=(",", ":")).replace("</", "<\\/"),
        bounds=json.dumps(box),
        legend=legend_html,
    )
    return OfflineMap(page, height)
