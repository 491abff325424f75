"""The hazard closed loop and the road-works registry (``trafficunit.ledger``).

Hazards go through an explicit lifecycle (:mod:`~trafficunit.ledger.lifecycle`), stored with
their full history in SQLite or PostgreSQL + PostGIS (:class:`Ledger`); duplicate citizen
reports are linked to the open hazard they repeat; overdue hazards are escalated to listed
supervision and a serious crash soon after closure reopens one; KPIs per jurisdiction and road
chief come from :func:`~trafficunit.ledger.kpis.hazard_kpis`.
"""

from __future__ import annotations

from .catalogue import Catalogue, load_catalogue
from .errors import (
    AuthenticationError,
    ConflictError,
    IllegalTransition,
    ImplausibleGeometry,
    LedgerError,
    NotFoundError,
    PermissionDenied,
    StaleVersion,
)
from .kpis import hazard_kpis
from .lifecycle import GRADES, OPEN_STATES, PERMISSIONS, ROLES, STATES, TRANSITIONS
from .store import SOURCES, Hazard, Ledger, Principal, ReportResult, WorkZone
from .workzones import qr_png

__all__ = [
    "GRADES",
    "OPEN_STATES",
    "PERMISSIONS",
    "ROLES",
    "SOURCES",
    "STATES",
    "TRANSITIONS",
    "AuthenticationError",
    "Catalogue",
    "ConflictError",
    "Hazard",
    "IllegalTransition",
    "ImplausibleGeometry",
    "Ledger",
    "LedgerError",
    "NotFoundError",
    "PermissionDenied",
    "Principal",
    "ReportResult",
    "StaleVersion",
    "WorkZone",
    "hazard_kpis",
    "load_catalogue",
    "qr_png",
]
