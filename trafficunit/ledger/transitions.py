"""Moving a hazard through its lifecycle: the version check, the role check and what each
step of :data:`~trafficunit.ledger.lifecycle.TRANSITIONS` records (grade at registration, the
responsible body and deadline at assignment, comments where a step needs one)."""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime
from typing import Any

from . import lifecycle as lc
from ._core import LedgerCore
from ._values import SYSTEM, iso, json_time, now_utc, parse_hazard_id, parse_time, text
from .errors import ConflictError, StaleVersion, ValidationError
from .records import Hazard

__all__ = ["Transitions"]


#: What a transition request gives besides the target state (checked): comment, grade,
#: category, responsible, road_chief and due (the deadline).
_Asked = namedtuple("_Asked", "comment grade category responsible road_chief due")


class Transitions(LedgerCore):
    """The ledger's lifecycle steps (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def transition(
        self,
        hazard_id: str | int,
        to: str,
        *,
        actor: str,
        role: str,
        expected_version: int | None,
        comment: str | None = None,
        grade: str | None = None,
        category: str | None = None,
        responsible: str | None = None,
        road_chief: str | None = None,
        deadline: Any = None,
        now: datetime | None = None,
        details: dict[str, Any] | None = None,
    ) -> Hazard:
        """Move a hazard to state ``to``; the whole change or nothing.

        Parameters
        ----------
        hazard_id
            ``"H12"``.
        to
            The target state (see :mod:`trafficunit.ledger.lifecycle`).
        actor, role
            Who does it (recorded) and their role (checked against the action; ``"system"``
            for the ledger's own sweeps).
        expected_version
            The version the caller read; a different stored version raises
            :class:`StaleVersion` and changes nothing. None skips the check.
        comment
            Recorded in the history; required when failing acceptance or reopening.
        grade, category
            Registration: the grade (required unless the report gave one) and a corrected
            category.
        responsible, road_chief, deadline
            Assignment: the responsible body (required), the road chief, and a deadline
            (default: by grade, ``settings.deadline_days``).

        Raises
        ------
        NotFoundError, StaleVersion, IllegalTransition, PermissionDenied, ValidationError
        """
        pk = parse_hazard_id(hazard_id)
        t = now_utc(now)
        asked = _Asked(
            comment=text(comment, "comment"),
            grade=lc.normalise_grade(grade),
            category=self.catalogue.resolve(category) if category is not None else None,
            responsible=text(responsible, "responsible", limit=200),
            road_chief=text(road_chief, "road_chief", limit=200),
            due=None if deadline is None else parse_time(deadline, "deadline"),
        )
        with self.db.transaction(write=True) as tx:
            h = self._get(tx, pk)
            if expected_version is not None and h.version != int(expected_version):
                raise StaleVersion(
                    f"hazard {h.id} is at version {h.version}, not {expected_version}; "
                    "read it again (GET) and retry with its ETag",
                    current_version=h.version,
                )
            action = lc.transition_action(h.state, to)
            if role != SYSTEM:
                lc.require(role, action)
            info: dict[str, Any] = dict(details or {})
            sets = self._step_sets(h, action, asked, t, info)
            seq = tx.next_change()
            version = h.version + 1
            sets.update(state=to, version=version, updated_at=iso(t), change_seq=seq)
            assignments = ", ".join(f"{k} = ?" for k in sets)
            n = tx.execute(
                f"UPDATE hazards SET {assignments} WHERE pk = ? AND version = ?",
                [*sets.values(), pk, h.version],
            )
            if n != 1:  # pragma: no cover - the write lock makes this impossible
                raise ConflictError(f"hazard {h.id} changed during the transition; retry")
            self._event(
                tx, pk, version, t, actor, role, action, h.state, to, asked.comment, info or None
            )
            out = self._get(tx, pk)
            self._sync(tx)
        return out

    def _step_sets(
        self, h: Hazard, action: str, asked: _Asked, t: datetime, info: dict[str, Any]
    ) -> dict[str, Any]:
        """The columns ``action`` sets on ``h`` (what it records goes into ``info``)."""
        sets: dict[str, Any] = {}
        if action == "register":
            sets.update(self._register_sets(h, asked, t, info))
        elif asked.grade is not None or asked.category is not None:
            raise ValidationError("grade and category are set when registering a hazard")
        if action == "assign":
            sets.update(self._assign_sets(h, asked, t, info))
        elif asked.responsible is not None or asked.road_chief is not None or asked.due is not None:
            raise ValidationError(
                "responsible, road_chief and deadline are set when assigning a hazard"
            )
        if action in ("fail_acceptance", "reopen") and asked.comment is None:
            raise ValidationError(_NEEDS_COMMENT[action])
        if action == "reopen":
            sets.update(dict.fromkeys(_CLEARED_BY_REOPEN))
            sets.update(registered_at=iso(t), reopen_count=h.reopen_count + 1)
        elif action in _STAMPS:
            sets[_STAMPS[action]] = None if action == "fail_acceptance" else iso(t)
        return sets

    @staticmethod
    def _register_sets(
        h: Hazard, asked: _Asked, t: datetime, info: dict[str, Any]
    ) -> dict[str, Any]:
        g = asked.grade or h.grade
        if g is None:
            raise ValidationError(
                "registering a hazard needs its grade: 'general' (一般) or 'major' (重大)"
            )
        sets: dict[str, Any] = {"grade": g, "registered_at": iso(t)}
        if asked.category is not None and asked.category != h.category:
            sets["category"] = asked.category
            info["category_was"] = h.category
        return sets

    def _assign_sets(
        self, h: Hazard, asked: _Asked, t: datetime, info: dict[str, Any]
    ) -> dict[str, Any]:
        body = asked.responsible or h.responsible
        if body is None:
            raise ValidationError("assigning a hazard needs the responsible body ('responsible')")
        if asked.due is not None and asked.due <= t:
            raise ValidationError(f"deadline {json_time(asked.due)} is not in the future")
        g = h.grade or "general"
        due = asked.due or lc.deadline_for(g, t, self.settings.deadline_days)
        sets: dict[str, Any] = {"responsible": body, "deadline": iso(due), "assigned_at": iso(t)}
        if asked.road_chief is not None:
            sets["road_chief"] = asked.road_chief
        if g == "major" and self.settings.list_major and h.supervision is None:
            sets.update(supervision="listed", listed_at=iso(t))
            info["listed"] = "major hazard"
        return sets


#: The time column an action stamps (a failed acceptance clears ``accepted_at``).
_STAMPS = {
    "start": "rectifying_at",
    "accept": "accepted_at",
    "fail_acceptance": "accepted_at",
    "close": "closed_at",
}
#: What reopening a hazard clears: it starts again from registration.
_CLEARED_BY_REOPEN = ("assigned_at", "rectifying_at", "accepted_at", "closed_at", "deadline")
_NEEDS_COMMENT = {
    "fail_acceptance": "a failed acceptance needs a comment saying what failed",
    "reopen": "reopening a hazard needs a comment saying why",
}
