"""``trafficunit serve`` as a real child process for tests, as users start it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(
    data: Path, *, server: str = "granian", env: dict[str, str] | None = None, timeout: float = 90
) -> Iterator[str]:
    """Run ``trafficunit serve DATA --server SERVER`` on a free port; yield its URL once
    ``/healthz`` answers; stop it (and Granian's workers: its own process group) at the end."""
    port = free_port()
    cli = str(Path(sys.executable).parent / "trafficunit")
    url = f"http://127.0.0.1:{port}"
    # the log is a file, not a pipe: a chatty server never blocks on it
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [cli, "serve", str(data), "--port", str(port), "--server", server],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    err = log.read().decode(errors="replace")
                    raise RuntimeError(f"{server} exited with {proc.returncode}: {err[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{server} did not answer /healthz within {timeout:g} s")
                time.sleep(0.2)
            yield url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
