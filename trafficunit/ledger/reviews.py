"""The fatal-accident review (回头看): every K accident with four checks — investigation,
rectification, deep investigation, accountability — prefilled from the ledger and confirmed by a
supervisor (see :mod:`.investigations`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd

from . import lifecycle as lc
from ._invtables import DONE, REVIEW_CHECKS, ensure_tables, links_of, require, stamp
from .errors import NotFoundError
from .errors import ValidationError as LedgerValidationError
from .store import Ledger

__all__ = ["REVIEW_CHECKS", "confirm_review", "reviews"]


def reviews(ledger: Ledger, accidents: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Every K accident with its four checks, prefilled and (when done) confirmed.

    Parameters
    ----------
    accidents
        Joined accidents (``event_id``, ``severity``, ``time``, ``unit_id``); fatal ones not
        yet in the ledger's investigations are listed too (with the investigation check False).
    """
    ensure_tables(ledger)
    with ledger.db.transaction() as tx:
        inv = {
            r["accident_id"]: r for r in tx.all("SELECT * FROM investigations WHERE severity = 'K'")
        }
        confirmed = {r["accident_id"]: r for r in tx.all("SELECT * FROM fatal_reviews")}
        links = links_of(tx, list(inv))
        states = {
            f"H{r['pk']}": r["state"]
            for r in tx.all(
                "SELECT h.pk, h.state FROM hazards h JOIN accident_hazards l "
                "ON l.hazard_pk = h.pk JOIN investigations i ON i.accident_id = l.accident_id "
                "WHERE i.severity = 'K'"
            )
        }
    fatal = _fatal_accidents(accidents)
    for a, row in inv.items():
        fatal.setdefault(a, {"unit_id": row["unit_id"], "accident_time": row["accident_time"]})
    out = []
    for a in sorted(fatal):
        hz = links.get(a, [])
        prefill = _prefill(inv.get(a), hz, states)
        c = confirmed.get(a)
        checks = json.loads(c["checks"]) if c else {}
        for name in REVIEW_CHECKS:
            prefill[name]["confirmed"] = checks.get(name)
        out.append(
            {
                "accident_id": a,
                **fatal[a],
                "hazards": hz,
                "checks": prefill,
                "confirmed": c is not None,
                **{k: c[k] if c else None for k in ("confirmed_by", "confirmed_at", "comment")},
                "complete": c is not None and all(checks.get(n) is True for n in REVIEW_CHECKS),
            }
        )
    return out


def _fatal_accidents(accidents: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """The K accidents of a joined accident table: their unit and time."""
    fatal: dict[str, dict[str, Any]] = {}
    if accidents is None or not len(accidents) or "severity" not in accidents.columns:
        return fatal
    k = accidents[accidents["severity"].astype("string").str.upper() == "K"]
    for a, unit, tm in zip(
        k["event_id"].astype(str),
        k["unit_id"] if "unit_id" in k.columns else [None] * len(k),
        k["time"] if "time" in k.columns else [None] * len(k),
        strict=True,
    ):
        fatal[a] = {
            "unit_id": None if unit is None or pd.isna(unit) else str(unit),
            "accident_time": None if tm is None or pd.isna(tm) else pd.Timestamp(tm).isoformat(),
        }
    return fatal


def _prefill(
    r: dict[str, Any] | None, hz: list[str], states: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The four checks as the ledger knows them (investigation ``r``, linked hazards ``hz``)."""
    done = [h for h in hz if states.get(h) in lc.DONE_STATES]
    if not hz:
        rect, rect_basis = None, "no hazard linked: nothing to rectify, or not investigated"
    else:
        rect = len(done) == len(hz)
        rect_basis = f"{len(done)} of {len(hz)} linked hazards accepted or closed"
    return {
        "investigation": {
            "prefill": r is not None and r["state"] in DONE,
            "basis": "no investigation" if r is None else f"investigation {r['state']}",
        },
        "rectification": {"prefill": rect, "basis": rect_basis},
        "deep_investigation": {"prefill": None, "basis": "not held by the ledger: confirm"},
        "accountability": {"prefill": None, "basis": "not held by the ledger: confirm"},
    }


def confirm_review(
    ledger: Ledger,
    accident_id: str,
    checks: dict[str, bool],
    *,
    actor: str,
    role: str,
    comment: str | None = None,
    accidents: pd.DataFrame | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A supervisor confirms (or corrects) the four checks of a fatal accident's review.

    ``checks`` must give all four (:data:`REVIEW_CHECKS`) as true/false; a later confirmation
    replaces an earlier one.
    """
    require(role, "confirm_review")
    ensure_tables(ledger)
    missing = [n for n in REVIEW_CHECKS if not isinstance(checks.get(n), bool)]
    extra = [n for n in checks if n not in REVIEW_CHECKS]
    if missing or extra:
        raise LedgerValidationError(
            f"a review confirms the four checks {', '.join(REVIEW_CHECKS)} as true or false"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    known = {r["accident_id"] for r in reviews(ledger, accidents)}
    if str(accident_id) not in known:
        raise NotFoundError(f"no fatal accident {accident_id!r} to review")
    t = stamp(now)
    with ledger.db.transaction(write=True) as tx:
        tx.execute("DELETE FROM fatal_reviews WHERE accident_id = ?", (str(accident_id),))
        tx.execute(
            "INSERT INTO fatal_reviews (accident_id, checks, comment, confirmed_by, confirmed_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                str(accident_id),
                json.dumps({n: checks[n] for n in REVIEW_CHECKS}),
                comment,
                actor,
                t,
            ),
        )
    return next(r for r in reviews(ledger, accidents) if r["accident_id"] == str(accident_id))
