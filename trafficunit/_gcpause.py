"""Python's cyclic garbage collector paused while the heavy stages run.

Building units, joining events and scoring make and free millions of shapely geometries and
pandas objects but no reference cycle: each full collection they trigger scans every live
object and frees nothing (in a Dask join task on 5M accidents, 81 collections took 6.9 s of
its CPU, seen with py-spy). While paused, objects are still freed by reference counting;
the collector resumes, if it was on, when the last paused stage ends (stages may run in
threads, as a Dask worker runs tasks, or nested: ``tu.build`` calls ``build_units``...).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator


class _GcPause:
    """Pauses the collector while any holder runs (see the module docs)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holds = 0
        self._was_on = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._holds:
                self._was_on = gc.isenabled()
                gc.disable()
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if not self._holds and self._was_on:
                    gc.enable()


#: ``with gc_paused():`` or ``@gc_paused()`` around a heavy stage.
gc_paused = _GcPause()
