"""GCJ-02 / BD-09 ↔ WGS84 against published reference points, and round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

import trafficunit as tu
from trafficunit import chinacrs
from trafficunit.errors import CRSError

GEOD = Geod(ellps="WGS84")

# (wgs lon, wgs lat, gcj lon, gcj lat): the test table of googollee/eviltransform
# (Shanghai, Shenzhen, Beijing), computed with the published formula.
EVILTRANSFORM = [
    (121.5272106, 31.1774276, 121.531541859215, 31.17530398364597),
    (113.912316, 22.543847, 113.9171764808363, 22.540796131694766),
    (116.377817, 39.911954, 116.38404722455657, 39.91334545536069),
]
# wandergis/coordtransform README/test values for the point (116.404, 39.915).
COORDTRANSFORM = {
    "wgs84_to_gcj02": (116.41024449916938, 39.91640428150164),
    "gcj02_to_bd09": (116.41036949371029, 39.92133699351021),
    # their inverses are one-step approximations; exact inverses agree within a few cm
    "bd09_to_gcj02": (116.39762729119315, 39.90865673957631),
    "gcj02_to_wgs84": (116.39775550083061, 39.91359571849836),
}


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return float(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.mark.parametrize(("wlon", "wlat", "glon", "glat"), EVILTRANSFORM)
def test_forward_matches_eviltransform(wlon: float, wlat: float, glon: float, glat: float) -> None:
    lon, lat = chinacrs.wgs84_to_gcj02(wlon, wlat)
    assert float(lon) == pytest.approx(glon, abs=1e-9)
    assert float(lat) == pytest.approx(glat, abs=1e-9)


@pytest.mark.parametrize(("wlon", "wlat", "glon", "glat"), EVILTRANSFORM)
def test_inverse_recovers_eviltransform_inputs(
    wlon: float, wlat: float, glon: float, glat: float
) -> None:
    lon, lat = chinacrs.gcj02_to_wgs84(glon, glat)
    assert metres(float(lon), float(lat), wlon, wlat) < 0.001


def test_coordtransform_reference_values() -> None:
    x, y = 116.404, 39.915
    lon, lat = chinacrs.wgs84_to_gcj02(x, y)
    assert (float(lon), float(lat)) == pytest.approx(COORDTRANSFORM["wgs84_to_gcj02"], abs=1e-9)
    lon, lat = chinacrs.gcj02_to_bd09(x, y)
    assert (float(lon), float(lat)) == pytest.approx(COORDTRANSFORM["gcj02_to_bd09"], abs=1e-9)
    # the reference inverses are single-step approximations: ours are exact, so within 0.1 m
    # of BD-09's closed form and within ~a metre or two of GCJ-02's one-step inverse
    lon, lat = chinacrs.bd09_to_gcj02(x, y)
    assert metres(float(lon), float(lat), *COORDTRANSFORM["bd09_to_gcj02"]) < 0.1
    lon, lat = chinacrs.gcj02_to_wgs84(x, y)
    assert metres(float(lon), float(lat), *COORDTRANSFORM["gcj02_to_wgs84"]) < 5.0


def test_offsets_have_the_documented_size_in_shenzhen() -> None:
    # docs/domain.md: about 0.6 km for GCJ-02 and 1.2 km for BD-09 around Shenzhen
    lon, lat = 114.0579, 22.5431
    g = chinacrs.wgs84_to_gcj02(lon, lat)
    b = chinacrs.wgs84_to_bd09(lon, lat)
    assert 300 < metres(lon, lat, float(g[0]), float(g[1])) < 800
    assert 900 < metres(lon, lat, float(b[0]), float(b[1])) < 1500


@settings(max_examples=200, deadline=None)
@given(
    lon=st.floats(min_value=73.0, max_value=135.0),
    lat=st.floats(min_value=18.0, max_value=53.0),
)
def test_round_trips_are_far_below_a_metre(lon: float, lat: float) -> None:
    g = chinacrs.wgs84_to_gcj02(lon, lat)
    back = chinacrs.gcj02_to_wgs84(*g)
    assert metres(float(back[0]), float(back[1]), lon, lat) < 0.01
    b = chinacrs.wgs84_to_bd09(lon, lat)
    back = chinacrs.bd09_to_wgs84(*b)
    assert metres(float(back[0]), float(back[1]), lon, lat) < 0.01


def test_vectorised_with_nan_and_outside_china() -> None:
    lon = np.array([116.404, np.nan, 24.94, -0.1])
    lat = np.array([39.915, 30.0, 60.17, 51.5])
    g_lon, g_lat = chinacrs.wgs84_to_gcj02(lon, lat)
    assert g_lon.shape == (4,)
    assert np.isnan(g_lon[1])
    # outside China GCJ-02 is WGS84 (as in the reference implementations)
    assert g_lon[2:] == pytest.approx(lon[2:]) and g_lat[2:] == pytest.approx(lat[2:])
    w_lon, w_lat = chinacrs.gcj02_to_wgs84(g_lon, g_lat)
    assert np.isnan(w_lon[1]) and w_lon[0] == pytest.approx(116.404, abs=1e-9)


def test_a_million_points_round_trip_quickly() -> None:
    rng = np.random.default_rng(0)
    lon = rng.uniform(100, 122, 200_000)
    lat = rng.uniform(20, 42, 200_000)
    back = chinacrs.gcj02_to_wgs84(*chinacrs.wgs84_to_gcj02(lon, lat))
    assert np.abs(back[0] - lon).max() < 1e-9 and np.abs(back[1] - lat).max() < 1e-9


def test_unknown_system_raises() -> None:
    with pytest.raises(CRSError, match="gcj02"):
        chinacrs.to_wgs84(1.0, 2.0, "mars-2")
    assert chinacrs.normalise_system("GCJ-02") == "gcj02"
    assert chinacrs.normalise_system("BD09") == "bd09"


def test_read_events_converts_gcj02_and_bd09() -> None:
    wgs = (113.912316, 22.543847)
    gcj = chinacrs.wgs84_to_gcj02(*wgs)
    bd = chinacrs.wgs84_to_bd09(*wgs)
    for system, (x, y) in (("gcj02", gcj), ("bd09", bd)):
        table = pd.DataFrame({"lng": [float(x)], "lat": [float(y)], "sev": ["fatal"]})
        ev = tu.read_events(table, kind="accident", x="lng", y="lat", crs=system, severity="sev")
        p = ev.geometry.iloc[0]
        assert metres(p.x, p.y, *wgs) < 0.01
        assert ev.attrs["report"]["crs"] == system
