"""The hazard lifecycle as an explicit state machine, with the roles allowed to drive it.

::

    reported ──register──▶ registered ──assign──▶ assigned ──start──▶ rectifying
                               ▲                                       │   ▲
                               │ reopen (supervisor, or a serious      accept  fail_acceptance
                               │ crash within the reopen period)       ▼   │
                             closed ◀────────────close───────────── accepted

A failed acceptance sends a hazard back to ``rectifying`` (from ``accepted``, or records the
failed inspection while it is still ``rectifying``). Being *overdue* is not a state but a
flag: a hazard in ``assigned`` or ``rectifying`` past its deadline. The overdue sweep puts such
hazards, and major ones when they are assigned, under listed supervision (挂牌督办).

>>> transition_action("rectifying", "accepted")
'accept'
>>> allowed("engineer", "accept")
False
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Required, TypedDict

from .._errors import clip
from .errors import IllegalTransition, PermissionDenied, ValidationError

__all__ = [
    "ACCEPTED",
    "ASSIGNED",
    "CLOSED",
    "DONE_STATES",
    "GRADES",
    "INITIAL_STATE",
    "OPEN_STATES",
    "OVERDUE_STATES",
    "PERMISSIONS",
    "RECTIFYING",
    "REGISTERED",
    "REOPEN_STATE",
    "REPORTED",
    "ROLES",
    "STATES",
    "TRANSITIONS",
    "Step",
    "allowed",
    "checked_step",
    "deadline_for",
    "normalise_grade",
    "overdue_sql",
    "require",
    "sql_in",
    "state_check",
    "transition_action",
]

# Every state name lives here and only here: code, SQL (:func:`sql_in`) and the schema's CHECK
# constraint (:func:`state_check`) are built from these constants, so a new state is an edit of
# this module.
REPORTED = "reported"
REGISTERED = "registered"
ASSIGNED = "assigned"
RECTIFYING = "rectifying"
ACCEPTED = "accepted"
CLOSED = "closed"

#: The states, in lifecycle order (the contract's names).
STATES: tuple[str, ...] = (REPORTED, REGISTERED, ASSIGNED, RECTIFYING, ACCEPTED, CLOSED)
#: The state of a new report.
INITIAL_STATE = REPORTED
#: States of a hazard that still needs work (duplicates link to these).
OPEN_STATES: tuple[str, ...] = (REPORTED, REGISTERED, ASSIGNED, RECTIFYING)
#: States of a rectified hazard.
DONE_STATES: tuple[str, ...] = (ACCEPTED, CLOSED)
#: States in which a hazard past its deadline is overdue.
OVERDUE_STATES: tuple[str, ...] = (ASSIGNED, RECTIFYING)

#: ``(from, to) -> action``; the action names the permission a role needs.
TRANSITIONS: dict[tuple[str, str], str] = {
    (REPORTED, REGISTERED): "register",
    (REGISTERED, ASSIGNED): "assign",
    (ASSIGNED, RECTIFYING): "start",
    (RECTIFYING, ACCEPTED): "accept",
    (RECTIFYING, RECTIFYING): "fail_acceptance",
    (ACCEPTED, RECTIFYING): "fail_acceptance",
    (ACCEPTED, CLOSED): "close",
    (CLOSED, REGISTERED): "reopen",
}
#: Where a reopened hazard (a supervisor, or a serious crash after closure) goes.
REOPEN_STATE = next(b for (a, b), act in TRANSITIONS.items() if a == CLOSED and act == "reopen")


def sql_in(states: tuple[str, ...] | list[str]) -> str:
    """An SQL list literal of state names, ``('assigned', 'rectifying')``.

    >>> sql_in(OVERDUE_STATES)
    "('assigned', 'rectifying')"
    """
    for s in states:
        if not s.replace("_", "").isalnum():  # state names are identifiers: nothing to escape
            raise ValueError(f"state name {s!r} is not a plain identifier")
    return "(" + ", ".join(f"'{s}'" for s in states) + ")"


def state_check(column: str = "state") -> str:
    """The schema's CHECK constraint on a hazard state column."""
    return f"CHECK ({column} IN {sql_in(STATES)})"


def overdue_sql(prefix: str = "") -> str:
    """SQL: the hazard row (``prefix`` a table alias with its dot) is overdue as of ``?``."""
    return (
        f"({prefix}state IN {sql_in(OVERDUE_STATES)} AND {prefix}deadline IS NOT NULL "
        f"AND {prefix}deadline < ?)"
    )


