"""Optional dependencies: import them where a feature needs them, with the extra that installs them.

``pip install trafficunit`` gives the library and the batch CLI; the server, PostgreSQL, Dask,
hot-spot statistics and osmnx graphs are extras (``pip install 'trafficunit[server]'``, ...,
``[all]``). A feature whose extra is missing stops with one line naming the extra.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from ._errors import TrafficUnitError

#: Top-level module → the extra that installs it.
EXTRAS: dict[str, str] = {
    "fastapi": "server",
    "granian": "server",
    "uvicorn": "server",
    "pydantic": "server",
    "pydantic_settings": "server",
    "qrcode": "server",
    "PIL": "server",
    "psycopg": "postgres",
    "psycopg_pool": "postgres",
    "distributed": "dask",
    "dask": "dask",
    "esda": "hotspots",
    "libpysal": "hotspots",
    "osmnx": "osmnx",
}


class MissingExtraError(TrafficUnitError, ImportError):
    """A feature needs an optional dependency that is not installed."""


def missing(exc: ModuleNotFoundError, feature: str) -> MissingExtraError:
    """The error to raise for ``exc`` when ``feature`` needs a module of an extra."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return MissingExtraError(f"{feature} needs the Python module {top!r}, not installed")
    return MissingExtraError(
        f"{feature} needs the '{extra}' extra: pip install 'trafficunit[{extra}]'"
    )


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        raise missing(exc, feature) from exc
