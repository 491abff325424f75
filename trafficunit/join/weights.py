"""EPDO weights by KABCO letter (:func:`epdo_weights`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._errors import ValidationError
from .index import _SEVERITIES


def _weights_file() -> dict[str, Any]:
    from ..settings import epdo_weights_file

    return epdo_weights_file()


def epdo_weights(version: str | Mapping[str, float] | None = None) -> dict[str, float]:
    """EPDO weights by KABCO letter.

    Parameters
    ----------
    version
        A version name from ``trafficunit/epdo_weights.json`` (``"hsm-2010"``: K 542, A 29,
        B 11, C 6, O 1, the default; ``"fatal-injury-pdo"``: 542 / 11 / 1), or your own
        mapping (missing letters weigh 0).

    Examples
    --------
    >>> epdo_weights()["K"], epdo_weights("fatal-injury-pdo")["A"]
    (542.0, 11.0)
    """
    if isinstance(version, Mapping):
        bad = set(version) - set(_SEVERITIES)
        if bad:
            raise ValidationError(f"EPDO weights for unknown severities {sorted(bad)}")
        return {k: float(version.get(k, 0.0)) for k in _SEVERITIES}
    data = _weights_file()
    name = version or data["default"]
    if name not in data["versions"]:
        raise ValidationError(
            f"unknown EPDO weights version {name!r}; known: {', '.join(data['versions'])}"
        )
    w = data["versions"][name]["weights"]
    return {k: float(w.get(k, 0.0)) for k in _SEVERITIES}
