"""HTTP adaptation of the ledger: one place for what every ledger router repeats.

Routers of ledger records (hazards, work zones, investigations, tokens, permits, site files,
road chiefs, public reports) take from here:

* **role checks**: the dependencies :data:`ReportDep`, :data:`WorkZoneDep`, :data:`AssignDep`,
  :data:`EscalateDep`, :data:`TokensDep` (403 unless the token's role may do the action), or
  ``Annotated[Principal, Depends(needs(action))]`` for any other action;
* **versions**: :data:`IfMatch` (the ``If-Match`` header parameter) and
  :func:`if_match_version`, which reads it (428
  :class:`PreconditionRequired` when absent, 400 when it is no ETag of this API, ``-1`` for
  another record's ETag so the write is refused as stale, None for ``*``; ``strict=False``
  keeps the permits' and site files' older rules: any digits, no length bound);
  :func:`not_modified` answers ``If-None-Match``; :class:`EtagRule` says how one record
  type's ETag reads;
* **writes**: :func:`acting` (the ``actor``/``role`` keywords of a library call);
  :func:`versioned` (a dependency: the caller and the ``If-Match`` header of a versioned
  write, whose :meth:`VersionedWrite.keywords` add ``expected_version``);
* **responses**: :func:`geojson` (one record, with ``ETag`` and ``Location``),
  :func:`feature_collection` (a page, with ``numberMatched`` and ``X-Total-Count``),
  :func:`public_base` and :func:`links` (a record's ``links``: self, page, QR code...),
  :func:`responses` (documented error statuses), :func:`file_responses` (a route answering a
  file: its content type);
* **limits**: :class:`BodyLimit` (413 for oversized bodies); the ledger's refusals become
  statuses through the one error table, :data:`trafficunit_server.errors.STATUSES`.

A router for a new record type needs only its models and its calls into the library::

    @router.post("/things/{thing_id}/transitions", responses=responses(403, 409, 412, 428))
    def transition(thing_id: str, body: In, svc: ServiceDep, who: PrincipalDep,
                   if_match: IfMatch = None) -> JSONResponse:
        expected = if_match_version(if_match, what="thing", example="T12-v3",
                                    tag=r"T\\d{1,18}", own=lambda: f"T{int(thing_id)}")
        thing = store.transition(thing_id, body.to, **acting(who), expected_version=expected)
        return geojson(thing.to_feature(), etag=thing.etag, location=f"/things/{thing.id}")
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse, Response

from trafficunit.errors import clip
from trafficunit.ledger import (
    Principal,
)

from ..bounds import _reject as reject
from ..errors import BadRequest, ServerError
from .auth import needs, principal

__all__ = [
    "GEOJSON",
    "MAX_IF_MATCH",
    "AssignDep",
    "BodyLimit",
    "EscalateDep",
    "EtagRule",
    "IfMatch",
    "IfNoneMatch",
    "PreconditionRequired",
    "ReportDep",
    "TokensDep",
    "VersionedWrite",
    "WorkZoneDep",
    "acting",
    "feature_collection",
    "file_responses",
    "geojson",
    "if_match_version",
    "links",
    "not_modified",
    "public_base",
    "responses",
    "versioned",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

GEOJSON = "application/geo+json"
#: Longest If-Match header read (a list of a few ETags); longer is a 400.
MAX_IF_MATCH = 256

#: The caller, when its role may report hazards.
ReportDep = Annotated[Principal, Depends(needs("report"))]
#: The caller, when its role may register and change work zones.
WorkZoneDep = Annotated[Principal, Depends(needs("workzone"))]
#: The caller, when its role may appoint road chiefs and set routing rules (engineers and above).
AssignDep = Annotated[Principal, Depends(needs("assign"))]
#: The caller, when its role may escalate and run the sweeps (supervisors).
EscalateDep = Annotated[Principal, Depends(needs("escalate"))]
#: The caller, when its role may manage tokens (admins).
TokensDep = Annotated[Principal, Depends(needs("tokens"))]
#: The ``If-Match`` header of a write (read by :func:`if_match_version`).
IfMatch = Annotated[str | None, Header()]
#: The ``If-None-Match`` header of a read (read by :func:`not_modified`).
IfNoneMatch = Annotated[str | None, Header()]


class PreconditionRequired(ServerError):
    """A write without If-Match."""

    status = 428


#: What each error status of a ledger route means, for the OpenAPI document.
_STATUS_TEXT: dict[int, str] = {
    400: "Invalid field",
    401: "No or bad token",
    403: "The token's role may not do this",
    404: "No such record",
    409: "Not allowed in the current state",
    412: "If-Match names a stale version; nothing was changed",
    413: "Body too large",
    422: "Implausible geometry",
    428: "If-Match missing",
    429: "Too many failed tokens from this address (see Retry-After)",
}


def responses(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: ``codes`` with the usual texts, ``described`` (``_404=``
    ...) with their own.

    >>> responses(401, _404="No such hazard")[404]
    {'description': 'No such hazard'}
    """
    out: dict[int | str, dict[str, Any]] = {c: {"description": _STATUS_TEXT[c]} for c in codes}
    for key, text in described.items():
        out[int(key.lstrip("_"))] = {"description": text}
    return dict(sorted(out.items(), key=lambda kv: str(kv[0])))


