"""The one small error hierarchy of trafficunit (implementation; import it from
:mod:`trafficunit.errors`).

Every error a user can cause carries a message that says what was wrong, where (file, row,
column) and what to do about it. Dependencies' exceptions are caught at the boundary and
re-raised as one of these, with the original chained for debugging.
"""

from __future__ import annotations


class TrafficUnitError(Exception):
    """Base class of every error trafficunit raises on purpose."""


class ValidationError(TrafficUnitError, ValueError):
    """Input data (file, table, geometry, parameter) is not what the function needs."""


class CRSError(ValidationError):
    """A coordinate reference system is missing, unknown or unsuitable."""


class InputFileError(ValidationError):
    """A file is missing, empty, corrupt or of a format trafficunit cannot read."""


class TrafficUnitWarning(UserWarning):
    """A recoverable oddity in the input (counted in the relevant report)."""


def clip(value: object, limit: int = 40) -> str:
    """``repr`` of ``value`` cut to ``limit`` characters for an error message, so a huge input
    is never echoed back in full: ``'xxxxxxxx…' (5000 characters)``."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
