"""Execute the notebooks with the project's Python and keep their stored outputs small.

    .venv/bin/python notebooks/execute.py              # run all, write outputs back in place
    .venv/bin/python notebooks/execute.py 01 --check   # run, do not write

The kernel is the Python running this script (the project's venv), not whatever kernel named
``python3`` is installed for the user. The interactive maps (``offline_map.py``: MapLibre and the
data inlined, about 1 MB each) are replaced by a one-line note before saving, as are widget
outputs and widget state; text, tables and static figures stay, so GitHub shows them.
``tests/test_notebooks.py`` uses :func:`execute` too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted(HERE.glob("[0-9][0-9]-*.ipynb"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
KERNEL_NAME = "trafficunit-venv"
#: Output metadata marking an interactive map (``offline_map.METADATA_KEY``).
MAP_KEY = "trafficunit_offline_map"


def _kernel_manager(spec_dir: Path, env: dict[str, str]) -> KernelManager:
    """A kernel manager whose only kernel runs ``sys.executable -m ipykernel_launcher``."""
    kdir = spec_dir / KERNEL_NAME
    kdir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"trafficunit ({sys.executable})",
        "language": "python",
        "env": env,
    }
    (kdir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)


def slim(nb: Any) -> Any:
    """Drop widget state and outputs, shrink interactive maps to a note; keep the rest."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            data = out.get("data", {})
            if WIDGET_MIME in data:
                continue
            note = out.get("metadata", {}).get("text/html", {}).get(MAP_KEY)
            if note:
                text = note if isinstance(note, str) else data.get("text/plain", "[map]")
                out["data"] = {"text/plain": text}
                out["metadata"] = {}
            kept.append(out)
        cell.outputs = kept
    return nb


def execute(
    path: Path,
    *,
    out_dir: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: int = 300,
    slim_outputs: bool = True,
) -> tuple[Any, float]:
    """Run ``path`` top to bottom in its own folder; return (executed notebook, seconds).

    Parameters
    ----------
    path
        The notebook.
    out_dir
        Where the notebook writes its files (``$TRAFFICUNIT_NOTEBOOK_OUT``); default ``out``
        beside the notebook.
    env
        Extra environment variables for the kernel.
    timeout
        Seconds allowed for one cell.
    slim_outputs
        Apply :func:`slim` (as stored in git); False keeps the maps' pages.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        When a cell fails (the message shows the cell and the traceback).
    """
    nb = nbformat.read(path, as_version=4)
    kernel_env = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if out_dir is not None:
        kernel_env["TRAFFICUNIT_NOTEBOOK_OUT"] = str(out_dir)
    kernel_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="tu-kernel-") as spec_dir:
        km = _kernel_manager(Path(spec_dir), kernel_env)
        client = NotebookClient(
            nb,
            km=km,
            timeout=timeout,
            kernel_name=KERNEL_NAME,
            resources={"metadata": {"path": str(path.parent)}},
            store_widget_state=False,
            record_timing=False,
        )
        t0 = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - t0
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    return (slim(nb) if slim_outputs else nb), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="Notebook name prefixes (default: all)")
    parser.add_argument("--check", action="store_true", help="Run only, do not write back")
    args = parser.parse_args(argv)
    chosen = [
        p for p in NOTEBOOKS if not args.names or any(p.name.startswith(n) for n in args.names)
    ]
    for path in chosen:
        nb, seconds = execute(
            path, env={k: v for k, v in os.environ.items() if k.startswith("TRAFFICUNIT_")}
        )
        if not args.check:
            nbformat.write(nb, path)
        size = len(nbformat.writes(nb).encode()) / 1e3
        print(f"{path.name}: {seconds:.1f} s, {size:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
