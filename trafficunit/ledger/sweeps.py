"""The ledger's sweeps: overdue hazards put under listed supervision (挂牌督办), closed hazards
reopened by a serious crash on their unit soon after closure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd

from . import lifecycle as lc
from ._values import SYSTEM, dt, iso, json_time, now_utc
from .errors import ConflictError, StaleVersion
from .transitions import Transitions

__all__ = ["Sweeps"]


class Sweeps(Transitions):
    """Overdue escalation and crash reopening (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def escalate_overdue(self, *, now: datetime | None = None) -> list[str]:
        """Put overdue hazards under listed supervision (挂牌督办); the ids newly listed.

        Does nothing when ``settings.list_overdue`` is False. Each escalation is a history
        event by ``system``; a hazard already listed is left alone.
        """
        if not self.settings.list_overdue:
            return []
        t = now_utc(now)
        out = []
        with self.db.transaction(write=True) as tx:
            rows = tx.all(
                f"SELECT pk, version, state, deadline FROM hazards WHERE {lc.overdue_sql()} "
                "AND supervision IS NULL ORDER BY pk",
                (iso(t),),
            )
            for r in rows:
                seq = tx.next_change()
                version = int(r["version"]) + 1
                tx.execute(
                    "UPDATE hazards SET supervision = 'listed', listed_at = ?, version = ?, "
                    "updated_at = ?, change_seq = ? WHERE pk = ?",
                    (iso(t), version, iso(t), seq, r["pk"]),
                )
                self._event(
                    tx,
                    int(r["pk"]),
                    version,
                    t,
                    SYSTEM,
                    SYSTEM,
                    "escalate",
                    r["state"],
                    r["state"],
                    f"overdue since {json_time(dt(r['deadline']))}: listed supervision (挂牌督办)",
                    {"deadline": json_time(dt(r["deadline"]))},
                )
                out.append(f"H{r['pk']}")
        return out

    def reopen_for_crashes(
        self, accidents: pd.DataFrame, *, now: datetime | None = None
    ) -> list[str]:
        """Reopen closed hazards that had a serious crash on their unit after closing.

        A crash counts when its ``severity`` is in ``settings.reopen_severities``, its
        ``unit_id`` is one of the hazard's units and its ``time`` falls after the hazard's
        closure and within ``settings.reopen_days`` of it. Each reopening is a ``reopen``
        transition by ``system`` naming the crash. Returns the ids reopened.

        Parameters
        ----------
        accidents
            Joined accidents (``tu.assign``): ``event_id``, ``unit_id``, ``time``,
            ``severity``.
        """
        need = {"unit_id", "time", "severity"}
        if not need <= set(accidents.columns) or not len(accidents):
            return []
        t = now_utc(now)
        acc = pd.DataFrame(
            {
                "unit_id": accidents["unit_id"].astype("string"),
                "time": pd.to_datetime(accidents["time"], utc=True, errors="coerce"),
                "severity": accidents["severity"].astype("string"),
                "event_id": (
                    accidents["event_id"].astype(str)
                    if "event_id" in accidents
                    else pd.Series(accidents.index.astype(str), index=accidents.index)
                ),
            }
        )
        acc = acc[
            acc["unit_id"].notna()
            & acc["time"].notna()
            & acc["severity"].isin(sorted(self.settings.reopen_severities))
            & (acc["time"] <= pd.Timestamp(t))
        ]
        if not len(acc):
            return []
        with self.db.transaction() as tx:
            rows = tx.all(
                "SELECT h.pk, h.version, h.closed_at, u.unit_id FROM hazards h "
                "JOIN hazard_units u ON u.hazard_pk = h.pk WHERE h.state = ?",
                (lc.CLOSED,),
            )
        if not rows:
            return []
        closed = pd.DataFrame(rows)
        closed["closed_at"] = pd.to_datetime(closed["closed_at"], utc=True, format="ISO8601")
        m = closed.merge(acc, on="unit_id")
        period = pd.Timedelta(days=self.settings.reopen_days)
        m = m[(m["time"] > m["closed_at"]) & (m["time"] <= m["closed_at"] + period)]
        m = m.sort_values(["pk", "time"]).drop_duplicates("pk")
        out = []
        records: list[dict[Any, Any]] = m.to_dict("records")
        for r in records:
            try:
                self.transition(
                    int(r["pk"]),
                    lc.REOPEN_STATE,
                    actor=SYSTEM,
                    role=SYSTEM,
                    expected_version=int(r["version"]),
                    comment=(
                        f"reopened: {r['severity']} crash {r['event_id']} on unit {r['unit_id']} "
                        f"at {r['time'].isoformat()}, within {self.settings.reopen_days:g} days of "
                        "closure"
                    ),
                    details={"crash": str(r["event_id"]), "unit_id": str(r["unit_id"])},
                    now=t,
                )
            except (StaleVersion, ConflictError):
                continue  # changed meanwhile (e.g. reopened by another process)
            out.append(f"H{r['pk']}")
        return out
