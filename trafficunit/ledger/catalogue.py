"""The hazard category catalogue: classes of items, loaded from JSON; district overlays ("1 + N").

The shipped default (``catalogue.json``) has 4 classes (road and surface, safety facilities,
traffic organisation, roadside environment) and 25 items; a city replaces it with its own list
(one published list has 4 classes and 56 items) by pointing
:attr:`~trafficunit.settings.LedgerSettings.catalogue` at a file of the same shape.

"1 + N" (one city guide plus district standards on top): :func:`load_catalogue_set` adds
district overlays (:func:`load_overlay`) that add items, never remove or change city items,
each versioned; an overlay's items are valid only inside its zone.

>>> cat = load_catalogue()
>>> cat.resolve("facility.signal")
'facility.signal'
>>> len(cat.classes)
4
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from .._errors import InputFileError, ValidationError, clip

__all__ = [
    "Catalogue",
    "CatalogueSet",
    "Overlay",
    "load_catalogue",
    "load_catalogue_set",
    "load_overlay",
]


@dataclass(frozen=True)
class Catalogue:
    """A loaded catalogue: its JSON document and the item codes it allows."""

    version: str
    document: dict[str, Any]
    items: dict[str, dict[str, Any]]
    classes: tuple[str, ...]

    def resolve(self, code: str) -> str:
        """The item code ``code`` names; raise ValidationError if unknown.

        Accepts the code (case-insensitive), the part after the class when only one class has
        it (``"markings"``), or the Chinese name.
        """
        key = str(code).strip().lower()
        if key in self.items:
            return key
        if "." not in key:  # a bare item name ("markings") that one class has
            ends = [k for k in self.items if k.split(".", 1)[-1] == key]
            if len(ends) == 1:
                return ends[0]
        by_name = {str(v.get("name_zh", "")).strip(): k for k, v in self.items.items()}
        if str(code).strip() in by_name and str(code).strip():
            return by_name[str(code).strip()]
        near = sorted(k for k in self.items if k.startswith(key.split(".")[0] + "."))
        hint = f" (items of that class: {', '.join(near)})" if near else ""
        raise ValidationError(
            f"unknown hazard category {clip(code)}{hint}; see GET /hazard-categories for the "
            f"{len(self.items)} items of catalogue {self.version!r}"
        )

    def class_of(self, code: str) -> str:
        """The class code of an item code."""
        return str(self.items[code]["class"])


def _check_class(cls: Any, i: int, where: str) -> None:
    """Refuse ``classes[i]`` unless it is an object with a ``code`` and an ``items`` list."""
    if not isinstance(cls, dict) or not cls.get("code") or not isinstance(cls.get("items"), list):
        raise InputFileError(f"{where}: classes[{i}] needs 'code' and an 'items' list")


def _item_code(item: Any, i: int, j: int, where: str) -> str:
    """The code of ``classes[i].items[j]``, stripped and lower-cased; refused when empty."""
    code = str(item.get("code", "")).strip().lower() if isinstance(item, dict) else ""
    if not code:
        raise InputFileError(f"{where}: classes[{i}].items[{j}] has no 'code'")
    return code


def _parse(doc: Any, where: str) -> Catalogue:
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list):
        raise InputFileError(f"{where}: a catalogue is a JSON object with a 'classes' list")
    items: dict[str, dict[str, Any]] = {}
    classes = []
    for i, cls in enumerate(doc["classes"]):
        _check_class(cls, i, where)
        classes.append(str(cls["code"]))
        for j, item in enumerate(cls["items"]):
            code = _item_code(item, i, j, where)
            if code in items:
                raise InputFileError(f"{where}: item code {clip(code)} appears twice")
            items[code] = {**item, "code": code, "class": cls["code"]}
    if not items:
        raise InputFileError(f"{where}: the catalogue has no items")
    return Catalogue(str(doc.get("version", Path(where).stem)), doc, items, tuple(classes))


@lru_cache(maxsize=8)
def load_catalogue(path: str | None = None) -> Catalogue:
    """Load a catalogue file, or the shipped default when ``path`` is None.

    Parameters
    ----------
    path
        A JSON file shaped like the shipped ``catalogue.json``.
    """
    if path is None:
        text = (files("trafficunit.ledger") / "catalogue.json").read_text(encoding="utf-8")
        where = "trafficunit/ledger/catalogue.json"
    else:
        p = Path(path)
        if not p.exists():
            raise InputFileError(f"{p}: no such catalogue file")
        text = p.read_text(encoding="utf-8")
        where = str(p)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InputFileError(f"{where}: not valid JSON ({exc})") from exc
    return _parse(doc, where)


# --------------------------------------------------------------------------------------------
# "1 + N": the city's catalogue plus district overlays


@dataclass(frozen=True)
class Overlay:
    """A district's additions to the city catalogue (items only added, never removed)."""

    zone: str
    tree: str | None
    version: str
    items: dict[str, dict[str, Any]]
    classes: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CatalogueSet:
    """The city catalogue plus district overlays ("1 + N", docs/domain.md).

    An overlay applies to the hazards in its zone (a unit's zone code at any level of
    ``tree``); its items exist only there. :meth:`union` holds every item (what the ledger
    validates codes against), :meth:`for_zones` what one place may use.
    """

    city: Catalogue
    overlays: tuple[Overlay, ...] = ()

    @property
    def version(self) -> str:
        """``city-version`` plus ``+zone:version`` per overlay."""
        return self.city.version + "".join(f"+{o.zone}:{o.version}" for o in self.overlays)

    def _merged(self, overlays: Sequence[Overlay]) -> Catalogue:
        doc = copy.deepcopy(self.city.document)
        doc["version"] = self.city.version + "".join(f"+{o.zone}:{o.version}" for o in overlays)
        by_code = {c["code"]: c for c in doc["classes"]}
        for o in overlays:
            for cls in o.classes:
                target = by_code.get(cls["code"])
                if target is None:
                    target = {k: v for k, v in cls.items() if k != "items"} | {"items": []}
                    doc["classes"].append(target)
                    by_code[cls["code"]] = target
                for item in cls["items"]:
                    target["items"].append({**item, "zone": o.zone})
        return _parse(doc, doc["version"])

    def union(self) -> Catalogue:
        """Every item of the city and of every overlay."""
        return self._merged(self.overlays)

    def for_zones(self, codes: Iterable[str]) -> Catalogue:
        """The catalogue valid in a place: the city's plus the overlays of its zone codes."""
        cs = set(codes)
        return self._merged([o for o in self.overlays if o.zone in cs])

    def allowed(self, item: str, codes: Iterable[str]) -> bool:
        """Whether ``item`` may be used in a place with these zone codes."""
        if item in self.city.items:
            return True
        cs = set(codes)
        return any(item in o.items and o.zone in cs for o in self.overlays)