def file_responses(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route answering a file of ``media_type`` (PDF, PNG...).

    >>> file_responses("image/png", "QR code")
    {200: {'content': {'image/png': {}}, 'description': 'QR code'}}
    """
    return {200: {"content": {media_type: {}}, "description": description}}


def geojson(
    body: dict[str, Any],
    *,
    status: int = 200,
    etag: str | None = None,
    location: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A GeoJSON answer, with the record's ``ETag`` and ``Location`` when given."""
    out = dict(headers or {})
    if etag is not None:
        out["ETag"] = etag
    if location is not None:
        out["Location"] = location
    return JSONResponse(body, status_code=status, headers=out or None, media_type=GEOJSON)


def feature_collection(
    features: list[dict[str, Any]], total: int, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A page of features: ``numberMatched`` (before paging) also as ``X-Total-Count``."""
    return geojson(
        {
            "type": "FeatureCollection",
            "numberMatched": total,
            "numberReturned": len(features),
            "features": features,
        },
        headers={"X-Total-Count": str(total), **(headers or {})},
    )


def not_modified(if_none_match: str | None, etag: str) -> Response | None:
    """304 when ``If-None-Match`` names ``etag``; else None."""
    if if_none_match is not None and etag in [v.strip() for v in if_none_match.split(",")]:
        return Response(status_code=304, headers={"ETag": etag})
    return None


def if_match_version(
    if_match: str | None,
    *,
    what: str,
    example: str,
    tag: str,
    own: Callable[[], str],
    needs_text: str | None = None,
    strict: bool = True,
    same_case: bool = False,
) -> int | None:
    """The version an ``If-Match`` header names (None for ``*``).

    Parameters
    ----------
    if_match
        The header (None when absent: 428).
    what, example
        The record's name and an example ETag, for the messages.
    tag
        Regular expression of a record's ETag prefix (``H\\d{1,18}`` for ``"H12-v3"``).
    own
        The prefix of this record's ETag (called only when the header names one); an ETag
        of another record answers ``-1``, which never matches a stored version.
    needs_text
        The 428 message (default: "changes need an If-Match header with the <what>'s ETag").
    strict
        Refuse headers longer than :data:`MAX_IF_MATCH` and clip the header in messages.
    same_case
        Compare the ETag's prefix with ``own()`` letter case and all (site codes); by default
        the case is ignored (``h12-v3`` names hazard H12).
    """
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            needs_text or f"changes need an If-Match header with the {what}'s ETag"
        )
    if strict and len(if_match) > MAX_IF_MATCH:
        raise BadRequest(
            f"If-Match of {len(if_match)} characters is longer than {MAX_IF_MATCH}; send the "
            f'ETag of the {what} (like "{example}")'
        )
    value = if_match.split(",")[0].strip()
    if value == "*":
        return None
    version = r"\d{1,18}" if strict else r"\d+"
    m = re.match(rf'^(?:W/)?"?(?:({tag})-v)?({version})"?$', value)
    if m is None:
        shown = clip(if_match) if strict else repr(if_match)
        raise BadRequest(
            f'If-Match {shown} is not an ETag of this API (like "{example}"'
            + (", a version of at most 18 digits)" if strict else ")")
        )
    named = m.group(1)
    if named is not None and (named != own() if same_case else named.upper() != own().upper()):
        return -1  # another record's ETag never matches
    return int(m.group(2))


class Acting(TypedDict):
    """The ``actor`` and ``role`` keywords every library write takes."""

    actor: str
    role: str


def acting(who: Principal) -> Acting:
    """The ``actor=`` and ``role=`` keywords of a library write, from the caller."""
    return {"actor": who.name, "role": who.role}


@dataclass(frozen=True)
class EtagRule:
    """How one record type's ETag reads in ``If-Match`` (see :func:`if_match_version`).

    Attributes
    ----------
    what, example, tag, strict, same_case
        As :func:`if_match_version` takes them.
    own
        The prefix of a record's ETag from its id in the path.
    needs_text
        The 428 message from the record's id (None for the default).
    """

    what: str
    example: str
    tag: str
    own: Callable[[str], str]
    needs_text: Callable[[str], str] | None = None
    strict: bool = True
    same_case: bool = False

    @classmethod
    def numbered(
        cls,
        letter: str,
        what: str,
        parse: Callable[[str], int],
        *,
        strict: bool = True,
        needs_text: Callable[[str], str] | None = None,
    ) -> EtagRule:
        """The rule of records numbered after a letter (``"H12-v3"``); ``strict=False`` takes
        any number of digits, as the permits' older rule does."""
        return cls(
            what,
            f"{letter}12-v3",
            rf"{letter}\d{{1,18}}" if strict else rf"{letter}\d+",
            own=lambda record_id: f"{letter}{parse(record_id)}",
            needs_text=needs_text,
            strict=strict,
        )

    def version(self, if_match: str | None, record_id: str) -> int | None:
        """The version ``if_match`` names for the record ``record_id`` (None for ``*``)."""
        return if_match_version(
            if_match,
            what=self.what,
            example=self.example,
            tag=self.tag,
            own=lambda: self.own(record_id),
            needs_text=None if self.needs_text is None else self.needs_text(record_id),
            strict=self.strict,
            same_case=self.same_case,
        )


class Write(TypedDict):
    """The keywords of a versioned library write: who, and the version it expects."""

    actor: str
    role: str
    expected_version: int | None


@dataclass(frozen=True)
class VersionedWrite:
    """The caller of a versioned write and its ``If-Match`` header, read by :meth:`keywords`
    (in the route, so a bad body still answers 422 before a missing If-Match answers 428)."""

    who: Principal
    rule: EtagRule
    record_id: str
    if_match: str | None

    def keywords(self) -> Write:
        """``actor``, ``role`` and ``expected_version`` of the library call (428 without
        If-Match, 400 when it is no ETag of this API)."""
        expected = self.rule.version(self.if_match, self.record_id)
        return {**acting(self.who), "expected_version": expected}


def versioned(
    rule: EtagRule, *, param: str, action: str | None = None
) -> Callable[..., VersionedWrite]:
    """A dependency: the caller of a versioned write of the record named by the path parameter
    ``param`` (401 without a token; 403 unless its role may do ``action``, when given) and the
    ``If-Match`` header that ``rule`` reads."""
    who_of = principal if action is None else needs(action)

    def dep(request: Request, if_match: IfMatch = None) -> VersionedWrite:
        return VersionedWrite(who_of(request), rule, request.path_params[param], if_match)

    dep.__name__ = f"versioned_{param}"
    return dep


def public_base(request: Request, svc: Any) -> str:
    """The base URL of links: ``TRAFFICUNIT_LEDGER_PUBLIC_URL``, else the request's."""
    return (svc.settings.ledger.public_url or str(request.base_url)).rstrip("/")


def links(base: str, path: str, names: Iterable[str]) -> dict[str, str]:
    """``{"self": base/path, name: base/path/name...}`` for a record's GeoJSON ``links``."""
    return {"self": f"{base}{path}", **{n.split(".")[0]: f"{base}{path}/{n}" for n in names}}


class BodyLimit:
    """ASGI middleware: a request body larger than ``max_bytes`` gets 413, unread beyond that."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        max_bytes: int,
        paths: dict[str, int] | None = None,
    ):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths or {}  # path -> its own limit (bulk ingest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.paths.get(scope["path"])
        if limit is not None and limit != self.max_bytes:
            await BodyLimit(self.app, limit)(scope, receive, send)
            return
        declared = None
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await _reject(send, 400, "Content-Length is not a number")
                    return
        if declared is not None and declared > self.max_bytes:
            await _reject(send, 413, self._message(declared))
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _reject(send, 413, self._message(size))
                return
            chunks.append(body)
            more = bool(msg.get("more_body", False))
        replay = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return replay
            return await receive()

        await self.app(scope, replay_receive, send)

    def _message(self, size: int) -> str:
        return (
            f"request body of {size} bytes or more exceeds the limit of {self.max_bytes} bytes "
            "(TRAFFICUNIT_LEDGER_MAX_BODY_BYTES)"
        )


async def _reject(send: Send, status: int, detail: str) -> None:
    await reject(send, status, detail, close=True)
