"""The errors trafficunit raises on purpose, public for callers and the server.

Every error a user can cause is a :class:`TrafficUnitError` whose message says what was wrong,
where (file, row, column) and what to do about it. The hazard ledger's refusals extend this
hierarchy in :mod:`trafficunit.ledger.errors`. :func:`clip` cuts an input echoed in a message,
so a huge value never comes back in full.

>>> from trafficunit.errors import ValidationError, clip
>>> issubclass(ValidationError, ValueError)
True
>>> clip("x" * 100, 5)
"'xxxxx'… (100 characters)"
"""

from __future__ import annotations

from ._errors import (
    CRSError,
    InputFileError,
    TrafficUnitError,
    TrafficUnitWarning,
    ValidationError,
    clip,
)

__all__ = [
    "CRSError",
    "InputFileError",
    "TrafficUnitError",
    "TrafficUnitWarning",
    "ValidationError",
    "clip",
]