#: Roles, least powerful first.
ROLES: tuple[str, ...] = ("reporter", "ingest", "engineer", "supervisor", "admin")

_ENGINEER = frozenset({"report", "register", "assign", "start", "workzone", "ingest"})
_SUPERVISOR = _ENGINEER | {"accept", "fail_acceptance", "close", "reopen", "escalate"}
#: What each role may do. Reporters report; engineers register, assign and start work and
#: register work zones; supervisors also accept, fail acceptance, close, reopen and run the
#: overdue sweep; admins also manage tokens.
PERMISSIONS: dict[str, frozenset[str]] = {
    "reporter": frozenset({"report"}),
    "ingest": frozenset({"ingest"}),  # a feed posting accidents (POST /accidents), nothing else
    "engineer": _ENGINEER,
    "supervisor": _SUPERVISOR,
    "admin": _SUPERVISOR | {"tokens"},
}

#: Grades: 一般 general (fixed at once) and 重大 major (needs time or outside help).
GRADES: tuple[str, ...] = ("general", "major")
_GRADE_ALIASES = {"general": "general", "一般": "general", "major": "major", "重大": "major"}


def normalise_grade(grade: str | None) -> str | None:
    """``"一般"``/``"general"`` -> ``"general"``, ``"重大"``/``"major"`` -> ``"major"``."""
    if grade is None:
        return None
    out = _GRADE_ALIASES.get(str(grade).strip().lower())
    if out is None:
        raise ValidationError(
            f"unknown grade {clip(grade)}; use 'general' (一般) or 'major' (重大)"
        )
    return out


def transition_action(current: str, to: str) -> str:
    """The action of going from ``current`` to ``to``; IllegalTransition if there is none."""
    if to not in STATES:
        raise ValidationError(f"unknown state {clip(to)}; states are {', '.join(STATES)}")
    action = TRANSITIONS.get((current, to))
    if action is None:
        nxt = sorted({b for (a, b) in TRANSITIONS if a == current})
        raise IllegalTransition(
            f"a hazard in state {current!r} cannot go to {clip(to)}; "
            f"allowed from {current!r}: {', '.join(nxt) or 'nothing'}"
        )
    return action


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may perform ``action``."""
    return action in PERMISSIONS.get(role, frozenset())


class Step(TypedDict, total=False):
    """Who takes a recorded step and how: the keywords the steps of investigations
    (:func:`trafficunit.ledger.investigations.investigate`, ``close_investigation``) and
    listed supervision (:func:`trafficunit.ledger.supervision.escalate`) take.

    Attributes
    ----------
    actor, role
        Who does it (recorded) and their role (checked against the action). Required.
    comment
        Recorded in the history.
    expected_version
        The version the caller read; a different stored version raises
        :class:`~trafficunit.ledger.StaleVersion` and changes nothing. None skips the check.
    now
        When the step happens (default: now).
    """

    actor: Required[str]
    role: Required[str]
    comment: str | None
    expected_version: int | None
    now: datetime | None


def checked_step(given: Mapping[str, Any]) -> Step:
    """``given`` as a :class:`Step`, with every key present (None where not given); TypeError
    for a missing ``actor`` or ``role`` or a keyword that is not a step's, as for a signature.
    """
    unknown = sorted(set(given) - Step.__required_keys__ - Step.__optional_keys__)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
    # (not Step.__required_keys__: Python 3.11 does not see Required in postponed annotations)
    missing = [k for k in ("actor", "role") if k not in given]
    if missing:
        raise TypeError(f"missing required keyword argument {missing[0]!r}")
    return {
        "actor": given["actor"],
        "role": given["role"],
        "comment": given.get("comment"),
        "expected_version": given.get("expected_version"),
        "now": given.get("now"),
    }


def require(role: str, action: str) -> None:
    """Raise PermissionDenied unless ``role`` may perform ``action``."""
    if not allowed(role, action):
        who = [r for r in ROLES if allowed(r, action)]
        raise PermissionDenied(
            f"role {clip(role)} may not {action.replace('_', ' ')}; "
            f"that needs a token of role {' or '.join(who)}"
        )


def deadline_for(grade: str, assigned_at: datetime, days: dict[str, float]) -> datetime:
    """The rectification deadline of a hazard of ``grade`` assigned at ``assigned_at``."""
    if grade not in days:
        raise ValidationError(f"no deadline configured for grade {clip(grade)}")
    return assigned_at + timedelta(days=float(days[grade]))