def load_overlay(path: str | Path, city: Catalogue) -> Overlay:
    """Read a district overlay: ``{"zone": ..., "tree": ..., "version": ..., "classes": [...]}``.

    Classes with a city class's code add items to it; others are new classes. An item code
    the city already has is refused: an overlay adds, it never changes or removes city items.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{p}: no such catalogue overlay")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputFileError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not doc.get("zone") or not isinstance(doc.get("classes"), list):
        raise InputFileError(f"{p}: an overlay is an object with 'zone' and a 'classes' list")
    for key in ("remove", "delete", "replace"):
        if key in doc:
            raise InputFileError(f"{p}: overlays add items; they cannot {key} city items")
    items: dict[str, dict[str, Any]] = {}
    classes = []
    for i, cls in enumerate(doc["classes"]):
        _check_class(cls, i, str(p))
        clean = []
        for j, item in enumerate(cls["items"]):
            code = _item_code(item, i, j, str(p))
            if code in city.items:
                raise InputFileError(
                    f"{p}: item {code!r} is a city item; overlays add items, they never change "
                    "or remove the city's"
                )
            if code in items:
                raise InputFileError(f"{p}: item code {code!r} appears twice")
            items[code] = {**item, "code": code, "class": cls["code"]}
            clean.append({**item, "code": code})
        classes.append({**cls, "items": clean})
    return Overlay(
        zone=str(doc["zone"]),
        tree=doc.get("tree"),
        version=str(doc.get("version", p.stem)),
        items=items,
        classes=tuple(classes),
    )


def load_catalogue_set(
    city: str | None = None, overlays: Sequence[str | Path] = ()
) -> CatalogueSet:
    """The city catalogue (``None``: the shipped default) and district overlay files."""
    base = load_catalogue(city)
    ovs = tuple(load_overlay(o, base) for o in overlays)
    seen: dict[str, str] = {}
    for o in ovs:
        for code in o.items:
            if code in seen and seen[code] != o.zone:
                raise InputFileError(
                    f"item {code!r} is added by the overlays of {seen[code]} and {o.zone}; give "
                    "district items distinct codes"
                )
            seen[code] = o.zone
    return CatalogueSet(base, ovs)
