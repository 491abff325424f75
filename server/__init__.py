"""The trafficunit HTTP server: tiles, units, accidents and black spots over a built data folder.

>>> from trafficunit_server import create_app, Settings
>>> app = create_app(Settings(data_dir="demo-output"))  # doctest: +SKIP
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
