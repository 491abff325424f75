"""The command line starts quickly: --version and --help never import the data stack."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from trafficunit.cli import VERBS, app, load_all

HEAVY = ("pandas", "geopandas", "shapely", "statsmodels", "pyarrow")


def _imported(args: list[str]) -> set[str]:
    """Top-level modules imported by ``trafficunit ARGS``, from ``python -X importtime``."""
    code = (
        "import sys\nfrom trafficunit.cli import main\n"
        f"sys.argv = ['trafficunit', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "typer" in names, done.stderr[-500:]  # the probe itself works
    return names


@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_version_and_help_skip_the_data_stack(args: list[str]) -> None:
    assert not set(HEAVY) & _imported(args)


def test_a_verb_imports_what_it_needs() -> None:
    # the opposite case, so the probe above can fail: a real verb loads the stack
    assert {"pandas", "geopandas"} <= _imported(["units", "--help"])


def test_root_help_lines_are_the_verbs_own_help() -> None:
    load_all()
    commands = typer.main.get_group(app).commands
    assert set(commands) == set(VERBS)
    for name, (_, line) in VERBS.items():
        own = " ".join((commands[name].help or "").strip().split("\n\n")[0].split())
        assert line == own, name


@pytest.mark.parametrize("verb", list(VERBS))
def test_each_verb_answers_help(verb: str) -> None:
    result = CliRunner().invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_unknown_verb_is_one_clear_error() -> None:
    result = CliRunner().invoke(app, ["nope"])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_counting_accidents_imports_no_statistics_stack() -> None:
    # a Dask worker counting a cell's accidents imports the scoring module: scipy.stats and
    # statsmodels (a third and half a second) wait until a fit or a hot-spot test needs them
    code = (
        "import sys\nimport trafficunit.risk.scoring, trafficunit.distributed._score\n"
        "print(sorted(m for m in sys.modules if m.startswith(('scipy.stats', 'statsmodels'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
