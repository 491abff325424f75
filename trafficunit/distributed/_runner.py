"""Tasks on the workers with a summary on disk each: a run from files resumes from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._gcpause import gc_paused
from ._cluster import _bar
from ._parts import _write_json


def _summarised(fn: Any, summary: Path, *args: Any) -> dict[str, Any]:
    """``fn(*args)`` on a worker; its summary also written to ``summary`` (the marker that
    the output before it is complete); the garbage collector paused while it runs."""
    with gc_paused():
        out: dict[str, Any] = fn(*args)
    _write_json(summary, out)
    return out


class _Runner:
    """Submits tasks whose summary is not on disk yet; collects every summary."""

    def __init__(self, client: Any, progress: bool) -> None:
        self.client = client
        self.progress = progress

    def map(self, desc: str, jobs: list[tuple[Path, Any, tuple[Any, ...]]]) -> list[Any]:
        """Summaries of ``jobs`` (summary path, task, arguments) in their order."""
        return self.gather(desc, self.submit(jobs))

    def submit(
        self,
        jobs: list[tuple[Path, Any, tuple[Any, ...]]],
        into: _Pending | None = None,
        priority: int = 0,
    ) -> _Pending:
        """``jobs`` started on the workers (those whose summary is on disk read instead),
        after those of ``into``; ``priority``: Dask's (the scheduler sends the queued task
        of the highest first)."""
        out, futures = into if into is not None else ([], {})
        for summary, fn, args in jobs:
            if summary.exists():
                out.append(json.loads(summary.read_text()))
                continue
            futures[len(out)] = self.client.submit(
                _summarised, fn, summary, *args, pure=False, priority=priority
            )
            out.append(None)
        return out, futures

    def gather(self, desc: str, pending: _Pending, each: Any = None) -> list[Any]:
        """The summaries of jobs :meth:`submit` started, in their order, once all are done;
        ``each(k)`` called as job K's is in (those read from disk first)."""
        from distributed import as_completed

        out, futures = pending
        bar = _bar(len(out), desc, self.progress)
        bar.update(len(out) - len(futures))
        if each is not None:
            for k in range(len(out)):
                if k not in futures:
                    each(k)
        at = {f: n for n, f in futures.items()}
        for f in as_completed(list(at)):
            out[at[f]] = f.result()
            f.release()
            bar.update()
            if each is not None:
                each(at[f])
        bar.close()
        return out


#: Jobs :meth:`_Runner.submit` started: the summaries read from disk (None for the others)
#: and the futures of the others by their position.
_Pending = tuple[list[Any], dict[int, Any]]
