"""The work-zone file (一点一码一档): changes, inspections, rectification orders, board, KPIs.

A registered road-works site (:meth:`Ledger.register_workzone`) gets a file:

- **changes** with If-Match versions: extend (a later end), end (now or a given time), change
  (lanes taken, night works, contractor, description); each is an event with actor and role;
- **inspections** with a checklist (signs, cones, night lighting, lanes as permitted), a result
  (pass / fail), notes and photos; a failed inspection creates a **rectification order**: a
  hazard in the ledger at the site, registered and assigned to the site's contractor with a
  deadline, so the hazard loop (overdue escalation, acceptance) runs on it;
- its **history** (everything above, with each order's current state) for the public page;
- a printable **A4 board** (PDF with the QR code and the site's facts, zh-CN and English);
- **KPIs**: active sites not inspected in N days, open rectification orders.

The tables live beside the ledger's and are created here with ``CREATE TABLE IF NOT EXISTS``;
the ledger's schema version is unchanged.
"""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Unpack

from . import lifecycle as lc
from ._tables import create_tables
from .errors import ConflictError, NotFoundError, StaleVersion, ValidationError
from .workzones import WorkZoneFacts, works_columns

__all__ = ["CHECKLIST", "SiteFile", "board_pdf", "ensure_schema"]

#: Checklist items: (code, English, Chinese, hazard category of a failure).
CHECKLIST: tuple[tuple[str, str, str, str], ...] = (
    ("signs", "Warning signs in place", "警示标志齐全", "facility.signs"),
    ("cones", "Cones and barriers in place", "锥桶与围挡到位", "facility.barrier"),
    ("night_lighting", "Night lighting working", "夜间照明正常", "facility.lighting"),
    (
        "lanes_as_permitted",
        "Lanes taken as permitted",
        "占道范围符合许可",
        "organisation.conflict_layout",
    ),
)
_ITEMS = {c[0]: c for c in CHECKLIST}
_MAX_PHOTO = 5 * 1024 * 1024
_MAX_PHOTOS = 6


