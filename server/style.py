"""The MapLibre style of the risk layers and the legend in plain words (zh-CN / en)."""

from __future__ import annotations

from typing import Any

from trafficunit.tiles import LEVEL_COLOURS

from .i18n import LANGUAGES, t

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
        "plain": {lang: plain_legend(rule, lang) for lang in LANGUAGES},
        "explanation": explanation,
        "rule": rule,
        "severity_colours": SEVERITY_COLOURS,
    }


def _num(x: Any) -> str:
    return f"{float(x):g}"


def _measure_phrase(rule: dict[str, Any], lang: str) -> str:
    measures = rule.get("measure") or {}
    names = list(dict.fromkeys(map(str, measures.values()))) if isinstance(measures, dict) else []
    words = []
    for m in names or ["crashes"]:
        try:
            words.append(t(lang, f"measure.{m}"))
        except KeyError:
            words.append(m)
    return " / ".join(words)


def _population_phrase(rule: dict[str, Any], lang: str) -> str:
    pop = [str(p) for p in rule.get("population", [])]
    pop = sorted(pop, key=lambda p: (p != "kind", p))  # "kind and road class"
    if not pop:
        return t(lang, "population.network")
    words = []
    for p in pop:
        try:
            words.append(t(lang, f"population.{p}"))
        except KeyError:
            words.append(p)
    return t(lang, "population.and").join(words)


def plain_legend(rule: dict[str, Any], lang: str) -> dict[str, Any]:
    """The four levels and the rule's guards in plain words, from the message catalogue.

    ``{"levels": [{"level", "text"}], "notes": [str]}``: e.g. "red: the 5 % of units of their
    kind and road class with the most crashes above what is expected for such a road".
    """
    bands = [b for b in rule.get("bands", []) if isinstance(b, dict)]
    scheme = rule.get("scheme")
    measure = _measure_phrase(rule, lang)
    population = _population_phrase(rule, lang)
    levels: list[dict[str, str]] = []
    first = True
    for b in bands:
        lv = str(b.get("level"))
        name = t(lang, f"level.{lv}") if lv in LEVEL_LABELS else lv
        lo, hi = b.get("min"), b.get("max")
        if scheme == "percentile":
            if lo is None:
                text = t(lang, "legend.rest", level=name)
            else:
                share = _num((100.0 if hi is None else float(hi)) - float(lo))
                key = "legend.top" if first else "legend.next"
                text = t(lang, key, level=name, share=share, population=population, measure=measure)
        elif scheme == "length_share" and b.get("share_percent") is not None:
            key = "legend.length_top" if first else "legend.length_next"
            text = t(lang, key, level=name, share=_num(b["share_percent"]), measure=measure)
        elif scheme in ("fixed", "matrix"):
            pre = "legend.fixed_" if scheme == "fixed" else "legend.matrix_"
            if hi is None and lo is not None:
                text = t(lang, pre + "min", level=name, measure=measure, min=_num(lo))
            elif lo is None and hi is not None:
                text = t(lang, pre + "below", level=name, measure=measure, max=_num(hi))
            else:
                text = t(
                    lang, pre + "between", level=name, measure=measure, min=_num(lo), max=_num(hi)
                )
        else:  # an unknown scheme: the library's own label
            text = f"{name}: {b.get('label', '')}"
        first = False
        levels.append({"level": lv, "text": text})
    notes: list[str] = []
    guards = rule.get("guards") if isinstance(rule.get("guards"), dict) else {}
    assert isinstance(guards, dict)
    n_min = int(guards.get("min_crashes") or 0)
    measures = (
        set((rule.get("measure") or {}).values())
        if isinstance(rule.get("measure"), dict)
        else set()
    )
    if guards.get("positive_only") and measures == {"eb_excess"}:
        notes.append(t(lang, "legend.guard_positive"))
        if n_min > 1:
            notes.append(t(lang, "legend.guard_min", n=n_min))
    elif n_min >= 1:
        notes.append(t(lang, "legend.guard_min", n=n_min))
    raise_ = rule.get("hazard_raise")
    if isinstance(raise_, dict) and raise_:
        g = int(raise_.get("general", 0))
        m = int(raise_.get("major", g))
        notes.append(
            t(
                lang,
                "legend.hazards",
                general=t(lang, "legend.steps", n=g),
                major=t(lang, "legend.steps", n=m),
            )
        )
    period = rule.get("period")
    if isinstance(period, list | tuple) and len(period) == 2 and all(period):
        notes.append(
            t(lang, "legend.period", **{"from": str(period[0])[:10], "to": str(period[1])[:10]})
        )
    return {"levels": levels, "notes": notes}


