"""Server settings: pydantic-settings, environment prefix ``TRAFFICUNIT_``, one class per concern.

``trafficunit serve out`` (Granian), or with ``TRAFFICUNIT_DATA_DIR=out`` set:
``granian --interface rsgi --factory trafficunit_server.rsgi:rsgi_from_env`` or
``uvicorn trafficunit_server.app:app_from_env --factory``.
Nested concerns read their own prefix: ``TRAFFICUNIT_TILES_MAX_AGE``,
``TRAFFICUNIT_QUERY_MAX_LIMIT``,
``TRAFFICUNIT_CORS_ORIGINS`` (a JSON list or ``*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trafficunit.settings import LedgerSettings

#: The library's ledger rules: the defaults of the server's ledger settings.
_RULES = LedgerSettings()

#: Shortest accepted ``TRAFFICUNIT_ADMIN_TOKEN``.
ADMIN_TOKEN_MIN = 32


class TileServerSettings(BaseSettings):
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
        description=(
            f"A token that is always an admin (to create the first tokens); at least "
            f"{ADMIN_TOKEN_MIN} characters"
        ),
    )
    read_requires_token: bool = Field(
        default=False,
        description=(
            "Reads of the ledger (hazards, their history and reports, work zones and their "
            "QR codes, KPIs, categories) need a token too; anonymous callers get 401. The "
            "tiles (live hazards and work zones included) stay public"
        ),
    )
    public_actors: Literal["role", "names", "none"] = Field(
        default="role",
        description=(
            "What anonymous and reporter callers see of who did something in a hazard's "
            "history and reports: 'role' (the actor's role only), 'names' (role and the "
            "display name set in public_names, else role only) or 'none'. Token ids and "
            "labels are shown only to engineer, supervisor and admin tokens"
        ),
    )
    public_names: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Display names by token id for public_actors='names' (JSON object, e.g. "
            '{"tok_ab12": "Road maintenance office"})'
        ),
    )
    auth_failures: int = Field(
        default=20,
        ge=1,
        description="Failed token attempts allowed per client address in auth_window_s (429)",
    )
    auth_window_s: float = Field(default=60.0, gt=0, description="Window of auth_failures, seconds")
    sqlite_synchronous: str = Field(default="FULL", description="SQLite synchronous pragma")
    pool_size: int = Field(default=10, description="PostgreSQL connections per process")
    max_body_bytes: int = Field(default=1_000_000, description="Largest request body (413)")
    warning_rules: Path | None = Field(
        default=None,
        description="YAML/JSON warning rules (trafficunit.warnings); default: the four built-in",
    )
    webhook_backoff_s: float = Field(default=1.0, gt=0, description="First webhook retry delay")
    webhook_backoff_cap_s: float = Field(default=300.0, gt=0, description="Longest retry delay")
    webhook_timeout_s: float = Field(default=10.0, gt=0, description="Webhook request timeout")
    webhook_max_failures: int = Field(
        default=8, ge=1, description="Consecutive failures that pause a subscription"
    )
    webhook_poll_s: float = Field(
        default=0.5, gt=0, description="How often the webhook worker and SSE look for work"
    )
    ingest_max_body_bytes: int = Field(
        default=32_000_000, description="Largest POST /accidents body (a batch of 10,000)"
    )
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
    # the ledger's rules: defaults from trafficunit.settings.LedgerSettings (their one source)
    catalogue: str | None = Field(
        default=_RULES.catalogue, description="Hazard category catalogue JSON"
    )
    duplicate_distance_m: float = _RULES.duplicate_distance_m
    hazard_max_area_m2: float = Field(
        default=_RULES.max_area_m2["hazard"], description="Largest hazard polygon"
    )
    hazard_max_length_m: float = Field(
        default=_RULES.max_length_m["hazard"], description="Longest hazard line"
    )
    workzone_max_area_m2: float = Field(
        default=_RULES.max_area_m2["workzone"], description="Largest work zone"
    )
    workzone_max_length_m: float = Field(
        default=_RULES.max_length_m["workzone"], description="Longest work zone"
    )
    units_margin_m: float = Field(
        default=_RULES.units_margin_m,
        description="Reports must touch the units' bounding box grown by this (422 beyond)",
    )
    duplicate_window_days: float = _RULES.duplicate_window_days
    deadline_general_days: float = _RULES.deadline_days["general"]
    deadline_major_days: float = _RULES.deadline_days["major"]
    reopen_days: float = _RULES.reopen_days
    reopen_severities: frozenset[str] = Field(
        default=_RULES.reopen_severities,
        description="KABCO severities of a crash that reopens a closed hazard",
    )
    list_major: bool = Field(
        default=_RULES.list_major, description="Major hazards go under listed supervision"
    )
    list_overdue: bool = Field(
        default=_RULES.list_overdue, description="Overdue hazards go under listed supervision"
    )
    max_vertices: int = Field(
        default=_RULES.max_vertices, description="Most vertices of a reported geometry"
    )

    def rules(self) -> LedgerSettings:
        """The library's ledger rules (:class:`trafficunit.settings.LedgerSettings`)."""
        return LedgerSettings(
            catalogue=self.catalogue,
            deadline_days={
                "general": self.deadline_general_days,
                "major": self.deadline_major_days,
            },
            list_major=self.list_major,
            list_overdue=self.list_overdue,
            duplicate_distance_m=self.duplicate_distance_m,
            duplicate_window_days=self.duplicate_window_days,
            reopen_days=self.reopen_days,
            reopen_severities=frozenset(self.reopen_severities),
            max_vertices=self.max_vertices,
            max_area_m2={"hazard": self.hazard_max_area_m2, "workzone": self.workzone_max_area_m2},
            max_length_m={
                "hazard": self.hazard_max_length_m,
                "workzone": self.workzone_max_length_m,
            },
            units_margin_m=self.units_margin_m,
        )

    @field_validator("admin_token")
    @classmethod
    def _admin_token_length(cls, value: str | None) -> str | None:
        if value is not None and len(value) < ADMIN_TOKEN_MIN:
            raise ValueError(
                f"TRAFFICUNIT_ADMIN_TOKEN is {len(value)} character(s) long; it needs at least "
                f"{ADMIN_TOKEN_MIN} (make one with: python -c "
                "'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value


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
    tiles: TileServerSettings = Field(default_factory=lambda: TileServerSettings())
    query: QuerySettings = Field(default_factory=lambda: QuerySettings())
    ledger: LedgerServerSettings = Field(default_factory=lambda: LedgerServerSettings())
