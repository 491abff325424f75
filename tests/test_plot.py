"""Figures draw what the data says (Agg backend, no display)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import trafficunit as tu
from trafficunit import plot
from trafficunit.settings import RISK_COLOURS

from ._risk_net import SPEC, crashes, network


@pytest.fixture()
def scored() -> tuple[Any, Any, Any]:
    units = network()
    joined = crashes(units, SPEC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tu.TrafficUnitWarning)
        risk = tu.score(
            units,
            joined,
            period=("2021-01-01", "2022-12-31"),
            measure="epdo",
            scheme="fixed",
            bands=(10, 100, 500),
        )
        spots = tu.find_black_spots(units, joined)
    return risk, spots, joined


def test_risk_map_colours_lines_by_level(scored: tuple[Any, Any, Any], tmp_path: Path) -> None:
    risk, spots, _ = scored
    ax = plot.risk_map(risk, spots=spots, label_top=1)
    # line collections: one per level present among segments (red, yellow, blue) + the section
    colours = {
        matplotlib.colors.to_hex(np.asarray(c.get_edgecolor())[0].tolist())
        for c in ax.collections
        if isinstance(c, matplotlib.collections.LineCollection)
    }
    assert {RISK_COLOURS["red"], RISK_COLOURS["yellow"], RISK_COLOURS["blue"]} <= colours
    assert "#000000" in colours  # the black-spot section outline
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("red (1): epdo >= 500")
    assert labels[2].startswith("yellow (2)")  # S2 and the intersection
    assert any(t.get_text() == "BS0001" for t in ax.texts)
    out = tmp_path / "map.png"
    ax.figure.savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close(ax.figure)


def test_hour_weekday_heatmap_shows_the_table() -> None:
    t = pd.to_datetime(["2024-05-06 08:10", "2024-05-06 08:50", "2024-05-12 23:00"])
    ev = pd.DataFrame({"time": t.tz_localize("Europe/Helsinki"), "hour": t.hour})
    ax = plot.hour_weekday_heatmap(ev)
    img = ax.images[0].get_array()
    assert img.shape == (7, 24)
    assert img[0, 8] == 2 and img[6, 23] == 1 and img.sum() == 3
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "Mon"
    plt.close(ax.figure)


def test_severity_mix_bars_are_shares(scored: tuple[Any, Any, Any]) -> None:
    risk, _, joined = scored
    ax = plot.severity_mix(risk, by="road_class")
    # primary: S1 K O, S2 B B C, S3 O, IA A -> 7 accidents; K share 1/7
    widths = dict(zip("KABCO", (p.get_width() for p in ax.patches), strict=True))
    assert widths["K"] == pytest.approx(1 / 7)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["primary (n=7)"]
    plt.close(ax.figure)
    ax2 = plot.severity_mix(joined, by="match", normalize=False)
    assert sum(p.get_width() for p in ax2.patches) == pytest.approx(7)
    plt.close(ax2.figure)


def test_plots_refuse_unscored_frames() -> None:
    with pytest.raises(tu.ValidationError, match="tu.score"):
        plot.risk_map(network())
