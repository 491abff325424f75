"""The server under Granian's RSGI interface: tiles straight from Rust's HTTP layer.

``trafficunit serve`` runs :func:`rsgi_from_env` under `Granian <https://github.com/emmett-
framework/granian>`_. Stored and live tiles are answered by the same :class:`TileResponder` as
the ASGI fast path, with one ``response_bytes`` call and no ASGI message dicts; every other
request goes to the FastAPI app through a small RSGI-to-ASGI bridge (streamed request and
response bodies, lifespan run by Granian's own :class:`~granian.asgi.LifespanProtocol`).

The plain ASGI app stays available: ``uvicorn trafficunit_server.app:app_from_env --factory``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import Any

from fastapi import FastAPI

from .app import create_app
from .fastpath import Message, Scope, TileResponder, error_answer
from .settings import Settings

log = logging.getLogger(__name__)

_ASGI = {"version": "3.0", "spec_version": "2.3"}


def _addr(text: str | None) -> tuple[str, int] | None:
    """``"host:port"`` (IPv6 hosts in brackets or bare) as an ASGI address pair."""
    if not text:
        return None
    host, _, port = text.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


class RSGIApp:
    """RSGI application: tile fast path plus an ASGI bridge to ``app``.

    Parameters
    ----------
    app
        The FastAPI application (its lifespan opens the data store).
    asgi
        What non-tile requests go to (default ``app``; e.g. ``app`` behind a proxy-headers
        middleware).
    """

    def __init__(self, app: FastAPI, asgi: Any = None) -> None:
        self.app = app
        self.asgi = asgi if asgi is not None else app
        self.tiles = TileResponder()
        self._lifespan: Any = None

    # -- lifecycle, called by Granian in each worker before and after serving --------------
    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from granian.asgi import LifespanProtocol

        self._lifespan = LifespanProtocol(self.app)
        loop.run_until_complete(self._lifespan.startup())
        if self._lifespan.interrupt:
            raise RuntimeError("the application failed to start") from self._lifespan.exc
        _stop_streams_on_signals(loop, self.app)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._lifespan is not None:
            loop.run_until_complete(self._lifespan.shutdown())

    # -- requests ---------------------------------------------------------------------------
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto == "http":
            path: str = scope.path
            method: str = scope.method
            target = self.tiles.route(self.app.state, method, path, scope.query_string)
            if target is not None:
                get = scope.headers.get
                ae, inm, origin = get("accept-encoding"), get("if-none-match"), get("origin")
                head = method == "HEAD"
                if isinstance(target, str):
                    answer = self.tiles.live(target, path, scope.query_string, ae, inm, head)
                    status, headers, body = answer.status, answer.headers, answer.body
                else:
                    status, headers, _, body = self.tiles.stored(target, path, ae, inm, head)
                allow = self.tiles.cors(origin)
                if allow is not None:
                    headers = [*headers, ("access-control-allow-origin", allow)]
                if body:
                    proto.response_bytes(status, headers, body)
                else:
                    proto.response_empty(status, headers)
                return
            await self._bridge(scope, proto)

    async def _bridge(self, rscope: Any, proto: Any) -> None:
        """Run the ASGI app for one RSGI HTTP request."""
        path: str = rscope.path
        scope: Scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": rscope.http_version,
            "method": rscope.method,
            "scheme": rscope.scheme,
            "path": path,
            "raw_path": path.encode("utf-8"),
            "query_string": rscope.query_string.encode("latin-1"),
            "root_path": "",
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in rscope.headers.items()
            ],
            "client": _addr(rscope.client),
            "server": _addr(rscope.server),
            "state": dict(self._lifespan.state) if self._lifespan is not None else {},
        }
        chunks = proto.__aiter__()
        request_done = False

        async def receive() -> Message:
            nonlocal request_done
            if request_done:
                await proto.client_disconnect()
                return {"type": "http.disconnect"}
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                request_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": bytes(chunk), "more_body": True}

        status = 500
        headers: list[tuple[str, str]] = []
        started = False
        stream: Any = None

        async def send(message: Message) -> None:
            nonlocal status, headers, started, stream
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                headers = [
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                ]
                started = True
            elif kind == "http.response.body":
                body: bytes = message.get("body", b"")
                more: bool = message.get("more_body", False)
                if stream is None and not more:
                    if body:
                        proto.response_bytes(status, headers, body)
                    else:
                        proto.response_empty(status, headers)
                    return
                if stream is None:
                    stream = proto.response_stream(status, headers)
                if body:
                    await stream.send_bytes(body)

        try:
            await self.asgi(scope, receive, send)
        except Exception as exc:
            if started:
                log.exception("unhandled error in %s %s", rscope.method, path)
            else:  # through the one error table (a 500 is logged with its traceback)
                answer = error_answer(exc)
                proto.response_bytes(answer.status, answer.headers, answer.body)


def _stop_streams_on_signals(loop: asyncio.AbstractEventLoop, app: FastAPI) -> None:
    """Let SIGTERM/SIGINT also end the endless responses (``/alerts/stream``).

    Granian stops a worker gracefully: it waits for open requests to finish, up to its kill
    timeout (30 s), and an event stream never does, so one open map tab held every stop for
    30 s. The worker's loop keeps its own handling of both signals (Granian's shutdown, woken
    through the signal wakeup fd); this chains setting ``app.state.stopping`` before the
    Python-level handler, and the streams end on it (a browser reconnects elsewhere with
    ``Last-Event-ID`` and loses nothing).
    """
    stopping: asyncio.Event = app.state.stopping
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        if not callable(before):  # not the loop's handling: leave the signal's own action
            continue

        def chained(signum: int, frame: Any, before: Any = before) -> None:
            loop.call_soon_threadsafe(stopping.set)
            before(signum, frame)

        signal.signal(sig, chained)


def rsgi_from_env(*, proxy_headers: bool = False) -> RSGIApp:
    """Factory for ``granian --interface rsgi --factory trafficunit_server.rsgi:rsgi_from_env``.

    Settings come from ``TRAFFICUNIT_*`` environment variables; ``proxy_headers`` trusts
    ``X-Forwarded-*`` from any client (behind a reverse proxy).
    """
    from .supervision import bind_to_parent

    bind_to_parent()  # a worker of `trafficunit serve` dies with the main process
    _one_stop_signal()
    app = create_app(Settings())
    asgi: Any = app
    if proxy_headers:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        asgi = ProxyHeadersMiddleware(asgi, trusted_hosts="*")
    return RSGIApp(app, asgi)


def rsgi_behind_proxy() -> RSGIApp:
    """:func:`rsgi_from_env` trusting ``X-Forwarded-*`` (``trafficunit serve --proxy-headers``)."""
    return rsgi_from_env(proxy_headers=True)


def _one_stop_signal() -> None:
    """In a Granian worker: only the first SIGINT/SIGTERM starts Granian's shutdown.

    A Ctrl-C in a terminal sends SIGINT to the whole process group (systemd's stop sends
    SIGTERM to every process of the service), so each worker gets it, and then the main
    process's SIGTERM. Granian 2.8's worker set its shutdown signal a second time while the
    shutdown ran and blocked for good there, until the main process killed it after its
    30 s timeout. Granian's own handling is kept: its worker signals are made as before and
    each is set once. Called in the worker before Granian installs them (the app factory).
    """
    try:
        import granian._signals as gs

        make = gs.set_loop_signals
    except (ImportError, AttributeError):  # another Granian: its own handling as it is
        return
    if getattr(make, "_trafficunit_once", False):
        return

    def set_loop_signals(loop: Any) -> Any:
        event = make(loop)
        fired = threading.Event()

        def once(signum: int, frame: Any) -> None:
            if not fired.is_set():
                fired.set()
                event.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, once, sig, None)
            except NotImplementedError:  # no loop signals here: Granian used signal.signal
                signal.signal(sig, once)
        return event

    set_loop_signals._trafficunit_once = True  # type: ignore[attr-defined]
    gs.set_loop_signals = set_loop_signals
