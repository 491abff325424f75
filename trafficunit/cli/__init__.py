"""The ``trafficunit`` command line: the verbs a batch job needs.

Each verb lives in its own module of this package and registers itself on :data:`app`. Verb
modules are imported only when their verb runs, so ``trafficunit --version`` and
``trafficunit --help`` start without pandas, geopandas or statsmodels; the root help lists
the verbs from :data:`VERBS` (a test keeps those lines equal to the verbs' own help).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

#: Verb → (module defining it, its help's first paragraph), in the order of a job.
VERBS: dict[str, tuple[str, str]] = {
    "build": (
        "build",
        "One command from a city's files to a served folder: network → units → events → join → "
        "risk → black spots → tiles (then `trafficunit serve DATA_DIR`).",
    ),
    "units": ("units", "Build traffic units (intersections and segments) from a road network."),
    "join": (
        "join",
        "Attach accidents, hazards or work zones to traffic units and report the matches.",
    ),
    "risk": (
        "risk",
        "Score units (measures, empirical Bayes, four-colour level) and find black spots.",
    ),
    "tiles": (
        "tiles",
        "Build a PMTiles v3 archive: units coloured by risk level, accidents, hazards, work zones.",
    ),
    "serve": (
        "serve",
        "Serve tiles, units, accidents and black spots of a data folder, with the web map at /.",
    ),
    "demo": (
        "serve",
        "The whole job on the embedded Helsinki sample: `build` (units, events, risk, tiles), "
        "then `serve` (web map).",
    ),
    "warn": ("warn", "Replay accidents through warning rules; print or write the alerts."),
    "resegment": (
        "resegment",
        "Rebuild the units of an edited network; unchanged units keep their ids, the rest get a "
        "lineage (split, merged, reshaped, removed, added) and the events follow.",
    ),
    "pipeline": (
        "pipeline",
        "Build units, join the accidents and score, partitioned spatially on Dask; the results "
        "equal a single-process run. An interrupted run started again resumes where it stopped.",
    ),
    "tokens": ("tokens", "Create, list and revoke access tokens of the hazard ledger."),
    "zones": ("zones", "Load, generate and list the jurisdiction trees of a data folder."),
    "trace-check": (
        "tracecheck",
        "Check GPS traces against route permits: off-route stretches, speeding, outside hours.",
    ),
}

#: Modules defining verbs (all of them; imported on demand).
VERB_MODULES = tuple(dict.fromkeys(module for module, _ in VERBS.values()))


class _LazyVerbs(TyperGroup):
    """A command group that imports a verb's module the first time the verb is asked for."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(dict.fromkeys([*VERBS, *self.commands]))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in VERBS:
            if self._listing:  # the root help needs a line, not the verb's imports
                return TyperCommand(cmd_name, help=VERBS[cmd_name][1])
            import_module(f"{__name__}.{VERBS[cmd_name][0]}")
            self.commands.update(typer.main.get_group(app).commands)
        return self.commands.get(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="trafficunit",
    cls=_LazyVerbs,
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


def load_all() -> None:
    """Import every verb module (for tools that walk the whole command tree)."""
    for module in VERB_MODULES:
        import_module(f"{__name__}.{module}")


def _no_bool_placeholder() -> None:
    """Flags show no ``<bool>`` type in --help (they take no value)."""
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None:  # older typer: nothing to hide
        return

    def display_type_rich(self: TyperOption, ctx: typer.Context) -> str | None:
        if self.is_flag or self.count:
            return None
        return original(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign,assignment]


_no_bool_placeholder()


def main() -> None:
    """Console-script entry point."""
    app()
