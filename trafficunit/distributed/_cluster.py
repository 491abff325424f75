"""The Dask client and what runs once per worker."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._errors import TrafficUnitError
from ..settings import DistributedSettings

#: glibc's allocator settings for the workers of a local cluster: those a process reaches by
#: itself (its dynamic thresholds' limits on 64-bit Linux), set before the workers start.
#: Dask sets ``MALLOC_TRIM_THRESHOLD_`` to 64 KiB, which also stops the mmap threshold from
#: growing: every array over 128 KiB is then mapped anew and its pages faulted in and zeroed
#: (ten times the page faults of a build task, a third more CPU than in one process).
_WORKER_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
}

# --------------------------------------------------------------------------------------------
# cluster


@contextlib.contextmanager
def cluster(
    scheduler: Any = "local", *, settings: DistributedSettings | None = None
) -> Iterator[Any]:
    """A Dask client: a new local cluster (``"local"``), a scheduler address, or a client.

    Parameters
    ----------
    scheduler
        ``"local"`` starts a :class:`distributed.LocalCluster` of ``settings.n_workers``
        workers (closed on exit; their memory allocator set as :data:`_WORKER_MALLOC` says);
        an address such as ``"tcp://10.0.0.5:8786"`` connects to a running cluster; a
        :class:`distributed.Client` is used as it is.
    settings
        :class:`~trafficunit.settings.DistributedSettings` for the local cluster.
    """
    from .._optional import require

    dist = require("distributed", "running on Dask")
    Client, LocalCluster = dist.Client, dist.LocalCluster

    cfg = settings or DistributedSettings()
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler in (None, "local"):
        import dask

        with (
            # the workers' statistical profiler (a thread sampling every stack each 10 ms)
            # only feeds the dashboard, which a local run serves only when asked
            dask.config.set(
                {
                    "distributed.worker.profile.enabled": cfg.dashboard_address is not None,
                    # glibc reads these when a worker process starts (Linux; elsewhere unused)
                    **{
                        f"distributed.nanny.pre-spawn-environ.{k}": v
                        for k, v in _WORKER_MALLOC.items()
                    },
                }
            ),
            LocalCluster(
                n_workers=cfg.n_workers,
                threads_per_worker=cfg.threads_per_worker,
                processes=cfg.processes,
                memory_limit=cfg.memory_limit,
                # the scheduler's HTTP server on the given address, else on a free port with
                # no dashboard (never on the default 8787, which may be another cluster's)
                dashboard_address=cfg.dashboard_address or ":0",
                scheduler_kwargs={"dashboard": cfg.dashboard_address is not None},
            ) as lc,
            Client(lc) as client,
        ):
            client.run(_warm_up)
            yield client
        return
    try:
        client = Client(str(scheduler), timeout=f"{cfg.connect_timeout_s}s")
    except OSError as exc:
        raise TrafficUnitError(
            f"cannot reach the Dask scheduler at {scheduler}: {exc}; check the address "
            "(tcp://host:8786) or use 'local'"
        ) from exc
    with client:
        try:
            client.run(_warm_up)
        except ImportError as exc:
            raise TrafficUnitError(
                f"the Dask workers at {scheduler} cannot import trafficunit ({exc}); install "
                "the same trafficunit version (with the [dask] extra) on every worker"
            ) from exc
        yield client


def _peak_rss_mb() -> float:
    """Peak resident set size of this (worker) process, MB.

    Linux's ``VmHWM`` where available: ``ru_maxrss`` survives ``exec`` and so would report
    the size of the process a worker was forked from.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _preload(module: str) -> None:
    """Import ``module`` if it is installed (run in a thread)."""
    with contextlib.suppress(ImportError):
        importlib.import_module(module)


def _reset_peak_rss() -> None:
    """Start this process's peak resident set size afresh (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _warm_up() -> None:
    """Import the modules the tasks use, once per worker, when the cluster starts."""
    from .. import join, units  # noqa: F401


def _bar(total: int, desc: str, progress: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="cell", disable=not progress)
