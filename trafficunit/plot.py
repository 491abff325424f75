"""Figures for notebooks and reports (matplotlib): risk map, hour x weekday heat map, severity mix.

Every function draws on ``ax`` when given (else on a new figure) and returns the Axes, so the
figures compose and can be saved with ``ax.figure.savefig(path)``.

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import pandas as pd
>>> ax = hour_weekday_heatmap(pd.DataFrame({"time": pd.to_datetime(["2024-05-06 08:30"])}))
>>> ax.get_xlabel()
'hour of day'
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from ._errors import ValidationError
from .settings import RISK_COLOURS, RISK_LEVELS
from .timefilter import WEEKDAYS, hour_weekday

__all__ = ["risk_map", "hour_weekday_heatmap", "severity_mix", "SEVERITY_COLOURS"]

#: Colours of KABCO severities in severity-mix charts (fatal darkest).
SEVERITY_COLOURS: dict[str, str] = {
    "K": "#67000d",
    "A": "#d7191c",
    "B": "#fdae61",
    "C": "#fee08b",
    "O": "#bababa",
}
_LINE_WIDTH = {"blue": 0.6, "yellow": 1.2, "orange": 1.8, "red": 2.6}


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def risk_map(
    risk: gpd.GeoDataFrame,
    *,
    ax: Any = None,
    spots: gpd.GeoDataFrame | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (9.0, 9.0),
    legend: bool = True,
    intersections: bool = True,
    label_top: int = 0,
) -> Any:
    """The four-colour risk map: segments as coloured lines, risky intersections as dots.

    Parameters
    ----------
    risk
        Output of :func:`trafficunit.score` (``level``, ``colour``, ``kind``).
    spots
        Black spots (:func:`trafficunit.find_black_spots`) to outline: sections as black
        dashed lines, points as open circles.
    title
        Figure title; default says the rule and period from ``risk.attrs``.
    legend
        Draw a legend with the band labels of ``risk.attrs["rule"]`` and unit counts.
    intersections
        Draw intersections whose level is above blue.
    label_top
        Label this many black spots (highest EPDO first) with their ``spot_id``.
    """
    if "level" not in risk.columns:
        raise ValidationError("risk_map needs a 'level' column; compute it with tu.score")
    if ax is None and figsize == (9.0, 9.0) and len(risk):
        figsize = _map_figsize(risk)
    ax = _axes(ax, figsize)
    rule = risk.attrs.get("rule", {}) if isinstance(risk.attrs, dict) else {}
    colours = {**RISK_COLOURS, **rule.get("colours", {})}
    seg = risk.loc[risk["kind"] == "segment"] if "kind" in risk.columns else risk
    node = risk.loc[risk["kind"] == "intersection"] if "kind" in risk.columns else risk.iloc[:0]
    for level in RISK_LEVELS:  # blue first, red on top
        part = seg.loc[seg["level"] == level]
        if len(part):
            part.plot(ax=ax, color=colours[level], linewidth=_LINE_WIDTH[level], zorder=1)
    if intersections and len(node):
        for k, level in enumerate(RISK_LEVELS[1:], start=2):
            part = node.loc[node["level"] == level]
            if len(part):
                part.plot(
                    ax=ax,
                    color=colours[level],
                    markersize=8 + 10 * (k - 1),
                    edgecolor="black",
                    linewidth=0.4,
                    zorder=2 + k,
                )
    has_spots = spots is not None and len(spots) > 0
    if spots is not None and has_spots:
        _draw_spots(ax, spots, risk.crs, label_top)
    if legend:
        _legend(ax, risk, rule, colours, has_spots)
    if title is None:
        period = rule.get("period")
        measure = rule.get("measure", {})
        m = measure.get("segment") if isinstance(measure, dict) else measure
        title = f"Risk levels: {rule.get('scheme', '')} of {m}"
        if period:
            title += f", {str(period[0])[:10]} – {str(period[1])[:10]}"
    ax.set_title(title, fontsize=10)
    ax.set_aspect(
        "equal"
        if risk.crs is None or risk.crs.is_projected
        else 1 / np.cos(np.deg2rad(float(np.nanmean(risk.total_bounds[[1, 3]]))))
    )
    ax.set_axis_off()
    return ax


def _map_figsize(risk: gpd.GeoDataFrame) -> tuple[float, float]:
    """A figure shaped like the map's extent (9 inches on its long side, room for a legend)."""
    x0, y0, x1, y1 = risk.total_bounds
    if not (x1 > x0 and y1 > y0):
        return (9.0, 9.0)
    if risk.crs is not None and risk.crs.is_geographic:
        x1 = x0 + (x1 - x0) * np.cos(np.deg2rad((y0 + y1) / 2))
    ratio = float(np.clip((y1 - y0) / (x1 - x0), 0.5, 2.0))
    return (9.0, 9.0 * ratio + 1.2) if ratio < 1 else (9.0 / ratio, 10.2)


