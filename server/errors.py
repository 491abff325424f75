"""Domain errors of the server and the one place they become HTTP status codes."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from trafficunit._errors import InputFileError, TrafficUnitError, ValidationError


class ServerError(Exception):
    """Base of the errors a route raises on purpose; ``status`` is its HTTP status."""

    status = 500

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


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Map domain exceptions to status codes; malformed input is a 400, never a 500."""

    @app.exception_handler(ServerError)
    async def _server_error(request: Request, exc: ServerError) -> JSONResponse:
        return _json(exc.status, exc.detail)

    @app.exception_handler(ValidationError)
    async def _validation(request: Request, exc: ValidationError) -> JSONResponse:
        return _json(400, str(exc))

    @app.exception_handler(InputFileError)
    async def _input_file(request: Request, exc: InputFileError) -> JSONResponse:
        return _json(503, f"data folder problem: {exc}")

    @app.exception_handler(TrafficUnitError)
    async def _tu_error(request: Request, exc: TrafficUnitError) -> JSONResponse:
        return _json(500, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _request_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return _json(400, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
