"""A live spatial index of open hazards: an ``rtree`` index updated in place.

The ledger keeps every open hazard's bounds in an in-memory :class:`rtree.index.Index` so a new
report finds the open hazards near it (duplicate linking) without scanning the table. Unlike a
bulk ``STRtree`` the index changes in place: a hazard is inserted when reported or reopened and
deleted when accepted or closed. It is brought up to date from the database's change sequence
inside each write transaction, so it also sees hazards written by other server processes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import shapely
from rtree import index as rtree_index

__all__ = ["LiveIndex", "OpenHazard"]


@dataclass(frozen=True)
class OpenHazard:
    """What duplicate linking needs to know about an open hazard."""

    pk: int
    category: str
    reported_at: datetime
    last_reported_at: datetime
    geometry: shapely.Geometry


class LiveIndex:
    """Open hazards by bounding box (``rtree``), with their category and report times."""

    def __init__(self) -> None:
        props = rtree_index.Property()
        props.dimension = 2
        self._tree = rtree_index.Index(properties=props)
        self._items: dict[int, tuple[tuple[float, float, float, float], OpenHazard]] = {}
        self._lock = threading.Lock()
        #: The change sequence number the index reflects.
        self.seq = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, pk: object) -> bool:
        return pk in self._items

    def upsert(self, item: OpenHazard) -> None:
        """Insert ``item``, replacing a previous entry with the same ``pk``."""
        bounds = tuple(float(v) for v in shapely.bounds(item.geometry))
        with self._lock:
            old = self._items.pop(item.pk, None)
            if old is not None:
                self._tree.delete(item.pk, old[0])
            self._tree.insert(item.pk, bounds)
            self._items[item.pk] = (bounds, item)  # type: ignore[assignment]

    def discard(self, pk: int) -> None:
        """Remove the hazard ``pk`` if present."""
        with self._lock:
            old = self._items.pop(pk, None)
            if old is not None:
                self._tree.delete(pk, old[0])

    def near(
        self, bounds: tuple[float, float, float, float], category: str | None = None
    ) -> list[OpenHazard]:
        """Open hazards whose bounds meet ``bounds``, of ``category`` when given, by ``pk``."""
        with self._lock:
            keys = sorted(self._tree.intersection(bounds))
            found = [self._items[k][1] for k in keys if k in self._items]
        if category is not None:
            found = [h for h in found if h.category == category]
        return found

    def pks(self) -> np.ndarray:
        """Keys of every indexed hazard."""
        with self._lock:
            return np.fromiter(self._items, dtype=np.int64, count=len(self._items))