def _draw_spots(ax: Any, spots: gpd.GeoDataFrame, crs: Any, label_top: int) -> None:
    """Sections as black dashed lines, points as open circles; the worst labelled."""
    spots = spots.to_crs(crs) if spots.crs is not None and crs is not None else spots
    lines = spots.loc[spots["type"] == "section"]
    pts = spots.loc[spots["type"] == "point"]
    if len(lines):
        lines.plot(ax=ax, color="black", linewidth=1.0, linestyle="--", zorder=8)
    if len(pts):
        pts.plot(
            ax=ax, facecolor="none", edgecolor="black", markersize=120, linewidth=1.2, zorder=9
        )
    if label_top:
        best = spots.sort_values("epdo", ascending=False).head(label_top)
        for sid, geom in zip(best["spot_id"], best.geometry, strict=True):
            if geom is None or geom.is_empty:
                continue
            p = geom.representative_point()
            ax.annotate(
                sid, (p.x, p.y), fontsize=7, xytext=(4, 4), textcoords="offset points", zorder=10
            )


def _legend(
    ax: Any,
    risk: gpd.GeoDataFrame,
    rule: dict[str, Any],
    colours: dict[str, str],
    with_spots: bool,
) -> None:
    """Levels with their unit counts and band labels, then the black-spot symbols."""
    from matplotlib.lines import Line2D

    counts = risk["level"].value_counts()
    labels = {b["level"]: b["label"] for b in rule.get("bands", [])}
    handles = []
    for level in RISK_LEVELS[::-1]:
        text = f"{level} ({int(counts.get(level, 0))})"
        if level in labels:
            text += f": {labels[level]}"
        handles.append(Line2D([0], [0], color=colours[level], linewidth=3, label=text))
    if with_spots:
        handles.append(Line2D([0], [0], color="black", linestyle="--", label="black-spot section"))
        handles.append(
            Line2D(
                [0],
                [0],
                marker="o",
                linestyle="none",
                markerfacecolor="none",
                markeredgecolor="black",
                label="black-spot point",
            )
        )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.01),
        ncols=2,
        fontsize=7,
        frameon=False,
    )


def hour_weekday_heatmap(
    events: pd.DataFrame,
    *,
    ax: Any = None,
    cmap: str = "magma_r",
    annotate: bool = False,
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 3.6),
) -> Any:
    """Accidents by weekday (rows) and hour of day (columns).

    ``events`` is a joined/events frame with a ``time`` column, or a 7 x 24 table from
    :func:`trafficunit.timefilter.hour_weekday`.
    """
    if events.shape == (7, 24) and "time" not in events.columns:
        table = events
        left_out = 0
    else:
        table = hour_weekday(events)
        left_out = int(table.attrs.get("left_out", 0))
    ax = _axes(ax, figsize)
    values = table.to_numpy(dtype=float)
    im = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_yticks(range(7), list(WEEKDAYS))
    ax.set_xticks(range(0, 24, 2), [str(h) for h in range(0, 24, 2)])
    ax.set_xlabel("hour of day")
    if annotate:
        for (r, c), v in np.ndenumerate(values):
            if v:
                ax.text(c, r, f"{int(v)}", ha="center", va="center", fontsize=6)
    ax.figure.colorbar(im, ax=ax, label="accidents", fraction=0.03)
    if title is None:
        title = f"Accidents by weekday and hour (n = {int(values.sum())}"
        title += f", {left_out} without a timestamp left out)" if left_out else ")"
    ax.set_title(title, fontsize=10)
    return ax


def severity_mix(
    data: pd.DataFrame,
    *,
    by: str = "road_class",
    ax: Any = None,
    normalize: bool = True,
    top: int | None = 12,
    title: str | None = None,
    figsize: tuple[float, float] = (8.0, 4.5),
) -> Any:
    """Stacked bars of KABCO severities per group (road class, level, light condition...).

    ``data`` is a risk frame (per-unit ``K``..``O`` counts) or events with a ``severity``
    column; ``by`` names the grouping column. ``normalize`` shows shares instead of counts;
    ``top`` keeps the groups with most accidents.
    """
    letters = list(SEVERITY_COLOURS)
    if by not in data.columns:
        raise ValidationError(f"severity_mix: no column {by!r} to group by")
    if all(c in data.columns for c in letters):
        table = data.groupby(data[by].astype("string").fillna("unknown"))[letters].sum()
    elif "severity" in data.columns:
        sev = data["severity"].astype("string").str.upper()
        table = pd.crosstab(data[by].astype("string").fillna("unknown"), sev)
        table = table.reindex(columns=letters, fill_value=0)
    else:
        raise ValidationError("severity_mix needs K..O count columns or a 'severity' column")
    total = table.sum(axis=1)
    table = table.loc[total > 0]
    table = table.loc[table.sum(axis=1).sort_values(ascending=False).index]
    if top is not None:
        table = table.head(top)
    shown = table.div(table.sum(axis=1), axis=0) if normalize else table
    ax = _axes(ax, figsize)
    left = np.zeros(len(shown))
    y = np.arange(len(shown))
    for letter in letters:
        v = shown[letter].to_numpy(dtype=float)
        ax.barh(y, v, left=left, color=SEVERITY_COLOURS[letter], label=letter, edgecolor="white")
        left += v
    ax.set_yticks(
        y, [f"{g} (n={int(n)})" for g, n in zip(shown.index, table.sum(axis=1), strict=True)]
    )
    ax.invert_yaxis()
    ax.set_xlabel("share of accidents" if normalize else "accidents")
    ax.legend(ncols=5, loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    ax.set_title(title or f"Severity mix by {by}", fontsize=10)
    return ax
