"""Who is calling: bearer tokens, the bootstrap admin token, throttling of bad tokens, the role
dependencies of the routes and what non-staff readers see of actors.

Routes take the caller as a dependency: :data:`ReaderDep` (reads: open unless the settings ask
for a token), :data:`PrincipalDep` (any valid token) or one of the role dependencies of
:mod:`.http` (``Depends(needs(action))``: 403 unless the token's role may do ``action``).
"""

from __future__ import annotations

import collections
import math
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from trafficunit.ledger import AuthenticationError, Principal
from trafficunit.ledger.lifecycle import require

from ..settings import Settings
from ..store import DataStore

if TYPE_CHECKING:
    from .service import LedgerService

__all__ = [
    "STAFF_ROLES",
    "AuthThrottle",
    "PrincipalDep",
    "ReaderDep",
    "TooManyAttempts",
    "client_address",
    "needs",
    "optional_principal",
    "principal",
    "public_actor",
    "public_events",
    "public_reports",
    "read_access",
    "sees_actors",
    "service_of",
    "store_of",
]


class TooManyAttempts(Exception):
    """Too many failed token attempts from one client address: 429 with ``Retry-After``."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthThrottle:
    """Failed token attempts per client address in a sliding window (per server process).

    After ``limit`` failures within ``window_s`` seconds, every request from that address that
    carries a token gets 429 until the oldest failure leaves the window; requests without a
    token (anonymous reads) are not affected. With several workers each counts its own, so an
    address gets at most ``workers x limit`` tries per window.
    """

    MAX_ADDRESSES = 100_000

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._fails: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, addr: str, now: float) -> collections.deque[float] | None:
        q = self._fails.get(addr)
        if q is None:
            return None
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            del self._fails[addr]
            return None
        return q

    def check(self, addr: str) -> None:
        """Raise :class:`TooManyAttempts` while ``addr`` is over the limit."""
        now = time.monotonic()
        with self._lock:
            q = self._recent(addr, now)
            if q is None or len(q) < self.limit:
                return
            wait = max(1, math.ceil(self.window_s - (now - q[0])))
        raise TooManyAttempts(
            f"{self.limit} failed token attempts from this address in {self.window_s:g} s; "
            f"retry in {wait} s",
            wait,
        )

    def fail(self, addr: str) -> None:
        """Count a failed attempt from ``addr``."""
        now = time.monotonic()
        with self._lock:
            if addr not in self._fails and len(self._fails) >= self.MAX_ADDRESSES:
                for key in list(self._fails)[: self.MAX_ADDRESSES // 10]:
                    del self._fails[key]  # the oldest entries (insertion order)
            q = self._recent(addr, now)
            if q is None:
                q = self._fails[addr] = collections.deque()
            q.append(now)


def store_of(request: Request) -> DataStore:
    """The app's data store (checked, so hooks ran)."""
    store: DataStore = request.app.state.store
    store.check()
    return store


def service_of(request: Request) -> LedgerService:
    """The app's ledger service."""
    svc: LedgerService = request.app.state.ledger
    return svc


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if not auth:
        return None
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def client_address(request: Request) -> str:
    """The caller's address (the proxy's ``X-Forwarded-For`` with ``--proxy-headers``)."""
    return request.client.host if request.client is not None else "unknown"


def optional_principal(request: Request) -> Principal | None:
    """The caller's principal, or None without a token; 401 for a bad token, 429 after too
    many bad tokens from the caller's address (:class:`AuthThrottle`)."""
    if not request.headers.get("authorization"):
        return None
    svc = service_of(request)
    addr = client_address(request)
    svc.throttle.check(addr)
    try:
        token = _bearer(request)
        assert token is not None
        return svc.principal(token)
    except AuthenticationError:
        svc.throttle.fail(addr)
        raise


def principal(request: Request) -> Principal:
    """The caller's principal; 401 without a valid token."""
    p = optional_principal(request)
    if p is None:
        raise AuthenticationError(
            "this needs a token: send 'Authorization: Bearer <token>' (create one with "
            "`trafficunit tokens create --role ROLE`)"
        )
    return p


def read_access(request: Request) -> Principal | None:
    """Reads are open unless ``TRAFFICUNIT_LEDGER_READ_REQUIRES_TOKEN`` is set."""
    if service_of(request).settings.ledger.read_requires_token:
        return principal(request)
    return optional_principal(request)


def needs(action: str) -> Callable[[Request], Principal]:
    """A dependency: the caller's principal, 403 unless its role may do ``action``."""

    def dep(request: Request) -> Principal:
        p = principal(request)
        require(p.role, action)
        return p

    dep.__name__ = f"needs_{action}"
    return dep


#: Roles that see who did what (token labels and ids) in histories and reports.
STAFF_ROLES = frozenset({"engineer", "supervisor", "admin"})
#: Actors that are not people: shown to everyone.
_MACHINE_ACTORS = frozenset({"system", "import"})
_TOKEN_IN_ACTOR = re.compile(r"(?:^|\()(T[0-9a-f]{8}|env-admin)\)?$")


def sees_actors(reader: Principal | None) -> bool:
    """Whether ``reader`` may see token labels and ids of actors."""
    return reader is not None and reader.role in STAFF_ROLES


def public_actor(actor: str | None, settings: Settings) -> str | None:
    """What a non-staff reader sees of ``actor`` (``TRAFFICUNIT_LEDGER_PUBLIC_ACTORS``):
    never a token id or label; the admin's display name in ``names`` mode; machine actors
    (``system``, ``import``) as they are."""
    if actor is None or actor in _MACHINE_ACTORS:
        return actor
    ls = settings.ledger
    if ls.public_actors == "names":
        m = _TOKEN_IN_ACTOR.search(actor)
        return ls.public_names.get(m.group(1)) if m else None
    return None


def public_events(events: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """History events for a non-staff reader: ``actor`` per :func:`public_actor`; ``role``
    kept unless ``public_actors`` is ``none``."""
    keep_role = settings.ledger.public_actors != "none"
    return [
        {
            **e,
            "actor": public_actor(e.get("actor"), settings),
            "role": e.get("role") if keep_role or e.get("actor") in _MACHINE_ACTORS else None,
        }
        for e in events
    ]


def public_reports(reports: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """Reports for a non-staff reader: ``reported_by`` per :func:`public_actor`."""
    return [{**r, "reported_by": public_actor(r.get("reported_by"), settings)} for r in reports]


ReaderDep = Annotated[Principal | None, Depends(read_access)]
PrincipalDep = Annotated[Principal, Depends(principal)]
