"""Vectorised, platform-independent content hashes for stable ids.

Ids are derived from what a unit *is* (its source ways and its rounded coordinates), never from
row order, so the same input gives the same ids on every run and machine, and editing one street
leaves every other unit's id alone. Hashing is splitmix64 over uint64 arrays: numpy only, no
per-row Python.
"""

from __future__ import annotations

import numpy as np

_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHJKMNPQRSTVWXYZ", dtype=np.uint8)  # Crockford


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser applied elementwise to a uint64 array."""
    z = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_groups(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Order-sensitive hash of the int64 ``values`` of each group.

    ``groups`` gives the group of each value; within a group, values must appear in order.
    Returns one uint64 per group (0..n_groups-1).
    """
    values = np.asarray(values, dtype=np.int64).view(np.uint64)
    groups = np.asarray(groups, dtype=np.int64)
    if len(values) == 0:
        return splitmix64(np.arange(n_groups, dtype=np.uint64))
    # position of each value inside its group
    starts = np.r_[0, np.flatnonzero(groups[1:] != groups[:-1]) + 1]
    pos = np.arange(len(values)) - np.repeat(starts, np.diff(np.r_[starts, len(values)]))
    with np.errstate(over="ignore"):
        mixed = splitmix64(values ^ splitmix64(pos.astype(np.uint64) + np.uint64(0x51ED27)))
    out = np.zeros(n_groups, dtype=np.uint64)
    np.bitwise_xor.at(out, groups, mixed)
    counts = np.bincount(groups, minlength=n_groups).astype(np.uint64)
    return splitmix64(out ^ splitmix64(counts))


def combine(*parts: np.ndarray) -> np.ndarray:
    """Combine uint64 hash arrays elementwise (order-sensitive)."""
    out = np.zeros(len(parts[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i, p in enumerate(parts):
            out = splitmix64(out ^ splitmix64(np.asarray(p).astype(np.uint64) + np.uint64(i)))
    return out


def to_ids(prefix: str, h: np.ndarray, *, length: int = 12) -> np.ndarray:
    """Format uint64 hashes as ``prefix`` + ``length`` Crockford base32 characters."""
    h = np.asarray(h, dtype=np.uint64)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    width = len(head) + length
    chars = np.empty((len(h), width), dtype=np.uint8)
    chars[:, : len(head)] = head
    for i in range(length):  # one column of digits at a time (most significant first)
        digit = (h >> np.uint64(5 * (length - 1 - i))) & np.uint64(31)
        chars[:, len(head) + i] = _ALPHABET[digit.astype(np.intp)]
    return chars.view(f"S{width}").ravel().astype(f"U{width}").astype(object)
