"""The hazard category catalogue: classes of items, loaded from JSON.

The shipped default (``catalogue.json``) has 4 classes (road and surface, safety facilities,
traffic organisation, roadside environment) and 25 items; a city replaces it with its own list
(one published list has 4 classes and 56 items) by pointing
:attr:`~trafficunit.settings.LedgerSettings.catalogue` at a file of the same shape.

>>> cat = load_catalogue()
>>> cat.resolve("facility.signal")
'facility.signal'
>>> len(cat.classes)
4
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from .._errors import InputFileError, ValidationError, clip

__all__ = ["Catalogue", "load_catalogue"]


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


def _parse(doc: Any, where: str) -> Catalogue:
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list):
        raise InputFileError(f"{where}: a catalogue is a JSON object with a 'classes' list")
    items: dict[str, dict[str, Any]] = {}
    classes = []
    for i, cls in enumerate(doc["classes"]):
        if (
            not isinstance(cls, dict)
            or not cls.get("code")
            or not isinstance(cls.get("items"), list)
        ):
            raise InputFileError(f"{where}: classes[{i}] needs 'code' and an 'items' list")
        classes.append(str(cls["code"]))
        for j, item in enumerate(cls["items"]):
            code = str(item.get("code", "")).strip().lower() if isinstance(item, dict) else ""
            if not code:
                raise InputFileError(f"{where}: classes[{i}].items[{j}] has no 'code'")
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
