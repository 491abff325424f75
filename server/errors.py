"""Domain errors of the server and the one table that turns errors into HTTP statuses.

:data:`STATUSES` maps the library's error classes (:mod:`trafficunit.errors`, the ledger's
:mod:`trafficunit.ledger.errors`) and a busy database to a status; a :class:`ServerError` a
route raises on purpose carries its own. :func:`error_reply` reads both, and every place that
answers an error uses it: the FastAPI handlers (:func:`install_error_handlers`), the tile fast
path and the RSGI bridge.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trafficunit.errors import InputFileError, TrafficUnitError, ValidationError
from trafficunit.ledger.errors import (
    AuthenticationError,
    ConflictError,
    ImplausibleGeometry,
    NotFoundError,
    PermissionDenied,
    StaleVersion,
)


class ServerError(Exception):
    """Base of the errors a route raises on purpose; ``status`` is its HTTP status."""

    status = 500
    #: Extra response headers (e.g. ``Retry-After``).
    headers: dict[str, str] | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(ServerError):
    """Malformed input (z/x/y, bbox, dates, filters)."""

    status = 400


class NotFound(ServerError):
    """Unknown tileset, unit, or a tile outside the tileset's zoom range."""

    status = 404


class TooLarge(ServerError):
    """A bbox beyond the configured maximum area."""

    status = 413


class NotAcceptable(ServerError):
    """A format the endpoint cannot produce."""

    status = 406


class Unavailable(ServerError):
    """The data the request needs was not built (e.g. no accidents in the data folder)."""

    status = 503


def _busy_errors() -> tuple[type[Exception], ...]:
    out: list[type[Exception]] = [sqlite3.OperationalError]
    try:
        import psycopg
    except ImportError:
        pass
    else:
        out.append(psycopg.OperationalError)
    return tuple(out)


#: The one table: an error class -> its HTTP status, most specific first (the first class an
#: error is an instance of wins). A :class:`ServerError` carries its own status.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (ImplausibleGeometry, 422),
    (NotFoundError, 404),
    (ConflictError, 409),
    (StaleVersion, 412),
    (AuthenticationError, 401),
    (PermissionDenied, 403),
    (InputFileError, 503),  # a data-folder problem, not the client's
    (ValidationError, 400),
    (TrafficUnitError, 500),
    *((busy, 503) for busy in _busy_errors()),
)


def _throttle_error() -> type[Exception] | None:
    """Too many failed token attempts (the ledger service's throttle), imported late: the
    ledger service imports this module."""
    try:
        from .ledger import TooManyAttempts
    except ImportError:  # pragma: no cover - the ledger service moved it
        return None
    return TooManyAttempts


def error_reply(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and extra headers of an error (500 for one not in the table)."""
    if isinstance(exc, ServerError):
        return exc.status, {"detail": exc.detail}, dict(exc.headers or {})
    throttle = _throttle_error()
    if throttle is not None and isinstance(exc, throttle):
        return 429, {"detail": str(exc)}, {"Retry-After": str(getattr(exc, "retry_after", 1))}
    status = next((s for cls, s in STATUSES if isinstance(exc, cls)), None)
    if status is None:
        return 500, {"detail": "internal server error"}, {}
    body: dict[str, Any] = {"detail": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, InputFileError):
        body["detail"] = f"data folder problem: {exc}"
    elif isinstance(exc, StaleVersion):
        body["current_version"] = exc.current_version
    elif status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    elif not isinstance(exc, TrafficUnitError):  # the database is busy
        body["detail"] = f"the ledger database is busy ({exc}); retry shortly"
        headers["Retry-After"] = "1"
    return status, body, headers


def error_response(exc: Exception) -> JSONResponse:
    """:func:`error_reply` as a FastAPI response."""
    status, body, headers = error_reply(exc)
    return JSONResponse(body, status_code=status, headers=headers or None)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain exceptions to status codes; malformed input is a 400, never a 500."""

    async def _mapped(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    app.add_exception_handler(ServerError, _mapped)
    for cls, _ in STATUSES:
        app.add_exception_handler(cls, _mapped)
    throttle = _throttle_error()
    if throttle is not None:
        app.add_exception_handler(throttle, _mapped)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