_DDL = [
    """CREATE TABLE IF NOT EXISTS workzone_file (
        pk {PK},
        site_code TEXT NOT NULL,
        at TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT,
        role TEXT,
        version INTEGER,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS workzone_file_site ON workzone_file (site_code)",
    """CREATE TABLE IF NOT EXISTS workzone_inspections (
        pk {PK},
        site_code TEXT NOT NULL,
        at TEXT NOT NULL,
        inspector TEXT,
        role TEXT,
        result TEXT NOT NULL,
        checklist TEXT NOT NULL,
        notes TEXT,
        order_hazard TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS workzone_inspections_site ON workzone_inspections (site_code)",
    """CREATE TABLE IF NOT EXISTS workzone_photos (
        pk {PK},
        inspection_pk BIGINT NOT NULL REFERENCES workzone_inspections (pk),
        name TEXT,
        content_type TEXT NOT NULL,
        data {BLOB} NOT NULL
    )""",
]


def ensure_schema(db: Any) -> None:
    """Create the work-zone file tables if they are missing (idempotent)."""
    create_tables(db, _DDL)


def _iso(t: datetime) -> str:
    """The ledger's time format (UTC, microseconds, Z): text order is time order."""
    from .store import iso

    out = iso(t)
    assert out is not None
    return out


def _photo(p: Any, i: int) -> tuple[str | None, str, bytes]:
    """(name, content type, bytes) of a photo given as bytes, a dict or a data URL."""
    if isinstance(p, bytes | bytearray):
        data, name, ctype = bytes(p), None, "image/jpeg"
    elif isinstance(p, dict):
        name = p.get("name")
        ctype = str(p.get("content_type") or "image/jpeg")
        raw = p.get("data")
        if isinstance(raw, bytes | bytearray):
            data = bytes(raw)
        else:
            try:
                data = base64.b64decode(str(raw or ""), validate=True)
            except ValueError as exc:
                raise ValidationError(f"photo {i}: data is not base64") from exc
    else:
        raise ValidationError(f"photo {i}: give {{name, content_type, data (base64)}}")
    if not ctype.startswith("image/"):
        raise ValidationError(f"photo {i}: content_type {ctype!r} is not an image")
    if not data:
        raise ValidationError(f"photo {i} is empty")
    if len(data) > _MAX_PHOTO:
        raise ValidationError(f"photo {i} is larger than {_MAX_PHOTO // (1024 * 1024)} MB")
    return name, ctype, data


class SiteFile:
    """The file of every registered work zone of a :class:`~trafficunit.ledger.Ledger`."""

    def __init__(self, ledger: Any, *, order_days: float = 3.0) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.order_days = float(order_days)
        ensure_schema(self.db)

    # -- changes
    def change(
        self,
        site_code: str,
        *,
        actor: str,
        role: str,
        expected_version: int | None,
        end: Any = None,
        end_now: bool = False,
        comment: str | None = None,
        now: datetime | None = None,
        **facts: Unpack[WorkZoneFacts],
    ) -> Any:
        """Extend, end or change a site; StaleVersion when ``expected_version`` is not current.

        ``end`` later than the current end extends the site; ``end_now`` (or an ``end`` not
        after now) ends it; ``facts`` (:class:`~trafficunit.ledger.workzones.WorkZoneFacts`)
        change what is known of the works. Returns the updated
        :class:`~trafficunit.ledger.WorkZone`.
        """
        from .store import parse_time

        lc.require(role, "workzone")
        t = now or datetime.now(UTC)
        zone = self.ledger.get_workzone(site_code)
        fields: dict[str, Any] = {}
        actions: list[str] = []
        if end_now and end is not None:
            raise ValidationError("give end or end_now, not both")
        if end_now or end is not None:
            new_end = t if end_now else parse_time(end, "end")
            if new_end < zone.start:
                raise ValidationError(f"end {_iso(new_end)} is before the start {_iso(zone.start)}")
            if zone.end is not None and zone.end <= t and not end_now:
                pass  # reopening an ended site by a later end is an extension
            fields["end_at"] = _iso(new_end)
            if new_end <= t:
                actions.append("end")
            elif zone.end is None or new_end > zone.end:
                actions.append("extend")
            else:
                actions.append("shorten")
        fields.update(works_columns(facts))
        contractor, description = facts.get("contractor"), facts.get("description")
        if contractor is not None:
            fields["contractor"] = str(contractor)[:200]
        if description is not None:
            fields["description"] = str(description)[:4000]
        if not fields:
            raise ValidationError(
                "nothing to change: give end, end_now, lanes_taken, "
                "night_works, contractor or description"
            )
        if set(fields) - {"end_at"}:
            actions.append("change")
        with self.db.transaction(write=True) as tx:
            row = tx.one("SELECT pk, version FROM workzones WHERE site_code = ?", (zone.site_code,))
            if row is None:
                raise NotFoundError(f"no work zone with site code {site_code!r}")
            version = int(row["version"])
            if expected_version is not None and expected_version != version:
                raise StaleVersion(
                    f"work zone {zone.site_code} is at version {version}, not "
                    f"{expected_version}; read it again",
                    current_version=version,
                )
            seq = tx.next_change()
            sets = ", ".join(f"{k} = ?" for k in fields)
            n = tx.execute(
                f"UPDATE workzones SET {sets}, version = ?, updated_at = ?, change_seq = ? "
                "WHERE pk = ? AND version = ?",
                (*fields.values(), version + 1, _iso(t), seq, int(row["pk"]), version),
            )
            if n != 1:
                raise StaleVersion(
                    f"work zone {zone.site_code} changed meanwhile", current_version=version
                )
            tx.execute(
                "INSERT INTO workzone_file (site_code, at, action, actor, role, version, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    zone.site_code,
                    _iso(t),
                    "+".join(actions),
                    actor,
                    role,
                    version + 1,
                    json.dumps({**fields, "comment": comment}, ensure_ascii=False),
                ),
            )
        return self.ledger.get_workzone(zone.site_code)

    # -- inspections
    def inspect(
        self,
        site_code: str,
        *,
        actor: str,
        role: str,
        result: str,
        checklist: dict[str, bool],
        notes: str | None = None,
        photos: list[Any] | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Record an inspection; a failed one opens a rectification order (a hazard)."""
        lc.require(role, "workzone")
        t = now or datetime.now(UTC)
        zone = self.ledger.get_workzone(site_code)
        result = str(result).strip().lower()
        if result not in ("pass", "fail"):
            raise ValidationError(f"result must be 'pass' or 'fail', got {result!r}")
        unknown = set(checklist) - set(_ITEMS)
        if unknown:
            raise ValidationError(
                f"unknown checklist items {sorted(unknown)}; items: {', '.join(_ITEMS)}"
            )
        failed = [k for k, ok in checklist.items() if ok is False]
        if result == "pass" and failed:
            raise ValidationError(f"a passed inspection cannot fail items {failed}")
        if result == "fail" and not failed and not (notes or "").strip():
            raise ValidationError("a failed inspection names a failed checklist item or has notes")
        pics = [_photo(p, i) for i, p in enumerate(photos or [])]
        if len(pics) > _MAX_PHOTOS:
            raise ValidationError(f"at most {_MAX_PHOTOS} photos per inspection")
        order = None
        if result == "fail":
            order = self._order(zone, failed, notes, actor, role, t)
        with self.db.transaction(write=True) as tx:
            row = tx.one(
                "INSERT INTO workzone_inspections (site_code, at, inspector, role, result, "
                "checklist, notes, order_hazard) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING pk",
                (zone.site_code, _iso(t), actor, role, result, json.dumps(checklist), notes, order),
            )
            assert row is not None
            ipk = int(row["pk"])
            photo_ids = []
            for name, ctype, data in pics:
                prow = tx.one(
                    "INSERT INTO workzone_photos (inspection_pk, name, content_type, data) "
                    "VALUES (?, ?, ?, ?) RETURNING pk",
                    (ipk, name, ctype, data),
                )
                assert prow is not None
                photo_ids.append(int(prow["pk"]))
            tx.execute(
                "INSERT INTO workzone_file (site_code, at, action, actor, role, version, detail) "
                "VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (
                    zone.site_code,
                    _iso(t),
                    f"inspection_{result}",
                    actor,
                    role,
                    json.dumps(
                        {"inspection": ipk, "order": order, "failed": failed}, ensure_ascii=False
                    ),
                ),
            )
        return {
            "inspection": ipk,
            "site_code": zone.site_code,
            "at": _iso(t),
            "result": result,
            "checklist": checklist,
            "notes": notes,
            "photos": photo_ids,
            "order": order,
        }

    def _order(
        self, zone: Any, failed: list[str], notes: str | None, actor: str, role: str, t: datetime
    ) -> str:
        """Open a rectification order: a hazard at the site, assigned with a deadline."""
        category = _ITEMS[failed[0]][3] if failed else "environment.other"
        what = ", ".join(_ITEMS[k][1] for k in failed) or "see notes"
        what_zh = "、".join(_ITEMS[k][2] for k in failed) or "见备注"
        desc = (
            f"Rectification order for work zone {zone.site_code} / 施工点整改 "
            f"{zone.site_code}: {what} / {what_zh}. {notes or ''}"
        ).strip()
        res = self.ledger.report(
            zone.geometry,
            category=category,
            actor=actor,
            role=role,
            source="patrol",
            description=desc[:4000],
            link_duplicates=False,
            now=t,
        )
        h = res.hazard
        deadline = t + timedelta(days=self.order_days)
        steps: tuple[tuple[str, dict[str, Any]], ...] = (
            ("registered", {"grade": "general"}),
            (
                "assigned",
                {
                    "responsible": zone.contractor or f"contractor of {zone.site_code}",
                    "deadline": deadline,
                },
            ),
        )
        for state, given in steps:
            h = self.ledger.transition(
                h.id, state, actor=actor, role=role, expected_version=h.version, now=t, **given
            )
        with self.db.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO workzone_file (site_code, at, action, actor, role, version, detail) "
                "VALUES (?, ?, 'order', ?, ?, NULL, ?)",
                (
                    zone.site_code,
                    _iso(t),
                    actor,
                    role,
                    json.dumps(
                        {
                            "hazard": h.id,
                            "deadline": _iso(deadline),
                            "failed": failed,
                        },
                        ensure_ascii=False,
                    ),
                ),
            )
        return str(h.id)

    def photo(self, site_code: str, photo_id: int) -> tuple[str, bytes]:
        """(content type, bytes) of an inspection photo of the site."""
        with self.db.transaction() as tx:
            row = tx.one(
                "SELECT p.content_type, p.data FROM workzone_photos p JOIN workzone_inspections i"
                " ON i.pk = p.inspection_pk WHERE p.pk = ? AND i.site_code = ?",
                (int(photo_id), str(site_code)),
            )
        if row is None:
            raise NotFoundError(f"no photo {photo_id} of work zone {site_code!r}")
        return str(row["content_type"]), bytes(row["data"])

    # -- the file
    def history(self, site_code: str) -> dict[str, Any]:
        """The site with its events, inspections (photo ids) and orders (current state)."""
        zone = self.ledger.get_workzone(site_code)
        with self.db.transaction() as tx:
            events = tx.all(
                "SELECT at, action, actor, role, version, detail FROM workzone_file WHERE "
                "site_code = ? ORDER BY pk",
                (zone.site_code,),
            )
            insp = tx.all(
                "SELECT pk, at, inspector, role, result, checklist, notes, order_hazard FROM "
                "workzone_inspections WHERE site_code = ? ORDER BY pk",
                (zone.site_code,),
            )
            photos = tx.all(
                "SELECT p.pk, p.inspection_pk, p.name FROM workzone_photos p JOIN "
                "workzone_inspections i ON i.pk = p.inspection_pk WHERE i.site_code = ? "
                "ORDER BY p.pk",
                (zone.site_code,),
            )
        registered = {
            "at": _iso(zone.created_at),
            "action": "register",
            "actor": zone.created_by,
            "role": None,
            "version": 1,
            "detail": {},
        }
        out_events = [registered] + [{**e, "detail": json.loads(e["detail"])} for e in events]
        by_insp: dict[int, list[int]] = {}
        for p in photos:
            by_insp.setdefault(int(p["inspection_pk"]), []).append(int(p["pk"]))
        inspections = []
        orders = []
        for r in insp:
            inspections.append(
                {
                    "inspection": int(r["pk"]),
                    "at": r["at"],
                    "inspector": r["inspector"],
                    "result": r["result"],
                    "checklist": json.loads(r["checklist"]),
                    "notes": r["notes"],
                    "photos": by_insp.get(int(r["pk"]), []),
                    "order": r["order_hazard"],
                }
            )
            if r["order_hazard"]:
                h = self.ledger.get(r["order_hazard"])
                orders.append(
                    {
                        "hazard": h.id,
                        "state": h.state,
                        "deadline": _iso(h.deadline) if getattr(h, "deadline", None) else None,
                        "responsible": getattr(h, "responsible", None),
                    }
                )
        return {
            "site_code": zone.site_code,
            "version": zone.version,
            "workzone": zone.properties(),
            "events": out_events,
            "inspections": inspections,
            "orders": orders,
        }

    def kpis(self, *, days: float = 7.0, now: datetime | None = None) -> dict[str, Any]:
        """Active sites not inspected in ``days``, and open rectification orders."""
        t = now or datetime.now(UTC)
        _, active = self.ledger.list_workzones(active_at=t, limit=10**6)
        with self.db.transaction() as tx:
            last = {
                r["site_code"]: r["last"]
                for r in tx.all(
                    "SELECT site_code, MAX(at) AS last FROM workzone_inspections GROUP BY site_code"
                )
            }
            orders = tx.all(
                "SELECT site_code, order_hazard FROM workzone_inspections "
                "WHERE order_hazard IS NOT NULL"
            )
        cutoff = _iso(t - timedelta(days=float(days)))
        stale = [
            {"site_code": z.site_code, "last_inspection": last.get(z.site_code)}
            for z in active
            if last.get(z.site_code) is None or str(last[z.site_code]) < cutoff
        ]
        open_orders = []
        for o in orders:
            h = self.ledger.get(o["order_hazard"])
            if h.state in lc.OPEN_STATES:
                open_orders.append(
                    {
                        "site_code": o["site_code"],
                        "hazard": h.id,
                        "state": h.state,
                        "overdue": bool(h.overdue(t)),
                    }
                )
        return {
            "days": float(days),
            "active_sites": len(active),
            "not_inspected": len(stale),
            "not_inspected_sites": stale,
            "open_orders": len(open_orders),
            "overdue_orders": sum(o["overdue"] for o in open_orders),
            "orders": open_orders,
        }


def _font(size: int) -> Any:
    """A CJK-capable TrueType font (Noto CJK from fonts-noto-cjk), else a clear error."""
    from PIL import ImageFont

    candidates = [
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    ]
    for c in candidates:
        if Path(c).exists():
            return ImageFont.truetype(c, size)
    raise ConflictError("no Chinese font for the board; install fonts-noto-cjk (apt) on the server")


def board_pdf(zone: Any, page_url: str) -> bytes:
    """The site's A4 board (portrait, 150 dpi): orange, its facts in Chinese and English, QR."""
    from PIL import Image, ImageDraw

    from .workzones import qr_png

    w, h = 1240, 1754  # A4 at 150 dpi
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    orange = (245, 130, 32)
    d.rectangle([0, 0, w, 260], fill=orange)
    d.text((60, 50), "占道施工公示牌", font=_font(84), fill="white")
    d.text((60, 170), "Road works notice", font=_font(48), fill="white")
    p = zone.properties()

    def short(t: Any) -> str:
        return str(t)[:16].replace("T", " ") + " UTC" if t else "未定 open"

    end = short(p.get("end"))
    rows = [
        ("施工点编码 Site code", zone.site_code),
        ("施工期限 Period", f"{short(p.get('start'))} – {end}"),
        ("施工单位 Contractor", p.get("contractor") or "—"),
        ("许可证号 Permit", p.get("permit") or "—"),
        ("占用车道 Lanes taken", "—" if p.get("lanes_taken") is None else str(p["lanes_taken"])),
        ("夜间施工 Night works", {True: "是 yes", False: "否 no"}.get(p.get("night_works"), "—")),
        ("说明 Description", (p.get("description") or "—")[:40]),
    ]
    y = 320
    label, value = _font(34), _font(40)
    for k, v in rows:
        d.text((60, y), k, font=label, fill=(90, 90, 90))
        d.text((60, y + 44), str(v), font=value, fill="black")
        y += 105
    qr = Image.open(io.BytesIO(qr_png(page_url, box_size=10))).convert("RGB")
    qr = qr.resize((440, 440))
    img.paste(qr, ((w - 440) // 2, y + 20))
    d.text((60, y + 475), "扫码查看施工档案、巡查与整改记录", font=_font(38), fill="black")
    d.text(
        (60, y + 525),
        "Scan for the site's file: inspections and orders",
        font=_font(32),
        fill=(60, 60, 60),
    )
    d.text((60, h - 80), page_url, font=_font(26), fill=(60, 60, 60))
    d.rectangle([0, h - 24, w, h], fill=orange)
    out = io.BytesIO()
    img.save(out, format="PDF", resolution=150.0)
    return out.getvalue()
