"""The web map's message catalogue (``server/static/i18n/{en,zh-CN}.json``), from Python.

The page loads the same files (``/static/i18n/<lang>.json``); the legend's plain sentences are
made here from the same messages so the page, the legend and any report speak alike.
A message is a string with ``{name}`` fields, or ``{"one": ..., "other": ...}`` chosen by the
field ``n`` (Chinese has only ``other``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

#: Languages of the catalogue, the first is the fallback.
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")


@cache
def catalogue(lang: str) -> dict[str, Any]:
    """The messages of ``lang`` (one of :data:`LANGUAGES`)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    path = files("trafficunit_server") / "static" / "i18n" / f"{lang}.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def t(lang: str, key: str, **params: Any) -> str:
    """The message ``key`` in ``lang`` with ``params`` filled in (KeyError if it is missing)."""
    msg = catalogue(lang)[key]
    if isinstance(msg, dict):
        n = params.get("n")
        msg = msg["one"] if n == 1 and "one" in msg else msg["other"]
    out = str(msg)
    for name, value in params.items():
        out = out.replace("{" + name + "}", str(value))
    return out


def negotiate(accept_language: str | None) -> str:
    """The catalogue language an ``Accept-Language`` header prefers (``zh*`` -> ``zh-CN``)."""
    best, best_q = LANGUAGES[0], -1.0
    for part in (accept_language or "").split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        low = tag.lower()
        lang = "zh-CN" if low.startswith("zh") else "en" if low.startswith("en") else None
        if lang is not None and weight > best_q:
            best, best_q = lang, weight
    return best
