"""Bounds on what a request may carry before any route parses it: path, query and the headers
the routes read. Every value is parsed with a limit; beyond it the answer is a short 4xx that
says which limit, never an echo of the input."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Longest URL path, characters (414 beyond).
MAX_PATH = 2048
#: Longest path segment: ids, tile addresses, site codes (414 beyond).
MAX_SEGMENT = 256
#: Longest query string (414 beyond).
MAX_QUERY = 8192
#: Longest value of the headers routes parse (400 beyond).
MAX_HEADER = {
    b"authorization": 1024,
    b"if-match": 1024,
    b"if-none-match": 1024,
    b"accept-encoding": 512,
    b"origin": 1024,
}


class InputBounds:
    """ASGI middleware: 414 for an over-long path, segment or query; 400 for an over-long
    header the routes read (``Authorization``, ``If-Match``, ``If-None-Match``...)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = check(scope)
            if problem is not None:
                await _reject(send, *problem)
                return
        await self.app(scope, receive, send)


def check(scope: Scope) -> tuple[int, str] | None:
    """``(status, reason)`` when the request breaks a bound, else None."""
    path: str = scope["path"]
    if len(path) > MAX_PATH:
        return 414, f"the URL path has {len(path)} characters, more than {MAX_PATH}"
    longest = max((len(p) for p in path.split("/")), default=0)
    if longest > MAX_SEGMENT:
        return 414, (
            f"a URL path segment has {longest} characters, more than {MAX_SEGMENT} (ids and "
            "codes are short)"
        )
    query = scope.get("query_string", b"")
    if len(query) > MAX_QUERY:
        return 414, f"the query string has {len(query)} characters, more than {MAX_QUERY}"
    for key, value in scope["headers"]:
        limit = MAX_HEADER.get(key)
        if limit is not None and len(value) > limit:
            name = key.decode("latin-1").title()
            return 400, f"the {name} header has {len(value)} characters, more than {limit}"
    return None


async def _reject(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    """Answer ``status`` with a JSON ``detail`` (``close``: and end the connection)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
