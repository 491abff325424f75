"""The MapLibre style of the risk layers (no basemap: works offline)."""

from __future__ import annotations

from typing import Any

from trafficunit.tiles import LEVEL_COLOURS

#: Legend labels of the four levels.
LEVEL_LABELS = {
    "red": "red: major risk (重大)",
    "orange": "orange: high risk (较大)",
    "yellow": "yellow: moderate risk (一般)",
    "blue": "blue: low risk (低)",
    "none": "not scored",
}
SEVERITY_COLOURS = {"K": "#67000d", "A": "#cb181d", "B": "#fb6a4a", "C": "#fcae91", "O": "#969696"}


def legend(rule: dict[str, Any], counts: dict[str, int] | None = None) -> dict[str, Any]:
    """Legend entries (level, colour, label, count) and sentences explaining the rule.

    ``rule`` is ``risk.attrs["rule"]`` (:func:`trafficunit.score`); its bands label the levels.
    """
    counts = counts or {}
    bands = {b.get("level"): b for b in rule.get("bands", []) if isinstance(b, dict)}
    levels = []
    for lv in ("red", "orange", "yellow", "blue"):
        band = bands.get(lv, {})
        label = f"{lv}: {band['label']}" if band.get("label") else LEVEL_LABELS[lv]
        levels.append(
            {
                "level": lv,
                "colour": band.get("colour", LEVEL_COLOURS[lv]),
                "label": label,
                "count": int(counts.get(lv, 0)),
            }
        )
    explanation = []
    if isinstance(rule.get("measure"), dict):
        measures = sorted(set(map(str, rule["measure"].values())))
        explanation.append(
            f"score: {', '.join(measures)} ranked as a percentile within "
            f"{' x '.join(map(str, rule.get('population', []))) or 'the network'}"
        )
    guards = rule.get("guards")
    if isinstance(guards, dict) and guards.get("text"):
        explanation.append(str(guards["text"]))
    if rule.get("hazard_text"):
        explanation.append(str(rule["hazard_text"]))
    if rule.get("epdo_version"):
        explanation.append(f"EPDO weights {rule['epdo_version']}")
    if rule.get("period"):
        explanation.append(f"period {' to '.join(str(p)[:10] for p in rule['period'])}")
    if not explanation and rule.get("text"):
        explanation.append(str(rule["text"]))
    return {
        "levels": levels,
        "explanation": explanation,
        "rule": rule,
        "severity_colours": SEVERITY_COLOURS,
    }


def style(
    base_url: str,
    *,
    risk_tileset: str | None,
    live: list[str],
    legend_data: dict[str, Any],
    live_zooms: tuple[int, int] = (10, 18),
) -> dict[str, Any]:
    """A MapLibre style: units by level, intersections, work zones, hazards, accidents.

    ``risk_tileset`` is the stored archive (``risk``); the live sources are added too so the web
    map can switch accidents to the filtered live layer.
    """
    base = base_url.rstrip("/")
    sources: dict[str, Any] = {}
    layers: list[dict[str, Any]] = [
        {"id": "background", "type": "background", "paint": {"background-color": "#f4f3ef"}}
    ]
    if risk_tileset:
        sources["risk"] = {"type": "vector", "url": f"{base}/tiles/{risk_tileset}/tilejson.json"}
    for name in live:
        # tiles, not a TileJSON url: the web map swaps the tile URL's filter query with setTiles
        sources[name] = {
            "type": "vector",
            "tiles": [f"{base}/tiles/{name}/{{z}}/{{x}}/{{y}}.mvt"],
            "minzoom": live_zooms[0],
            "maxzoom": live_zooms[1],
        }
    width = ["interpolate", ["linear"], ["zoom"], 8, 1.0, 13, 2.5, 16, 6]
    if "risk" in sources:
        layers += [
            {
                "id": "units-casing",
                "type": "line",
                "source": "risk",
                "source-layer": "units",
                "filter": ["==", ["geometry-type"], "LineString"],
                "layout": {"line-cap": "round", "line-join": "round"},
                "paint": {
                    "line-color": [
                        "case",
                        ["boolean", ["feature-state", "selected"], False],
                        "#000000",
                        "#ffffff",
                    ],
                    "line-width": ["interpolate", ["linear"], ["zoom"], 8, 2.5, 13, 4.5, 16, 9],
                },
            },
            {
                "id": "units-segments",
                "type": "line",
                "source": "risk",
                "source-layer": "units",
                "filter": ["==", ["geometry-type"], "LineString"],
                "layout": {
                    "line-cap": "round",
                    "line-join": "round",
                    "line-sort-key": ["get", "level_rank"],
                },
                "paint": {
                    "line-color": ["coalesce", ["get", "colour"], "#8c8c8c"],
                    "line-width": width,
                },
            },
            {
                "id": "units-intersections",
                "type": "circle",
                "source": "risk",
                "source-layer": "units",
                "filter": ["==", ["geometry-type"], "Point"],
                "paint": {
                    "circle-color": ["coalesce", ["get", "colour"], "#8c8c8c"],
                    "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 2, 16, 7],
                    "circle-stroke-color": [
                        "case",
                        ["boolean", ["feature-state", "selected"], False],
                        "#000000",
                        "#ffffff",
                    ],
                    "circle-stroke-width": 1.2,
                },
            },
            {
                "id": "workzones",
                "type": "line",
                "source": "risk",
                "source-layer": "workzones",
                "paint": {"line-color": "#7b3294", "line-width": 3, "line-dasharray": [2, 1.5]},
            },
            {
                "id": "accidents",
                "type": "circle",
                "source": "risk",
                "source-layer": "accidents",
                "paint": _accident_paint(),
            },
            {
                "id": "hazards",
                "type": "circle",
                "source": "risk",
                "source-layer": "hazards",
                "paint": _hazard_paint(),
            },
        ]
    if "live-accidents" in sources:
        layers.append(
            {
                "id": "accidents-live",
                "type": "circle",
                "source": "live-accidents",
                "source-layer": "accidents",
                "layout": {"visibility": "none"},
                "paint": _accident_paint(),
            }
        )
    return {
        "version": 8,
        "name": "trafficunit risk",
        "metadata": {"trafficunit:legend": legend_data},
        "sources": sources,
        "layers": layers,
    }


def _accident_paint() -> dict[str, Any]:
    match: list[Any] = ["match", ["get", "severity"]]
    for k, v in SEVERITY_COLOURS.items():
        match += [k, v]
    match.append("#969696")
    return {
        "circle-color": match,
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 1.5, 16, 4.5],
        "circle-stroke-color": "#ffffff",
        "circle-stroke-width": 0.6,
        "circle-opacity": 0.9,
    }


def _hazard_paint() -> dict[str, Any]:
    return {
        "circle-color": "#ffffff",
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 2.5, 16, 6],
        "circle-stroke-color": ["match", ["get", "grade"], "major", "#7a0177", "#e08214"],
        "circle-stroke-width": ["interpolate", ["linear"], ["zoom"], 10, 1.5, 16, 3],
    }
