"""``trafficunit warn DATA_DIR --rules rules.yaml --from 2016-01-01 --to 2016-12-31``.

Replays accidents in time order through warning rules (:mod:`trafficunit.warnings`) over a data
folder's units and levels, as the server evaluates them on ``POST /accidents``. Without
``--accidents`` the data folder's own ``accidents.parquet`` is replayed over the levels without
those accidents; with it, the file's accidents are replayed on top of the folder's levels
(the server's case: a build, then accidents posted). ``--batch-size`` mirrors the server's
writes (one POST each) for the level built-ins.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from .. import io
from .._errors import InputFileError
from . import app
from ._common import console, user_errors


@app.command("warn")
def warn_cmd(
    data_dir: Annotated[Path, typer.Argument(metavar="DATA_DIR", help="A served data folder")],
    rules: Annotated[
        Path | None, typer.Option("--rules", help="YAML/JSON rules (default: the built-in four)")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="First day (ISO date)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, inclusive")] = None,
    accidents: Annotated[
        Path | None,
        typer.Option("--accidents", help="Replay these accidents (any tu.read_events input)"),
    ] = None,
    preset: Annotated[
        str | None, typer.Option("--preset", help="tu.read_events preset of --accidents")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Accidents per write (as POSTed)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the alerts (.json or .csv)")
    ] = None,
) -> None:
    """Replay accidents through warning rules; print or write the alerts."""
    import trafficunit as tu

    from ..live import LiveRisk
    from ..warnings import evaluate, load_rules

    with user_errors():
        ruleset = load_rules(rules)
        units_path = data_dir / "units.parquet"
        if not units_path.exists():
            raise InputFileError(f"{data_dir}: no units.parquet (build the folder first)")
        units = io.read_table(units_path)
        manifest: dict[str, Any] = {}
        if (data_dir / "manifest.json").exists():
            manifest = json.loads((data_dir / "manifest.json").read_text(encoding="utf-8"))
        rule = manifest.get("rule") or {}
        live = LiveRisk(units, rule if rule.get("scheme") else rule or None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if accidents is not None:
                events = tu.read_events(accidents, kind="accident", preset=preset)
                joined = tu.assign(units, events)
            else:
                path = data_dir / "accidents.parquet"
                if not path.exists():
                    raise InputFileError(f"{data_dir}: no accidents.parquet; pass --accidents")
                joined = io.read_table(path, index=None)
                live.add_accidents(
                    joined["unit_id"].astype(object).to_numpy(),
                    joined["severity"].astype(object).to_numpy(),
                    remove=True,
                )
                live.drain()
        joined = joined[joined["unit_id"].notna()].drop_duplicates("event_id")
        wz = data_dir / "workzones.parquet"
        alerts = evaluate(
            ruleset,
            joined,
            units,
            start=start,
            end=end,
            live=live,
            batch_size=batch_size,
            workzones=io.read_table(wz, index=None) if wz.exists() else None,
        )
        if output is not None:
            _write(alerts, output)
        for a in alerts:
            console.print(
                f"{a['time']}  {a['rule']:<24} {a['scope']}:{a['scope_id']}  {a['detail']}",
                highlight=False,
            )
        console.print(f"{len(alerts)} alert(s)", highlight=False)


def _write(alerts: list[dict[str, Any]], path: Path) -> None:
    import csv
    import io as _io

    if path.suffix.lower() == ".csv":
        buf = _io.StringIO()
        cols = ["id", "rule", "scope", "scope_id", "unit_ids", "evidence", "time", "detail"]
        w = csv.writer(buf)
        w.writerow(cols)
        for a in alerts:
            w.writerow([";".join(a[c]) if isinstance(a[c], list) else a[c] for c in cols])
        text = buf.getvalue()
    else:
        text = json.dumps(alerts, ensure_ascii=False, indent=2)
    with io.atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
