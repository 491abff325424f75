"""Worker supervision of ``trafficunit serve``: respawn, die with the parent, who holds a port.

``trafficunit serve`` runs Granian's multi-process server (:class:`SupervisedGranian`):

* a worker that dies (a segfault, an OOM kill, ``kill -9``) is respawned by Granian
  (``respawn_failed_workers``) and told in the log at warning level; at most
  :data:`RESPAWN_LIMIT` respawns in :data:`RESPAWN_WINDOW_S` seconds, beyond that the server
  stops with exit code 1 (a worker that cannot start would otherwise flap for ever);
* each worker dies with the main process (:func:`bind_to_parent`: ``PR_SET_PDEATHSIG`` on
  Linux, a thread watching the parent's PID elsewhere), so a ``kill -9`` of the main process
  leaves no worker holding the port;
* :func:`port_holders` names the processes listening on a port, for the "port in use" error.

The worker side reads two environment variables the CLI sets: :data:`ENV_SUPERVISOR` (the
main process's PID) and :data:`ENV_WORKERS` (the configured worker count, in ``/healthz``).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Environment variable naming the supervising (main) process's PID.
ENV_SUPERVISOR = "TRAFFICUNIT_SUPERVISOR_PID"
#: Environment variable naming the configured number of worker processes.
ENV_WORKERS = "TRAFFICUNIT_WORKERS"
#: Most worker respawns in :data:`RESPAWN_WINDOW_S`; one more stops the server.
RESPAWN_LIMIT = 5
#: Window of :data:`RESPAWN_LIMIT`, seconds.
RESPAWN_WINDOW_S = 60.0

_bound = False


def supervisor_pid() -> int | None:
    """The main process's PID when this process is a worker of ``trafficunit serve``."""
    text = os.environ.get(ENV_SUPERVISOR, "")
    if not (text.isascii() and text.isdigit()):
        return None
    pid = int(text)
    return None if pid == os.getpid() else pid


def bind_to_parent(poll_s: float = 0.5) -> None:
    """In a worker: exit when the main process dies (no orphan keeps serving the port).

    On Linux the kernel sends the worker ``SIGKILL`` when its parent dies
    (``PR_SET_PDEATHSIG``): at once, whatever the worker is doing. The main process only dies
    without stopping its workers when it is itself killed (``kill -9``, the OOM killer), so
    requests in flight on the workers are cut; every acknowledged ledger write is durable
    already (SQLite ``synchronous=FULL`` or PostgreSQL). A graceful SIGTERM there deadlocked a
    worker in testing, so there is none. Elsewhere a daemon thread polls the parent's PID and
    exits the worker once the parent is gone. Does nothing outside a worker
    (``ENV_SUPERVISOR`` unset or naming this process).
    """
    global _bound
    parent = supervisor_pid()
    if parent is None or _bound:
        return
    _bound = True
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
                if os.getppid() != parent:  # the parent died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="trafficunit-parent-watch", daemon=True).start()


def worker_info() -> dict[str, Any]:
    """Worker count for ``/healthz``: configured and running (None when unknown)."""
    text = os.environ.get(ENV_WORKERS, "")
    configured = int(text) if (text.isascii() and text.isdigit()) else 1
    running: int | None = None
    parent = supervisor_pid()
    if parent is not None and os.getppid() == parent:
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
            running = len(children)
    elif parent is None:
        running = 1  # a single process serves
    return {"configured": configured, "running": running}


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(name).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) < 10 or parts[3] != "0A":  # 0A: LISTEN
                    continue
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes


def _cmdline(pid: int) -> str:
    """``pid``'s command line without the interpreter (``trafficunit serve ...``)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    words = [a.decode(errors="replace") for a in args]
    if len(words) > 1 and Path(words[0]).name.startswith("python"):
        words = words[1:]
    if words:
        words[0] = Path(words[0]).name
    return " ".join(words)[:160]


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def port_holders(port: int) -> list[tuple[int, str]]:
    """PIDs and command lines of this user's processes listening on TCP ``port`` (Linux /proc;
    empty elsewhere or when the holder belongs to another user)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    found: list[tuple[int, str]] = []
    for proc in Path("/proc").iterdir():
        if not (proc.name.isascii() and proc.name.isdigit()):
            continue
        try:
            fds = list((proc / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    found.append((int(proc.name), _cmdline(int(proc.name))))
                    break
            except OSError:
                continue
    return sorted(found)


def describe_port_holders(port: int) -> str | None:
    """Who holds ``port``, like ``PID 12 (`trafficunit serve out`, workers 13, 14)``: workers
    are grouped under a parent running the same command; None when unknown."""
    holders = port_holders(port)
    if not holders:
        return None
    groups: dict[int, list[int]] = {}
    cmds: dict[int, str] = {}
    for pid, cmd in holders:
        parent = _ppid(pid)
        if parent is not None and _cmdline(parent) == cmd:
            groups.setdefault(parent, []).append(pid)
            cmds[parent] = cmd
        else:
            groups.setdefault(pid, [])
            cmds[pid] = cmd
    parts = []
    for pid, workers in sorted(groups.items()):
        extra = f", workers {', '.join(map(str, workers))}" if workers else ""
        parts.append(f"PID {pid} (`{cmds[pid]}`{extra})")
    return "; ".join(parts)


def granian_server(
    *,
    respawn_limit: int = RESPAWN_LIMIT,
    respawn_window_s: float = RESPAWN_WINDOW_S,
    **kwargs: Any,
) -> Any:
    """A Granian multi-process server that respawns failed workers, at most ``respawn_limit``
    times in ``respawn_window_s`` seconds (one more death stops it, ``gave_up`` set).

    Other keyword arguments go to ``granian.Granian``; ``respawn_failed_workers`` is always on.
    Granian itself also stops when the same worker dies again within 5.5 s of its respawn.
    """
    from granian.log import logger as glog
    from granian.server import MPServer

    class SupervisedGranian(MPServer):
        """Granian's MPServer with a bounded respawn rate and a warning per respawn."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw, respawn_failed_workers=True)
            self.respawns: collections.deque[float] = collections.deque()
            self.gave_up = False

        def _respawn_workers(
            self, workers: Any, spawn_target: Any, target_loader: Any, delay: float = 0
        ) -> Any:
            now = time.monotonic()
            while self.respawns and now - self.respawns[0] > respawn_window_s:
                self.respawns.popleft()
            for idx in workers:
                old = self.wrks[idx]
                code = old.inner.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                if delay == 0 and len(self.respawns) >= respawn_limit:
                    glog.error(
                        "worker-%d (PID %s) died (%s); %d respawns in the last %g s: "
                        "giving up, the server stops (see the worker's error above)",
                        idx + 1,
                        old.inner.pid,
                        how,
                        len(self.respawns),
                        respawn_window_s,
                    )
                    self.gave_up = True
                    self.interrupt_signal = True
                    self.main_loop_interrupt.set()
                    return None
                if delay == 0:
                    self.respawns.append(now)
                    glog.warning(
                        "worker-%d (PID %s) died (%s); respawning it (%d of at most %d "
                        "respawns in %g s)",
                        idx + 1,
                        old.inner.pid,
                        how,
                        len(self.respawns),
                        respawn_limit,
                        respawn_window_s,
                    )
            return super()._respawn_workers(workers, spawn_target, target_loader, delay)

    return SupervisedGranian(**kwargs)
