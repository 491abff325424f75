"""Road names: do an event's and a unit's names name the same street (:func:`names_match`)."""

from __future__ import annotations

import difflib
import re
import unicodedata
from functools import lru_cache

import numpy as np
import pandas as pd


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Street-type words ignored when names are compared (English; Finnish ones are suffixes).
_TYPE_WORDS = frozenset(
    _words(
        """street st str avenue ave av road rd boulevard blvd bvd drive dr lane ln court ct
        place pl parkway pkwy pky highway hwy way wy terrace ter terr circle cir square sq
        expressway expy freeway fwy trail trl crescent cres close cl grove gr gardens gdns
        row walk alley aly plaza plz loop lp bridge br"""
    )
)
_DIRECTIONS = frozenset(
    _words(
        """n s e w ne nw se sw north south east west northeast northwest southeast southwest
        nb sb eb wb"""
    )
)
_SPLIT_RE = re.compile(r"\s+(?:x|at|and|@|&|/|×)\s+|[;&/@×|,]|\s+-\s+", re.IGNORECASE)
_PAREN_RE = re.compile(r"\(.*$|\[.*$")
_WORD_RE = re.compile(r"[^\W_]+", re.UNICODE)
_ORDINAL_WORDS = _words(
    """first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth
    thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth"""
)


def _ordinal(i: int) -> str:
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(i % 10, "th") if i not in (11, 12, 13) else "th"
    return f"{i}{suffix}"


#: "fifth" → "5th", so written-out and numbered streets compare equal.
_ORDINALS = {w: _ordinal(i) for i, w in enumerate(_ORDINAL_WORDS, start=1)}
_FUZZY_MIN_LEN = 6
_FUZZY_RATIO = 0.85


def _core(part: str) -> tuple[frozenset[str], str]:
    words = [_ORDINALS.get(w, w) for w in _WORD_RE.findall(part)]
    words = [w for w in words if not re.fullmatch(r"\d+", w)]
    core = [w for w in words if w not in _TYPE_WORDS and w not in _DIRECTIONS] or words
    return frozenset(core), "".join(core)


@lru_cache(maxsize=200_000)
def _name_cores(name: str) -> tuple[tuple[frozenset[str], str], ...]:
    text = unicodedata.normalize("NFKC", name).casefold()
    text = _PAREN_RE.sub("", text)
    parts = _SPLIT_RE.split(text)
    cores = {_core(p) for p in parts if p and p.strip()}
    return tuple(sorted((c for c in cores if c[0]), key=lambda c: c[1]))


def _parts_match(x: tuple[frozenset[str], str], y: tuple[frozenset[str], str]) -> bool:
    if x[0] <= y[0] or y[0] <= x[0] or x[1] == y[1]:
        return True
    if min(len(x[1]), len(y[1])) < _FUZZY_MIN_LEN:
        return False
    return difflib.SequenceMatcher(None, x[1], y[1]).ratio() >= _FUZZY_RATIO


def names_match(a: str, b: str) -> bool:
    """Whether two road names refer to the same road (see the module docs for the rule).

    Names are split into streets (``;``, ``/``, ``&``, `` X ``, `` at ``), lower-cased, house
    numbers, directions and street-type words dropped, ordinal words written as numbers
    ("Fifth" = "5th"). Two streets match when one's words contain the other's, when they are
    the same written together ("Etelä Esplanadi" = "Eteläesplanadi"), or when they differ by
    a typo (similarity >= 0.85 for names of 6+ letters).

    Examples
    --------
    >>> names_match("SE 122ND AVE", "Southeast 122nd Avenue")
    True
    >>> names_match("HUOPALAHDENTIE X TURUNVÄYLÄ", "Turunväylä")
    True
    >>> names_match("5TH AVE", "Fifth Avenue"), names_match("SNELLMANNINKATU 25", "Snellmaninkatu")
    (True, True)
    >>> names_match("Mannerheimintie", "Runeberginkatu")
    False
    """
    ca, cb = _name_cores(a), _name_cores(b)
    return any(_parts_match(x, y) for x in ca for y in cb)


def _pair_name_match(ev_names: np.ndarray, unit_names: np.ndarray) -> np.ndarray:
    """names_match over pairs, evaluated once per distinct (event name, unit name)."""
    out = np.zeros(len(ev_names), dtype=bool)
    if len(ev_names) == 0:
        return out
    ec, eu = pd.factorize(ev_names, use_na_sentinel=True)
    uc, uu = pd.factorize(unit_names, use_na_sentinel=True)
    ok = (ec >= 0) & (uc >= 0)
    if not ok.any():
        return out
    key = ec[ok].astype(np.int64) * (len(uu) + 1) + uc[ok]
    combos, inv = np.unique(key, return_inverse=True)
    res = np.fromiter(
        (
            names_match(str(eu[k // (len(uu) + 1)]), str(uu[k % (len(uu) + 1)]))
            for k in combos.tolist()
        ),
        dtype=bool,
        count=len(combos),
    )
    out[np.flatnonzero(ok)] = res[inv]
    return out
