"""The ``trafficunit`` command line: the verbs a batch job needs.

Each verb lives in its own module of this package and registers itself on :data:`app`.
"""

from __future__ import annotations

from importlib import import_module

import typer

app = typer.Typer(
    name="trafficunit",
    help="Traffic units for road-safety management: build, join, score, tile, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"trafficunit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Traffic units for road-safety management: build, join, score, tile, serve."""


#: Modules defining verbs, in the order they appear in --help.
VERB_MODULES = (
    "units",
    "tiles",
    "serve",
    "risk",
    "join",
    "resegment",
    "tokens",
    "pipeline",
    "warn",
)

for _name in VERB_MODULES:
    import_module(f"{__name__}.{_name}")


def main() -> None:
    """Console-script entry point."""
    app()
