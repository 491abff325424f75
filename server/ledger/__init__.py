"""The ledger inside the server, in three parts::

    service.py  LedgerService: opens the ledger, live hazard/work-zone layers, sweeps, imports
    auth.py     who calls: bearer tokens, throttling, PrincipalDep / ReaderDep, needs(action)
    http.py     HTTP adaptation: role dependencies, If-Match versions, GeoJSON/ETag responses,
                documented error statuses, the ledger's errors as statuses, body limits

Routers import what they need from here (``from ..ledger import ...``).
"""

from __future__ import annotations

from .auth import (
    STAFF_ROLES,
    AuthThrottle,
    PrincipalDep,
    ReaderDep,
    TooManyAttempts,
    client_address,
    needs,
    optional_principal,
    principal,
    public_actor,
    public_events,
    public_reports,
    read_access,
    sees_actors,
    service_of,
    store_of,
)
from .http import (
    GEOJSON,
    MAX_IF_MATCH,
    BodyLimit,
    EscalateDep,
    PreconditionRequired,
    ReportDep,
    TokensDep,
    WorkZoneDep,
    acting,
    feature_collection,
    geojson,
    if_match_version,
    links,
    not_modified,
    public_base,
    responses,
)
from .service import (
    LIVE_COLUMNS,
    ZONE_COLUMNS,
    LazyHazardLayer,
    LazyWorkZoneLayer,
    LedgerService,
    ServiceDep,
    ledger_lifespan,
)

__all__ = [
    "GEOJSON",
    "LIVE_COLUMNS",
    "MAX_IF_MATCH",
    "STAFF_ROLES",
    "ZONE_COLUMNS",
    "AuthThrottle",
    "BodyLimit",
    "EscalateDep",
    "LazyHazardLayer",
    "LazyWorkZoneLayer",
    "LedgerService",
    "PreconditionRequired",
    "PrincipalDep",
    "ReaderDep",
    "ReportDep",
    "ServiceDep",
    "TokensDep",
    "TooManyAttempts",
    "WorkZoneDep",
    "acting",
    "client_address",
    "feature_collection",
    "geojson",
    "if_match_version",
    "ledger_lifespan",
    "links",
    "needs",
    "not_modified",
    "optional_principal",
    "principal",
    "public_actor",
    "public_base",
    "public_events",
    "public_reports",
    "read_access",
    "responses",
    "sees_actors",
    "service_of",
    "store_of",
]
