"""The hazard ledger: hazards through their lifecycle, their history, tokens and work zones.

:class:`Ledger` is the write path of the hazard closed loop. It stores every hazard with a
``version`` (optimistic concurrency: a write names the version it read and a stale one changes
nothing), every transition with who, when and a comment in an append-only history, every
citizen report (duplicates are linked to the open hazard they repeat and counted), access
tokens (only their HMAC-SHA256 hashes), and the road-works registry. The database is SQLite
(WAL, no setup) or PostgreSQL + PostGIS, chosen by one URL (see :mod:`trafficunit.ledger._db`).

>>> import tempfile, pathlib
>>> from trafficunit.ledger import Ledger
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ledger.sqlite"
>>> ledger = Ledger.open(f"sqlite:///{path}")
>>> r = ledger.report({"type": "Point", "coordinates": [24.94, 60.17]},
...                   category="facility.signal", actor="demo")
>>> h = ledger.transition(r.hazard.id, "registered", actor="eng", role="engineer",
...                       expected_version=r.hazard.version, grade="major")
>>> (h.state, h.grade, h.version)
('registered', 'major', 2)
>>> ledger.close()
"""

from __future__ import annotations

from ._core import LedgerCore
from ._values import dt as _dt  # noqa: F401  (older names other ledger modules import)
from ._values import iso, parse_hazard_id, parse_time
from ._values import json_time as _json_time  # noqa: F401
from ._values import now_utc as _now  # noqa: F401
from ._values import text as _text  # noqa: F401
from .frames import Frames
from .hazards import HazardReads
from .records import SOURCES, Hazard, Principal, ReportBatch, ReportResult, WorkZone
from .reporting import Reporting
from .sweeps import Sweeps
from .tokens import Tokens, hash_token
from .workzones import WorkZones

__all__ = [
    "SOURCES",
    "Hazard",
    "Ledger",
    "Principal",
    "ReportBatch",
    "ReportResult",
    "WorkZone",
    "hash_token",
    "iso",
    "parse_hazard_id",
    "parse_time",
]


class Ledger(HazardReads, Reporting, Sweeps, Tokens, WorkZones, Frames, LedgerCore):
    """The hazard ledger over one database.

    Open with :meth:`open`; it creates or migrates the schema. Safe to use from many threads;
    several processes may share one database.

    Parameters
    ----------
    db
        An open :class:`~trafficunit.ledger._db.Database`.
    settings
        :class:`~trafficunit.settings.LedgerSettings`.
    units
        Traffic units (GeoDataFrame or :class:`trafficunit.join.UnitIndex`) new hazards and
        work zones are assigned to; None to store them without units.

    Each concern is a module of its own; this class only joins them:

    ===========================  ===============================================================
    :mod:`._core`                database, settings, units, live index; shared SQL steps
    :mod:`.hazards`              :meth:`get`, :meth:`history`, :meth:`reports`,
                                 :meth:`list_hazards`
    :mod:`.reporting`            :meth:`report` (checks, replays, new hazards, report hooks)
    :mod:`.duplicates`           linking a report to the open hazard it repeats
    :mod:`.transitions`          :meth:`transition` (what each lifecycle step records)
    :mod:`.sweeps`               :meth:`escalate_overdue`, :meth:`reopen_for_crashes`
    :mod:`.tokens`               :meth:`create_token`, :meth:`authenticate`, ...
    :mod:`.workzones`            :meth:`register_workzone`, :meth:`get_workzone`,
                                 :meth:`list_workzones`
    :mod:`.frames`               :meth:`frame` (KPI inputs), :meth:`counts`,
                                 :meth:`check_consistency`
    ===========================  ===============================================================
    """