def style(
    base_url: str,
    *,
    risk_tileset: str | None,
    live: list[str],
    legend_data: dict[str, Any],
    live_zooms: tuple[int, int] = (10, 18),
    basemap: str | None = None,
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
    extra: dict[str, Any] = {}
    if basemap:
        sources["basemap"] = {"type": "vector", "url": f"{base}/tiles/{basemap}/tilejson.json"}
        layers += basemap_layers("basemap")
        extra["glyphs"] = f"{base}/static/vendor/glyphs/{{fontstack}}/{{range}}.pbf"
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
    if "risk" in sources:
        layers += risk_layers("risk")
    if "live-accidents" in sources:
        live_layer = _layer("accidents-live", "circle", "live-accidents", "accidents")
        layers.append({**live_layer, "layout": {"visibility": "none"}, "paint": _accident_paint()})
    return {
        "version": 8,
        "name": "trafficunit risk",
        "metadata": {"trafficunit:legend": legend_data},
        **extra,
        "sources": sources,
        "layers": layers,
    }


def _layer(id_: str, kind: str, source: str, src_layer: str, **rest: Any) -> dict[str, Any]:
    """One MapLibre layer: ``rest`` (filter, layout, paint...) after the four keys."""
    return {"id": id_, "type": kind, "source": source, "source-layer": src_layer, **rest}


#: Black when the feature is selected on the map, else white (casings and strokes).
_SELECTED = ["case", ["boolean", ["feature-state", "selected"], False], "#000000", "#ffffff"]
_LINES = ["==", ["geometry-type"], "LineString"]
_ROUND = {"line-cap": "round", "line-join": "round"}
_COLOUR = ["coalesce", ["get", "colour"], "#8c8c8c"]


def risk_layers(source: str) -> list[dict[str, Any]]:
    """Layers of the risk archive: unit casings, segments and intersections by level, work
    zones, accidents by severity and hazards by grade."""
    width = ["interpolate", ["linear"], ["zoom"], 8, 1.0, 13, 2.5, 16, 6]
    casing = ["interpolate", ["linear"], ["zoom"], 8, 2.5, 13, 4.5, 16, 9]
    return [
        _layer(
            "units-casing",
            "line",
            source,
            "units",
            filter=_LINES,
            layout=_ROUND,
            paint={"line-color": _SELECTED, "line-width": casing},
        ),
        _layer(
            "units-segments",
            "line",
            source,
            "units",
            filter=_LINES,
            layout={**_ROUND, "line-sort-key": ["get", "level_rank"]},
            paint={"line-color": _COLOUR, "line-width": width},
        ),
        _layer(
            "units-intersections",
            "circle",
            source,
            "units",
            filter=["==", ["geometry-type"], "Point"],
            paint={
                "circle-color": _COLOUR,
                "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 2, 16, 7],
                "circle-stroke-color": _SELECTED,
                "circle-stroke-width": 1.2,
            },
        ),
        _layer(
            "workzones",
            "line",
            source,
            "workzones",
            paint={"line-color": "#7b3294", "line-width": 3, "line-dasharray": [2, 1.5]},
        ),
        _layer("accidents", "circle", source, "accidents", paint=_accident_paint()),
        _layer("hazards", "circle", source, "hazards", paint=_hazard_paint()),
    ]


#: Font of the basemap labels (glyphs vendored in ``static/vendor/glyphs``; CJK from the
#: browser's fonts through MapLibre's ``localIdeographFontFamily``).
LABEL_FONT = ["DejaVu Sans"]
_PATHS = ["footway", "path", "cycleway", "steps", "track", "trail", "bridleway", "corridor"]
_MAJOR = [
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "motorway_link",
    "trunk_link",
    "primary_link",
    "secondary_link",
]


def basemap_layers(source: str) -> list[dict[str, Any]]:
    """Layers drawing the basemap archive (:func:`trafficunit.build_basemap`), muted so the
    risk colours stay readable; all ids start with ``basemap-``."""
    paths = ["match", ["get", "class"], _PATHS, True, False]
    major = ["match", ["get", "class"], _MAJOR, True, False]

    def layer(id_: str, kind: str, src_layer: str, **rest: Any) -> dict[str, Any]:
        return _layer(f"basemap-{id_}", kind, source, src_layer, **rest)

    road_w = [
        "interpolate",
        ["linear"],
        ["zoom"],
        12,
        ["case", major, 2.0, 1.0],
        16,
        ["case", major, 10.0, 6.0],
    ]
    casing_w = road_w[:4] + [["case", major, 3.5, 2.5], 16, ["case", major, 12.0, 8.0]]
    return [
        layer("parks", "fill", "parks", paint={"fill-color": "#dcebd0"}),
        layer(
            "water",
            "fill",
            "water",
            filter=["==", ["geometry-type"], "Polygon"],
            paint={"fill-color": "#b5d3e7"},
        ),
        layer(
            "waterways",
            "line",
            "water",
            filter=["==", ["geometry-type"], "LineString"],
            paint={"line-color": "#b5d3e7", "line-width": 2},
        ),
        layer(
            "buildings",
            "fill",
            "buildings",
            minzoom=14,
            paint={"fill-color": "#e3ded7", "fill-outline-color": "#d1cbc2"},
        ),
        layer(
            "rail",
            "line",
            "rail",
            paint={"line-color": "#b0aca6", "line-width": 1.2, "line-dasharray": [3, 2]},
        ),
        layer(
            "paths",
            "line",
            "roads",
            filter=paths,
            minzoom=14,
            paint={"line-color": "#c8b8a8", "line-width": 1, "line-dasharray": [2, 1.5]},
        ),
        *(
            layer(
                id_,
                "line",
                "roads",
                filter=["!", paths],
                layout=_ROUND,
                paint={"line-color": colour, "line-width": w},
            )
            for id_, colour, w in (
                ("roads-casing", "#d6d2ca", casing_w),
                ("roads", "#ffffff", road_w),
            )
        ),
        layer(
            "road-labels",
            "symbol",
            "roads",
            minzoom=14,
            filter=["has", "name"],
            layout={
                "symbol-placement": "line",
                "text-field": ["get", "name"],
                "text-font": LABEL_FONT,
                "text-size": 11,
                "text-offset": [0, 1.1],
            },
            paint={"text-color": "#6b655d", "text-halo-color": "#ffffff", "text-halo-width": 1.4},
        ),
        layer(
            "place-labels",
            "symbol",
            "places",
            filter=["has", "name"],
            layout={
                "text-field": ["get", "name"],
                "text-font": LABEL_FONT,
                "text-size": ["match", ["get", "class"], ["city", "town"], 16, 13],
                "text-transform": "uppercase",
                "text-letter-spacing": 0.08,
            },
            paint={"text-color": "#5d5850", "text-halo-color": "#ffffff", "text-halo-width": 1.6},
        ),
    ]


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
