"""Errors of the hazard ledger: each says what was refused and what to do instead.

They extend the library's hierarchy (:mod:`trafficunit._errors`); the server maps each class to
one HTTP status in one place.
"""

from __future__ import annotations

from .._errors import TrafficUnitError, ValidationError

__all__ = [
    "AuthenticationError",
    "ConflictError",
    "IllegalTransition",
    "ImplausibleGeometry",
    "LedgerError",
    "NotFoundError",
    "PermissionDenied",
    "StaleVersion",
    "ValidationError",
]


class LedgerError(TrafficUnitError):
    """Base class of the ledger's refusals."""


class NotFoundError(LedgerError):
    """No hazard, work zone or token with that id."""


class ConflictError(LedgerError):
    """The request conflicts with what is stored (e.g. a site code that exists already)."""


class IllegalTransition(ConflictError):
    """The lifecycle does not allow this transition from the hazard's current state."""


class StaleVersion(LedgerError):
    """The caller's version (``If-Match``) is not the stored one; nothing was changed."""

    def __init__(self, message: str, *, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class AuthenticationError(LedgerError):
    """No token, or a token that is unknown or revoked."""


class PermissionDenied(LedgerError):
    """The token's role may not do this."""


class ImplausibleGeometry(ValidationError, LedgerError):
    """A well-formed geometry that cannot be a report of this kind: larger or longer than the
    limits for its kind, or far outside the units' area (with a hint when the coordinates look
    swapped). The server answers 422."""
