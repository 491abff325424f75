"""Helpers shared by CLI verbs: error reporting and consoles."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

from .._errors import TrafficUnitError

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
