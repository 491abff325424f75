"""Server settings: pydantic-settings, environment prefix ``TRAFFICUNIT_``, one class per concern.

``trafficunit serve out`` (Granian), or with ``TRAFFICUNIT_DATA_DIR=out`` set:
``granian --interface rsgi --factory server.rsgi:rsgi_from_env`` or
``uvicorn server.app:app_from_env --factory``.
Nested concerns read their own prefix: ``TRAFFICUNIT_TILES_MAX_AGE``,
``TRAFFICUNIT_QUERY_MAX_LIMIT``,
``TRAFFICUNIT_CORS_ORIGINS`` (a JSON list or ``*``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TileSettings(BaseSettings):
    """Tile serving: cache headers, live-tile cache and reload checks."""

    model_config = SettingsConfigDict(env_prefix="TRAFFICUNIT_TILES_", extra="ignore")

    max_age: int = Field(default=300, description="Cache-Control max-age of tiles, seconds")
    live_max_age: int = Field(
        default=30, description="Cache-Control max-age of live tiles, seconds"
    )
    cache_entries: int = Field(
        default=8192, description="Live and stored tiles kept in memory (LRU)"
    )
    reload_check_s: float = Field(
        default=1.0,
        description="How often (seconds) archives and tables are checked for replacement",
    )
    live_minzoom: int = Field(default=10, description="Lowest zoom of live tilesets")
    live_maxzoom: int = Field(default=18, description="Highest zoom of live tilesets")
    extent: int = 4096
    buffer: int = 64


class QuerySettings(BaseSettings):
    """List endpoints: limits that keep a request cheap."""

    model_config = SettingsConfigDict(env_prefix="TRAFFICUNIT_QUERY_", extra="ignore")

    default_limit: int = Field(default=1000, description="Rows returned when no limit is given")
    max_limit: int = Field(default=10000, description="Largest accepted limit (400 beyond)")
    max_bbox_km2: float = Field(
        default=400.0, description="Largest accepted bbox area (413 beyond)"
    )
    night_hours: tuple[int, int] = Field(
        default=(19, 7), description="Night is hour >= first or hour < second (local clock)"
    )


class LedgerServerSettings(BaseSettings):
    """The hazard ledger and work-zone registry: storage, auth, rules.

    ``TRAFFICUNIT_DATABASE_URL`` (``sqlite:///path`` or ``postgresql://...``; default: SQLite
    ``ledger.sqlite`` in the data folder), ``TRAFFICUNIT_ADMIN_TOKEN`` (bootstraps an admin),
    others ``TRAFFICUNIT_LEDGER_*``.
    """

    model_config = SettingsConfigDict(
        env_prefix="TRAFFICUNIT_LEDGER_", extra="ignore", populate_by_name=True
    )

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TRAFFICUNIT_DATABASE_URL", "database_url"),
        description="sqlite:///path or postgresql://...; default sqlite in the data folder",
    )
    admin_token: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TRAFFICUNIT_ADMIN_TOKEN", "admin_token"),
        description="A token that is always an admin (to create the first tokens)",
    )
    read_requires_token: bool = Field(
        default=False, description="Reads of the ledger need a token too"
    )
    sqlite_synchronous: str = Field(default="FULL", description="SQLite synchronous pragma")
    pool_size: int = Field(default=10, description="PostgreSQL connections per process")
    max_body_bytes: int = Field(default=1_000_000, description="Largest request body (413)")
    public_url: str | None = Field(
        default=None, description="Base URL put in work-zone QR codes (default: the request's)"
    )
    jurisdictions: Path | None = Field(
        default=None, description="Polygon file of jurisdictions or grids (KPIs, filters)"
    )
    jurisdiction_field: str | None = Field(
        default=None, description="Column naming each jurisdiction"
    )
    sweep_interval_s: float = Field(
        default=300.0, description="Seconds between overdue/reopen sweeps (0: never)"
    )
    catalogue: str | None = Field(default=None, description="Hazard category catalogue JSON")
    duplicate_distance_m: float = 30.0
    duplicate_window_days: float = 30.0
    deadline_general_days: float = 7.0
    deadline_major_days: float = 90.0
    reopen_days: float = 365.0


class Settings(BaseSettings):
    """Everything the server needs; ``create_app(Settings(data_dir=...))``."""

    model_config = SettingsConfigDict(env_prefix="TRAFFICUNIT_", extra="ignore")

    data_dir: Path = Field(
        default=Path("demo-output"), description="Folder built by `trafficunit demo`"
    )
    cors_origins: list[str] = Field(
        default_factory=lambda: ["*"], description="Origins allowed by CORS ('*' for any)"
    )
    title: str = "trafficunit"
    basemap_style: str | None = Field(
        default=None,
        description="URL of an external MapLibre basemap style drawn under the risk layers "
        "instead of the data folder's basemap.pmtiles (the page then talks to its host)",
    )
    tiles: TileSettings = Field(default_factory=lambda: TileSettings())
    query: QuerySettings = Field(default_factory=lambda: QuerySettings())
    ledger: LedgerServerSettings = Field(default_factory=lambda: LedgerServerSettings())
