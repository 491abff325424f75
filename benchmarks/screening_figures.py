"""Figures of the README's screening paragraph, measured on the real extracts in ../shared/data.

Run on demand: ``python benchmarks/screening_figures.py``. Prints, for the Helsinki city crash
table on the Helsinki centre extract: the match rate, the four-colour levels (2000-2022), the
black spots (2000-2022) with crash listings against distinct crashes, the same with every
carriageway screened alone, and Mannerheimintie 2020-2022 per carriageway and as a corridor;
for Portland's corridor-only crash file: the coverage report and its warnings.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import trafficunit as tu
from trafficunit import blackspots as bs

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _spots_line(spots: object, label: str) -> None:
    import pandas as pd

    assert isinstance(spots, pd.DataFrame)
    sec = spots.loc[spots["type"] == "section"]
    pts = spots.loc[spots["type"] == "point"]
    listed = sec["event_ids"].fillna("").str.split(";").explode()
    listed = listed[listed != ""]
    print(
        f"{label}: {len(pts)} points, {len(sec)} sections; section listings {len(listed):,}, "
        f"distinct crashes {listed.nunique():,}; crashes shared by a point and a section "
        f"{int(pts['overlap_crashes'].sum()):,}"
    )


def main() -> None:
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    roads = tu.read_network(DATA / "osm" / "helsinki-centre.osm.pbf")
    units = tu.build_units(roads)
    acc = tu.read_events(DATA / "crashes" / "helsinki-city-2000-2022.csv", preset="helsinki-city")
    joined = tu.assign(units, acc, max_distance_m=25)
    rep = joined.attrs["report"]
    print(f"Helsinki centre: {len(units):,} units")
    print(
        f"match: {rep['matched_share_inside']:.1%} of the crashes inside the network's area "
        "within 25 m"
    )
    risk = tu.score(units, joined)
    levels = risk["level"].value_counts()
    print(
        f"levels {risk.attrs['rule']['period_label']}: "
        + ", ".join(f"{lv} {int(levels.get(lv, 0))}" for lv in ("red", "orange", "yellow", "blue"))
    )
    full = ("2000-01-01", "2022-12-31")
    _spots_line(tu.find_black_spots(units, joined, period=full), "black spots 2000-2022")
    _spots_line(
        tu.find_black_spots(units, joined, period=full, corridors=False),
        "black spots 2000-2022, carriageways alone",
    )
    recent = ("2020-01-01", "2022-12-31")
    win = bs.sliding_windows(
        units, joined, period=recent, window_m=500, step_m=100, corridors=False
    )
    mh = win.loc[win["road"] == "Mannerheimintie", "crashes"]
    corr = bs.sliding_windows(units, joined, period=recent, window_m=500, step_m=100)
    mhc = corr.loc[(corr["road"] == "Mannerheimintie") & corr["corridor"], "crashes"]
    spots = tu.find_black_spots(units, joined, period=recent)
    sec = spots.loc[(spots["type"] == "section") & (spots["road"] == "Mannerheimintie")]
    print(
        f"Mannerheimintie 2020-2022, 500 m windows: at most {int(mh.max())} crashes per "
        f"carriageway, {int(mhc.max())} as a corridor; sections: "
        + ", ".join(
            f"{int(r.crashes)} crashes ({int(r.segment_crashes)} on segments, "
            f"{int(r.junction_crashes)} in junctions)"
            for r in sec.itertuples()
        )
    )
    p_roads = tu.read_network(DATA / "osm" / "portland-central.osm.pbf")
    p_units = tu.build_units(p_roads)
    p_acc = tu.read_events(DATA / "crashes" / "portland-corridors-2007-2015.csv", preset="portland")
    p_joined = tu.assign(p_units, p_acc)
    cov = tu.score(p_units, p_joined).attrs["coverage"]
    print(
        f"Portland corridors: {cov['share_with_crashes']:.1%} of {cov['units']:,} units with a "
        f"crash, k up to {cov['max_k']:.0f}, median EB weight {cov['median_eb_weight']:.3f}; "
        f"levels {cov['levels']}"
    )
    for w in cov["warnings"]:
        print(f"  warning: {w}")
    among = tu.score(
        p_units, p_joined, settings=tu.settings.RiskSettings(rank_among="with_crashes")
    )
    levels = among["level"].value_counts()
    print(
        "Portland, rank_among='with_crashes': "
        + ", ".join(f"{lv} {int(levels.get(lv, 0))}" for lv in ("red", "orange", "yellow", "blue"))
    )
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
