"""The hazard closed loop and the road-works registry (``trafficunit.ledger``).

Hazards go through an explicit lifecycle (:mod:`~trafficunit.ledger.lifecycle`), stored with
their full history in SQLite or PostgreSQL + PostGIS (:class:`Ledger`); duplicate citizen
reports are linked to the open hazard they repeat; overdue hazards are escalated to listed
supervision and a serious crash soon after closure reopens one; KPIs per jurisdiction and road
chief come from :func:`~trafficunit.ledger.kpis.hazard_kpis`.

Two helpers are public for servers built on the ledger: :func:`parse_hazard_id` turns a public
hazard id (``"H12"``) into its key, refusing anything else with :class:`NotFoundError`, and
:func:`hash_token` gives the stored form of an access token (to compare a configured bootstrap
token with a presented one without keeping either). :class:`Database` is the open database a
ledger writes to (``Ledger.db``), for servers keeping their own tables beside the ledger's.

The :class:`Ledger` joins one module per concern::

    Ledger (store.py) ── hazards.py      reads: get, history, reports, list_hazards
                      ├─ reporting.py    report: checks, replays, new hazards, report hooks
                      │  └ duplicates.py a report linked to the open hazard it repeats
                      ├─ sweeps.py       overdue escalation, crash reopening
                      │  └ transitions.py the lifecycle steps (lifecycle.py: states, rules)
                      ├─ tokens.py       access tokens (hashes only)
                      ├─ workzones.py    the road-works registry, QR codes
                      ├─ frames.py       every hazard as a frame (KPI inputs), health counts
                      └─ _core.py        database, settings, units, live index, shared SQL
"""

from __future__ import annotations

from ._db import Database
from ._values import parse_hazard_id
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
from .store import SOURCES, Hazard, Ledger, Principal, ReportBatch, ReportResult, WorkZone
from .tokens import hash_token
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
    "Database",
    "ConflictError",
    "Hazard",
    "IllegalTransition",
    "ImplausibleGeometry",
    "Ledger",
    "LedgerError",
    "NotFoundError",
    "PermissionDenied",
    "Principal",
    "ReportBatch",
    "ReportResult",
    "StaleVersion",
    "WorkZone",
    "hash_token",
    "hazard_kpis",
    "load_catalogue",
    "parse_hazard_id",
    "qr_png",
]
