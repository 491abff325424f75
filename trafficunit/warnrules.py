"""Warning rules as data: their shape (:class:`Rule`), the defaults and how they are read
(:func:`load_rules`, YAML or JSON). :mod:`trafficunit.warnings` evaluates them."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._errors import ValidationError
from .risk import SEVERITIES

__all__ = ["BUILTINS", "DEFAULT_RULES", "FILTERS", "SCOPES", "Rule", "load_rules"]

#: Built-in rules (no window or threshold of their own).
BUILTINS = ("turned-red", "night-workzone-on-red", "hazard-overdue")
SCOPES = ("unit", "corridor", "zone")
FILTERS = ("severity", "collision_type", "light", "hour", "road_class")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")

#: The rules shipped as defaults (the four of the issue).
DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "id": "cluster-rear-end",
        "scope": "unit",
        "window": "30d",
        "where": {"severity": ["K", "A", "B"], "collision_type": "rear_end"},
        "threshold": {"count": 3},
    },
    {"id": "turned-red"},
    {"id": "night-workzone-on-red", "hour": [19, 7]},
    {"id": "hazard-overdue"},
]


def _norm(v: Any) -> str:
    return re.sub(r"[\s_\-]+", "-", str(v).strip().lower())


@dataclass(frozen=True)
class Rule:
    """One validated rule."""

    id: str
    scope: str = "unit"
    window_s: int = 0
    where: Mapping[str, Any] = field(default_factory=dict)
    metric: str = "count"
    threshold: float = 0.0
    grid_m: float = 1000.0
    zone_field: str | None = None
    hour: tuple[int, int] = (19, 7)
    builtin: bool = False
    length_m: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The rule as data (what :func:`load_rules` reads)."""
        if self.builtin:
            return {"id": self.id}
        out: dict[str, Any] = {
            "id": self.id,
            "scope": self.scope,
            "window": f"{self.window_s}s",
            "where": dict(self.where),
            "threshold": {self.metric: self.threshold},
        }
        if self.length_m is not None:
            out["length_m"] = self.length_m
        return out


def _parse_window(value: Any, rid: str) -> int:
    m = _WINDOW.match(str(value))
    if m is None:
        raise ValidationError(
            f"rule {rid!r}: window {value!r} is not a duration like 30d, 12h, 2w, 90m"
        )
    secs = float(m.group(1)) * _UNITS[m.group(2)]
    if secs <= 0:
        raise ValidationError(f"rule {rid!r}: window must be positive")
    return int(secs)


def _hour_band(value: Any, rid: str) -> tuple[int, int]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(h, int) and 0 <= h <= 24 for h in value)
    ):
        raise ValidationError(f"rule {rid!r}: hour must be [start, end) hours 0-24, e.g. [19, 7]")
    return int(value[0]), int(value[1])


def _rule(raw: Any, k: int) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"rule #{k + 1} is not a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid.strip():
        raise ValidationError(f"rule #{k + 1} has no id")
    if rid in BUILTINS and set(raw) <= {"id", "hour", "description"}:
        hour = _hour_band(raw["hour"], rid) if "hour" in raw else (19, 7)
        return Rule(rid, builtin=True, hour=hour)
    unknown = set(raw) - {
        "id",
        "scope",
        "window",
        "where",
        "threshold",
        "grid_m",
        "zone_field",
        "length_m",
        "description",
    }
    if unknown:
        raise ValidationError(f"rule {rid!r}: unknown key(s) {sorted(unknown)}")
    scope = raw.get("scope", "unit")
    if scope not in SCOPES:
        raise ValidationError(
            f"rule {rid!r}: scope must be one of {', '.join(SCOPES)}, got {scope!r}"
        )
    if "window" not in raw:
        raise ValidationError(f"rule {rid!r}: no window (e.g. window: 30d)")
    window_s = _parse_window(raw["window"], rid)
    thr = raw.get("threshold")
    if not isinstance(thr, Mapping) or len(thr) != 1 or next(iter(thr)) not in ("count", "epdo"):
        raise ValidationError(f"rule {rid!r}: threshold must be {{count: N}} or {{epdo: X}}")
    metric, value = next(iter(thr.items()))
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValidationError(f"rule {rid!r}: threshold {metric} must be a positive number")
    where = raw.get("where") or {}
    if not isinstance(where, Mapping):
        raise ValidationError(f"rule {rid!r}: where must be a mapping of filters")
    bad = set(where) - set(FILTERS)
    if bad:
        raise ValidationError(
            f"rule {rid!r}: unknown filter(s) {sorted(bad)}; filters are {', '.join(FILTERS)}"
        )
    clean: dict[str, Any] = {}
    for key, val in where.items():
        if key == "hour":
            clean[key] = _hour_band(val, rid)
            continue
        vals = [val] if isinstance(val, str | int) else list(val)
        if not vals:
            raise ValidationError(f"rule {rid!r}: filter {key} is empty")
        if key == "severity":
            letters = [str(v).upper() for v in vals]
            wrong = [v for v in letters if v not in SEVERITIES]
            if wrong:
                raise ValidationError(f"rule {rid!r}: severities {wrong} are not KABCO letters")
            clean[key] = tuple(letters)
        else:
            clean[key] = tuple(_norm(v) for v in vals)
    grid_m = raw.get("grid_m", 1000.0)
    if isinstance(grid_m, bool) or not isinstance(grid_m, int | float) or not grid_m > 0:
        raise ValidationError(f"rule {rid!r}: grid_m must be a positive number of metres")
    zone_field = raw.get("zone_field")
    if zone_field is not None and scope != "zone":
        raise ValidationError(f"rule {rid!r}: zone_field needs scope: zone")
    length_m = raw.get("length_m")
    if length_m is not None:
        if scope != "corridor":
            raise ValidationError(f"rule {rid!r}: length_m needs scope: corridor")
        if isinstance(length_m, bool) or not isinstance(length_m, int | float) or not length_m > 0:
            raise ValidationError(f"rule {rid!r}: length_m must be a positive number of metres")
    return Rule(
        rid,
        scope=scope,
        window_s=window_s,
        where=clean,
        metric=metric,
        threshold=float(value),
        grid_m=float(grid_m),
        zone_field=zone_field,
        length_m=None if length_m is None else float(length_m),
    )


def load_rules(source: Any = None) -> list[Rule]:
    """Validated rules from a YAML/JSON file, a YAML/JSON text, or a list of mappings.

    ``None`` gives :data:`DEFAULT_RULES`. Errors name the rule and what is wrong.
    """
    if source is None:
        raw: Any = DEFAULT_RULES
    elif isinstance(source, str | os.PathLike) and Path(source).suffix.lower() in (
        ".yaml",
        ".yml",
        ".json",
    ):
        path = Path(source)
        if not path.exists():
            raise ValidationError(f"{path}: no such rules file")
        raw = _parse_text(path.read_text(encoding="utf-8"), str(path))
    elif isinstance(source, str):
        raw = _parse_text(source, "rules")
    else:
        raw = source
    if isinstance(raw, Mapping) and "rules" in raw:
        raw = raw["rules"]
    if not isinstance(raw, list):
        raise ValidationError("rules must be a list of rules")
    rules = [_rule(r, k) for k, r in enumerate(raw)]
    ids = [r.id for r in rules]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValidationError(f"rule ids must be unique; repeated: {dup}")
    return rules


def _parse_text(text: str, name: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"{name}: not valid YAML/JSON ({exc})") from exc
