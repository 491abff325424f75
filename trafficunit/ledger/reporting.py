"""Recording reports: checks, replayed imports, a new hazard (assigned to units, routed by the
report hooks) or a report linked to the open hazard it repeats (:mod:`.duplicates`)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import shapely

from .._errors import clip
from . import lifecycle as lc
from ._core import _Assigned
from ._db import Tx
from ._values import iso, json_time, now_utc, parse_time, text
from .duplicates import Duplicates
from .errors import ValidationError
from .geometry import parse_geometry
from .records import SOURCES, CheckedReport, Hazard, ReportBatch, ReportResult

__all__ = ["Reporting"]

_CHUNK = 500  # external ids per IN (...) query


class Reporting(Duplicates):
    """The ledger's report path (a mixin of :class:`~trafficunit.ledger.Ledger`)."""

    def report(
        self,
        geometry: Any,
        *,
        category: str,
        actor: str = "anonymous",
        role: str = "reporter",
        grade: str | None = None,
        description: str | None = None,
        source: str = "public_report",
        road_name: str | None = None,
        reported_at: Any = None,
        external_id: str | None = None,
        link_duplicates: bool = True,
        initial_state: str = lc.INITIAL_STATE,
        now: datetime | None = None,
    ) -> ReportResult:
        """Record a report: a new hazard, or a report linked to the open hazard it repeats.

        A report within ``settings.duplicate_distance_m`` of an open hazard of the same
        category reported within ``settings.duplicate_window_days`` is linked to the nearest
        such hazard (its ``report_count`` goes up, its version too) instead of opening another.
        A new hazard is assigned to the units at once.

        Parameters
        ----------
        geometry
            GeoJSON geometry (point, line or polygon, WGS84) or a shapely geometry.
        category
            An item code of the catalogue (``GET /hazard-categories``).
        actor, role
            Who reports (recorded) and their role (must be allowed to report).
        grade
            ``general``/``major`` (一般/重大) when already known; else set at registration.
        source
            One of :data:`SOURCES`.
        reported_at
            When it was seen (default: now; not in the future).
        external_id
            The report's id in another system: reporting it again returns the stored hazard
            (``replayed``) and changes nothing, so imports can be rerun.
        link_duplicates
            False to always open a new hazard.
        initial_state
            Imports only (``source="import"``): the state the hazard had in the source
            system. The history then starts with one ``import`` event into that state.
        """
        rep = self._check_report(
            geometry,
            category=category,
            actor=actor,
            role=role,
            grade=grade,
            description=description,
            source=source,
            road_name=road_name,
            reported_at=reported_at,
            external_id=external_id,
            link_duplicates=link_duplicates,
            initial_state=initial_state,
            now=now,
        )
        result = self._record([rep])[0]
        assert result is not None
        return result

    def report_many(
        self, reports: Sequence[Mapping[str, Any]], *, skip_invalid: bool = False
    ) -> ReportBatch:
        """Record many reports, in order, as one :meth:`report` call each would: the same
        hazards, duplicate links, replays and history, in one transaction and with one
        vectorised unit assignment (an import of thousands of hazards takes seconds, not
        minutes).

        Parameters
        ----------
        reports
            Each item the keyword arguments of :meth:`report` (``geometry``, ``category``,
            ``actor``, ``role``, ``external_id``, ...).
        skip_invalid
            False (default): a report that fails its checks raises
            :class:`~trafficunit.ledger.ValidationError` naming its position, and nothing is
            recorded. True: it is left out (``None`` in ``results``) with its reason in
            ``errors``.
        """
        checked: list[CheckedReport | None] = []
        errors: dict[int, str] = {}
        for i, kw in enumerate(reports):
            try:
                checked.append(self._check_report(**{**_REPORT_DEFAULTS, **kw}))
            except ValidationError as exc:
                if not skip_invalid:
                    raise ValidationError(f"report {i}: {exc}") from exc
                errors[i] = str(exc)
                checked.append(None)
        return ReportBatch(self._record(checked), errors)

    def _record(self, checked: list[CheckedReport | None]) -> list[ReportResult | None]:
        """Record checked reports in order (``None`` ones skipped), in one write transaction
        with one unit assignment: each a replay, a link to the open hazard it repeats or a
        new hazard; their results."""
        ext = [c.external_id for c in checked if c is not None and c.external_id is not None]
        known: dict[str, int] = {}
        if ext:  # a replayed import needs no unit assignment
            with self.db.transaction() as tx:
                known = self._external_ids(tx, ext)
        todo = [
            i
            for i, c in enumerate(checked)
            if c is not None and (c.external_id is None or c.external_id not in known)
        ]
        assigned = dict(
            zip(
                todo,
                self._assign_many(
                    [checked[i].geom for i in todo],  # type: ignore[union-attr]
                    "hazard",
                    [checked[i].road_name for i in todo],  # type: ignore[union-attr]
                ),
                strict=True,
            )
        )
        results: list[ReportResult | None] = [None] * len(checked)
        with self.db.transaction(write=True) as tx:
            known = self._external_ids(tx, ext)  # again, under the write lock
            self._sync(tx)
            for i, rep in enumerate(checked):
                if rep is None:
                    continue
                if rep.external_id is not None and rep.external_id in known:
                    hazard = self._get(tx, known[rep.external_id])
                    results[i] = ReportResult(hazard, False, False, None, True)
                    continue
                wkb = shapely.to_wkb(rep.geom)
                if rep.link_duplicates:
                    self._sync(tx)
                    dup = self._duplicate_of(rep.geom, rep.category, rep.t)
                    if dup is not None:
                        hazard = self._link_duplicate(tx, dup[0], dup[1], rep, wkb)
                        results[i] = ReportResult(hazard, False, True, dup[1])
                        if rep.external_id is not None:
                            known[rep.external_id] = hazard.pk
                        continue
                units = (
                    assigned[i]
                    if i in assigned
                    else self._assign_many([rep.geom], "hazard", [rep.road_name])[0]
                )
                hazard = self._new_hazard(tx, rep, units, wkb)
                results[i] = ReportResult(hazard, True, False, None)
                if rep.external_id is not None:
                    known[rep.external_id] = hazard.pk
            self._sync(tx)
        return results

    @staticmethod
    def _external_ids(tx: Tx, external_ids: Sequence[str]) -> dict[str, int]:
        """The hazard of each of ``external_ids`` already received."""
        found: dict[str, int] = {}
        ids = list(dict.fromkeys(external_ids))
        for k in range(0, len(ids), _CHUNK):
            chunk = ids[k : k + _CHUNK]
            rows = tx.all(
                "SELECT external_id, hazard_pk FROM hazard_reports WHERE external_id IN "
                f"({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update((str(r["external_id"]), int(r["hazard_pk"])) for r in rows)
        return found

    def _check_report(
        self,
        geometry: Any,
        *,
        category: str,
        actor: str,
        role: str,
        grade: str | None,
        description: str | None,
        source: str,
        road_name: str | None,
        reported_at: Any,
        external_id: str | None,
        link_duplicates: bool,
        initial_state: str,
        now: datetime | None,
    ) -> CheckedReport:
        """A report's fields checked and normalised (ValidationError, PermissionDenied, ...)."""
        lc.require(role, "report")
        if initial_state != lc.INITIAL_STATE:
            if source != "import" or initial_state not in lc.STATES:
                raise ValidationError(
                    "only imports (source='import') may start in another state than "
                    f"{lc.INITIAL_STATE!r}"
                )
            link_duplicates = False
        t_now = now_utc(now)
        if isinstance(geometry, shapely.Geometry):
            geometry = json.loads(shapely.to_geojson(geometry))
        geom = parse_geometry(geometry, max_vertices=self.settings.max_vertices)
        if source != "import":  # imports keep what the source system recorded
            self._check_plausible(geom, "hazard")
        category = self.catalogue.resolve(category)
        grade = lc.normalise_grade(grade)
        if source not in SOURCES:
            raise ValidationError(f"unknown source {clip(source)}; use one of {', '.join(SOURCES)}")
        description = text(description, "description")
        road_name = text(road_name, "road_name", limit=200)
        external_id = text(external_id, "external_id", limit=200)
        actor = text(actor, "actor", required=True, limit=200) or "anonymous"
        t = t_now if reported_at is None else parse_time(reported_at, "reported_at")
        if t > t_now + timedelta(minutes=5):
            raise ValidationError(
                f"reported_at {json_time(t)} is in the future (server time {json_time(t_now)})"
            )
        return CheckedReport(
            geom=geom,
            category=category,
            grade=grade,
            source=source,
            description=description,
            road_name=road_name,
            external_id=external_id,
            actor=actor,
            role=role,
            t=t,
            t_now=t_now,
            initial_state=initial_state,
            link_duplicates=link_duplicates,
        )

    def _new_hazard(self, tx: Tx, rep: CheckedReport, units: _Assigned, wkb: bytes) -> Hazard:
        """Store a new hazard of ``rep`` with its units, first report and first event."""
        seq = tx.next_change()
        geom = rep.geom
        pk = int(
            tx.scalar(
                "INSERT INTO hazards (version, state, category, grade, source, description, "
                "road_name, report_count, reopen_count, reported_at, last_reported_at, "
                "updated_at, reported_by, unit_ids, geom, geom_type, minx, miny, maxx, maxy, "
                f"change_seq) VALUES (1, ?, ?, ?, ?, ?, ?, 1, 0, ?, ?, ?, ?, ?, "
                f"{tx.geom_in}, ?, ?, ?, ?, ?, ?) RETURNING pk",
                (
                    rep.initial_state,
                    rep.category,
                    rep.grade,
                    rep.source,
                    rep.description,
                    rep.road_name,
                    iso(rep.t),
                    iso(rep.t),
                    iso(rep.t_now),
                    rep.actor,
                    ";".join(units.unit_ids),
                    wkb,
                    geom.geom_type,
                    *geom.bounds,
                    seq,
                ),
            )
        )
        self._insert_units(tx, "hazard", pk, units)
        rpk = self._insert_report(tx, pk, rep, 0.0, wkb)
        routed = self._run_report_hooks(tx, pk, rep.category, rep.grade, units.unit_ids, rep.source)
        details = {
            "report": rpk,
            "unit_ids": units.unit_ids,
            **({"routed": routed} if routed else {}),
        }
        action = "report" if rep.initial_state == lc.INITIAL_STATE else "import"
        self._event(
            tx,
            pk,
            1,
            rep.t_now,
            rep.actor,
            rep.role,
            action,
            None,
            rep.initial_state,
            rep.description,
            details,
        )
        return self._get(tx, pk)

    def _run_report_hooks(
        self, tx: Tx, pk: int, category: str, grade: str | None, unit_ids: list[str], source: str
    ) -> dict[str, Any]:
        """Run :attr:`report_hooks` for a new hazard; apply ``responsible``/``road_chief``."""
        if source == "import" or not self.report_hooks:
            return {}
        out: dict[str, Any] = {}
        for hook in self.report_hooks:
            try:
                out.update(hook(tx, pk, category, grade, list(unit_ids)) or {})
            except ValidationError:  # a hook refusing the report (e.g. a district-only item)
                raise
            except Exception as exc:  # routing must never lose a report
                out["routing_error"] = str(exc)[:500]
        sets = {k: str(out[k])[:200] for k in ("responsible", "road_chief") if out.get(k)}
        if sets:
            tx.execute(
                f"UPDATE hazards SET {', '.join(f'{k} = ?' for k in sets)} WHERE pk = ?",
                [*sets.values(), pk],
            )
        return out


#: :meth:`Reporting.report`'s defaults, for :meth:`Reporting.report_many`'s items.
_REPORT_DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(Reporting.report).parameters.items()
    if name != "self" and p.default is not inspect.Parameter.empty
}
