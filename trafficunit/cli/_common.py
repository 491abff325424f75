"""Helpers shared by CLI verbs: error reporting, consoles, reader flags and progress lines."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from .._errors import InputFileError, TrafficUnitError, ValidationError

console = Console(stderr=False)
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn trafficunit errors into a one-line message and exit code 2, never a traceback."""
    try:
        yield
    except TrafficUnitError as exc:
        message = escape(str(exc))  # brackets in a message ("trafficunit[server]") are not markup
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc


def num_or_text(value: str | None) -> int | str | None:
    """``"4326"`` → 4326 (ASCII digits only); other text as given."""
    if value is None:
        return None
    return int(value) if (value.isascii() and value.isdigit()) else value


def period_bounds(text: str) -> tuple[str, str]:
    """``--period`` ``"2023-01-01..2025"`` or ``"2016,2018"`` → ``(start, end)``."""
    parts = [p.strip() for p in text.split(".." if ".." in text else ",")]
    if len(parts) != 2:
        raise ValidationError(
            f"--period {text!r}: give START..END or START,END, e.g. 2023-01-01..2025"
        )
    return parts[0], parts[1]


def key_values(text: str | None, flag: str, *, numeric_keys: bool = False) -> dict[Any, str]:
    """``"a=1,b=2"`` → ``{"a": "1", "b": "2"}``; with ``numeric_keys`` a key ``"1"`` is also
    given as ``1``, so numeric codes match numeric columns."""
    out: dict[Any, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValidationError(
                f"{flag}: expected key=value pairs separated by commas, got {item!r}"
            )
        k, v = (p.strip() for p in item.split("=", 1))
        out[k] = v
        if numeric_keys and k.lstrip("-").isascii() and k.lstrip("-").isdigit():
            out[int(k)] = v
    return out


def reader_options(**flags: Any) -> dict[str, Any]:
    """:func:`trafficunit.read_events` keywords from the CLI's flags, in their order: ``crs``
    "4326" → 4326, ``time`` "date,time" → a list, ``severity_map`` "1=O,3=K" → a mapping."""
    out = dict(flags)
    if "crs" in out:
        out["crs"] = num_or_text(out["crs"])
    time = out.get("time")
    if time and "," in time:
        out["time"] = time.split(",")
    if "severity_map" in out:
        codes = key_values(out["severity_map"], "--severity-map", numeric_keys=True)
        out["severity_map"] = codes or None
    return out


def shared_data() -> Path | None:
    """``../shared/data`` beside the working directory or the repository, or $TRAFFICUNIT_DATA."""
    env = os.environ.get("TRAFFICUNIT_DATA")
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
        Path(__file__).resolve().parents[3] / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def preset_file(preset: str) -> Path:
    """The file a preset describes, in the shared data folder (:func:`shared_data`)."""
    from ..presets import get_preset

    base = shared_data()
    if base is None:
        raise InputFileError(
            f"--preset {preset} without the file needs ../shared/data; pass the file path "
            "or set TRAFFICUNIT_DATA to the data directory"
        )
    return base / get_preset(preset).file


def progress_printer(quiet: bool) -> Callable[[str, str], None]:
    """``(stage, message)`` printed as one dim-labelled line, or nothing with ``quiet``."""

    def progress(stage: str, message: str) -> None:
        if not quiet:
            console.print(f"[dim]{stage:>11}[/] {message}", highlight=False)

    return progress


def verb_group(name: str, help: str) -> typer.Typer:
    """A verb with sub-verbs (``trafficunit NAME SUB ...``), registered on the root app."""
    from . import app

    group = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(group, name=name)
    return group


def data_folder(data_dir: Path | None) -> Path:
    """``--data-dir`` as given, else $TRAFFICUNIT_DATA_DIR, else ``demo-output``."""
    return data_dir or Path(os.environ.get("TRAFFICUNIT_DATA_DIR", "demo-output"))
