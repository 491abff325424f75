"""Ids in paths are parsed with bounds: odd digits or huge numbers are a 404, never a 500."""

from __future__ import annotations

import pytest

from trafficunit.errors import TrafficUnitError
from trafficunit.ledger import permits, roadchiefs

# '²' and '٣' pass str.isdigit() but not int(); 5,000 digits pass int()'s check only to fail
ODD = ["²", "RC²", "٣", "P٣", "9" * 5000, "RC" + "9" * 5000, "", "RC-1"]


@pytest.mark.parametrize("text", ODD)
def test_road_chief_ids(text: str) -> None:
    with pytest.raises(TrafficUnitError, match="no road chief"):
        roadchiefs._pk(text)


@pytest.mark.parametrize("text", ODD)
def test_permit_ids(text: str) -> None:
    with pytest.raises(TrafficUnitError, match="no permit"):
        permits.parse_permit_id(text)


def test_plain_ids_still_parse() -> None:
    assert roadchiefs._pk("RC12") == 12
    assert permits.parse_permit_id("P12") == 12
