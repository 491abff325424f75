"""Black-spot profiles: the rules (:class:`BlackSpotProfile`, :class:`Criterion`), the named
profiles (:data:`BLACK_SPOT_PROFILES`) and how a rule is evaluated over accident sums.

Profiles live here, beside the screening that uses them (:mod:`trafficunit.blackspots`);
:mod:`trafficunit.settings` re-exports the names for older imports.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from .._errors import ValidationError
from ..risk import SEVERITIES
from ..settings import RiskSettings, _With
from ..timefilter import Period

__all__ = [
    "BLACK_SPOT_PROFILES",
    "BlackSpotProfile",
    "Criterion",
    "PROFILES",
    "get_profile",
    "parse_criterion",
    "register_profile",
]


@dataclass(frozen=True)
class Criterion:
    """One condition of a black-spot rule: ``field op value`` over a point or window.

    ``field`` is a count over the accidents inside: ``crashes``, a KABCO letter or a combination
    of letters (``"KA"``: fatal or serious, ``"KABC"``: injury accidents), ``deaths``,
    ``serious_injuries``, ``minor_injuries``, ``epdo`` or ``index`` (the profile's weighted
    casualty index).
    """

    field: str
    value: float
    op: str = ">="

    def __str__(self) -> str:
        value = int(self.value) if float(self.value).is_integer() else self.value
        return f"{self.field} {self.op} {value}"


@dataclass(frozen=True)
class BlackSpotProfile(_With):
    """A rule for accident-prone points and sections (:func:`trafficunit.find_black_spots`).

    Attributes
    ----------
    name, description, source
        Identification; ``source`` says where the numbers come from ([src]/[rec]/[?]).
    years
        Length of the analysis period (the latest ``years`` of data unless a period is given).
    point_radius_m
        Radius of a point (cluster of accidents around a centre accident), metres.
    window_m, step_m
        Sliding-window length and step along continuous roads, metres.
    window_m_rural
        Window on roads whose units are mostly rural (a boolean ``rural`` unit column).
    criteria, combine
        Conditions and how they combine: ``"any"`` (one suffices) or ``"all"``.
    section_criteria
        Conditions for sections when they differ from points.
    index_weights
        Weights of the casualty index (``index`` criterion field) by casualty column.
    include_intersections
        Count accidents on intersection units in the sections of every road through them.
    """

    name: str
    criteria: tuple[Criterion, ...]
    description: str = ""
    source: str = ""
    years: float = 3.0
    point_radius_m: float = 50.0
    window_m: float = 500.0
    step_m: float = 100.0
    window_m_rural: float | None = None
    combine: str = "any"
    section_criteria: tuple[Criterion, ...] | None = None
    index_weights: dict[str, float] = field(
        default_factory=lambda: {"deaths": 100.0, "serious_injuries": 10.0, "minor_injuries": 3.0}
    )
    include_intersections: bool = True


_BASE_FIELDS = ("crashes", *SEVERITIES, "deaths", "serious_injuries", "minor_injuries", "epdo")
_CASUALTY_PROXY = {"deaths": "K", "serious_injuries": "A", "minor_injuries": "BC"}
_CRITERION_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(>=|>)\s*([0-9.]+)\s*$")


# -- profiles -------------------------------------------------------------------------------------


def parse_criterion(text: str) -> Criterion:
    """``"KA >= 3"`` -> ``Criterion("KA", 3)``."""
    m = _CRITERION_RE.match(text)
    if not m:
        raise ValidationError(
            f"cannot read criterion {text!r}; write e.g. 'KA >= 3' or 'index > 20'"
        )
    return Criterion(m.group(1), float(m.group(3)), op=m.group(2))


def get_profile(profile: str | BlackSpotProfile | Mapping[str, Any]) -> BlackSpotProfile:
    """A profile by name, as given, or built from a mapping (criteria may be strings)."""
    if isinstance(profile, BlackSpotProfile):
        out = profile
    elif isinstance(profile, str):
        if profile not in PROFILES:
            raise ValidationError(
                f"unknown black-spot profile {profile!r}; use one of {sorted(PROFILES)} or pass "
                "a BlackSpotProfile"
            )
        out = PROFILES[profile]
    elif isinstance(profile, Mapping):
        d = dict(profile)
        for key in ("criteria", "section_criteria"):
            if d.get(key) is not None:
                d[key] = tuple(parse_criterion(c) if isinstance(c, str) else c for c in d[key])
        d.setdefault("name", "custom")
        out = BlackSpotProfile(**d)
    else:
        raise ValidationError(f"profile must be a name or a BlackSpotProfile, got {profile!r}")
    _check_profile(out)
    return out


def register_profile(profile: BlackSpotProfile) -> None:
    """Make a user-defined profile available by its name."""
    _check_profile(profile)
    PROFILES[profile.name] = profile


def _check_profile(p: BlackSpotProfile) -> None:
    if not p.criteria:
        raise ValidationError(f"profile {p.name!r} has no criteria")
    if p.combine not in ("any", "all"):
        raise ValidationError(f"profile {p.name!r}: combine must be 'any' or 'all'")
    for c in (*p.criteria, *(p.section_criteria or ())):
        _field_ok(c.field)
        if c.op not in (">=", ">"):
            raise ValidationError(f"criterion {c}: op must be '>=' or '>'")
    for name, v in (("point_radius_m", p.point_radius_m), ("window_m", p.window_m)):
        if not v > 0:
            raise ValidationError(f"profile {p.name!r}: {name} must be positive, got {v}")
    if not 0 < p.step_m <= p.window_m:
        raise ValidationError(f"profile {p.name!r}: step_m must be in (0, window_m]")
    if not p.years > 0:
        raise ValidationError(f"profile {p.name!r}: years must be positive")


def _field_ok(name: str) -> None:
    if name in _BASE_FIELDS or name in ("index", "injury"):
        return
    if name and set(name) <= set(SEVERITIES):
        return
    raise ValidationError(
        f"unknown criterion field {name!r}; use crashes, KABCO letters (e.g. 'KA'), injury, "
        "deaths, serious_injuries, minor_injuries, epdo or index"
    )


def _load_profiles() -> dict[str, BlackSpotProfile]:
    """The named profiles of ``profiles.json`` beside this module, read as :func:`get_profile`
    reads a mapping (so a user's own profile file has the same form)."""
    text = resources.files(__package__).joinpath("profiles.json").read_text(encoding="utf-8")
    table = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    return {name: get_profile({"name": name, **spec}) for name, spec in table.items()}


#: Named black-spot profiles (docs/domain.md), from ``profiles.json``. Korea, India and Portugal
#: are published rules [src]; ``default`` is our recommendation [rec] (3 years, 50 m points,
#: 500 m windows, 100 m steps).
BLACK_SPOT_PROFILES: dict[str, BlackSpotProfile] = _load_profiles()

#: Profiles by name; :func:`register_profile` adds user-defined ones.
PROFILES: dict[str, BlackSpotProfile] = dict(BLACK_SPOT_PROFILES)


def _rule_text(criteria: tuple[Criterion, ...], combine: str) -> str:
    return f" {'or' if combine == 'any' else 'and'} ".join(str(c) for c in criteria)


# -- accident fields ------------------------------------------------------------------------------


def _fields(acc: pd.DataFrame, cfg: RiskSettings) -> tuple[pd.DataFrame, list[str]]:
    """Per-accident numeric fields (crashes, K..O, casualties, EPDO) and fields approximated."""
    sev = acc["severity"].fillna(cfg.unknown_severity).to_numpy(dtype=object)
    f = pd.DataFrame(index=acc.index)
    f["crashes"] = 1.0
    for letter in SEVERITIES:
        f[letter] = (sev == letter).astype(float)
    approx = []
    for col, proxy in _CASUALTY_PROXY.items():
        if col in acc.columns and acc[col].notna().any():
            f[col] = pd.to_numeric(acc[col], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        else:
            f[col] = f[list(proxy)].sum(axis=1)
            approx.append(col)
    f["epdo"] = sum(f[s] * cfg.epdo_weights[s] for s in SEVERITIES)
    return f, approx


def _evaluate(
    sums: pd.DataFrame | dict[str, np.ndarray], p: BlackSpotProfile, criteria: tuple[Criterion, ...]
) -> np.ndarray:
    """Whether each row of field sums meets the criteria."""
    results = []
    for c in criteria:
        v = _field_value(sums, c.field, p)
        results.append(v > c.value if c.op == ">" else v >= c.value - 1e-9)
    stack = np.vstack(results)
    return np.asarray(stack.any(axis=0) if p.combine == "any" else stack.all(axis=0))


def _field_value(sums: Any, name: str, p: BlackSpotProfile) -> np.ndarray:
    if name == "index":
        return np.asarray(
            sum(np.asarray(sums[k], dtype=float) * w for k, w in p.index_weights.items())
        )
    if name == "injury":
        name = "KABC"
    if name in _BASE_FIELDS:
        return np.asarray(sums[name], dtype=float)
    return np.asarray(sum(np.asarray(sums[ch], dtype=float) for ch in name))


def _event_ids(acc: pd.DataFrame) -> np.ndarray:
    """Each accident's ``event_id`` as text (its index where there is none)."""
    if "event_id" in acc.columns:
        return np.asarray(acc["event_id"].astype(str).to_numpy())
    return np.asarray(acc.index.astype(str).to_numpy())


def _rule(
    p: BlackSpotProfile, per: Period, kind: str, criteria: tuple[Criterion, ...], extent: str
) -> str:
    return (
        f"{p.name} {kind}: {_rule_text(criteria, p.combine)} {extent} over {per.years:g} "
        f"year(s) ({per.label()})"
    )


def _sum_columns(sums: pd.DataFrame, p: BlackSpotProfile) -> pd.DataFrame:
    out = pd.DataFrame(index=sums.index)
    out["crashes"] = sums["crashes"].round().astype(np.int64)
    for s in SEVERITIES:
        out[s] = sums[s].round().astype(np.int64)
    out["KA"] = out["K"] + out["A"]
    for col in ("deaths", "serious_injuries", "minor_injuries"):
        out[col] = sums[col]
    out["epdo"] = sums["epdo"]
    out["index"] = _field_value(sums, "index", p)
    return out
