"""``trafficunit risk UNITS JOINED -o risk.parquet [--black-spots spots.parquet]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import io
from ..settings import RISK_LEVELS
from . import app
from ._common import console, user_errors
from ._options import optional_path


def _period(text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    for sep in ("..", ":", ","):
        if sep in text:
            start, end = text.split(sep, 1)
            return start.strip(), end.strip()
    raise typer.BadParameter(f"--period must look like 2016-01-01..2022-12-31, got {text!r}")


@app.command("risk")
def risk_cmd(
    units_path: Annotated[
        Path, typer.Argument(metavar="UNITS", help="Units (.parquet/.gpkg) or a data folder")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Output .parquet or .gpkg, or a data folder (scored units, black spots, "
            "rule and period in its manifest)",
        ),
    ],
    joined_path: Annotated[
        Path | None,
        optional_path(
            "[JOINED]", "Events joined to the units (tu.assign); default: the folder's accidents"
        ),
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(help="START..END (inclusive), e.g. 2016-01-01..2022-12-31; default all"),
    ] = None,
    measure: Annotated[
        str | None, typer.Option(help="Measure banded into levels (default eb_excess)")
    ] = None,
    scheme: Annotated[
        str | None, typer.Option(help="percentile | fixed | length_share | matrix")
    ] = None,
    bands: Annotated[
        str | None, typer.Option(help="Three lower bounds yellow,orange,red for the scheme")
    ] = None,
    black_spots: Annotated[
        Path | None, typer.Option("--black-spots", help="Also write black spots to this file")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Black-spot profile: default, kr-molit, in-morth, pt-ansr")
    ] = "default",
    spots_period: Annotated[
        str | None,
        typer.Option(help="Period of the black spots (default: the profile's latest years)"),
    ] = None,
    hotspot_stats: Annotated[
        bool, typer.Option("--hotspots", help="Add Getis-Ord Gi* and local Moran columns")
    ] = False,
    figure: Annotated[
        Path | None, typer.Option(help="Also render the risk map to this .png/.pdf/.svg")
    ] = None,
    top: Annotated[int, typer.Option(help="Rows in the top-units and top-sections lists")] = 10,
) -> None:
    """Score units (measures, empirical Bayes, four-colour level) and find black spots."""
    from .. import blackspots, risk
    from ..datafolder import DataFolder, check_writable, is_folder_output, timer

    with user_errors():
        into_folder = is_folder_output(output)
        for path in (None if into_folder else output, black_spots):
            if path is not None and path.suffix.lower() not in io.SUFFIXES:
                raise typer.BadParameter(f"{path}: output must end in {', '.join(io.SUFFIXES)}")
        for path in (output, black_spots, figure):
            if path is not None:  # before any work
                check_writable(path, folder=path is output and into_folder)
        source = DataFolder(units_path) if units_path.is_dir() else None
        if joined_path is None:
            if source is None:
                raise typer.BadParameter("give JOINED (events joined to the units)")
            joined_path = source.path("accidents")
        lap = timer()
        units = io.read_table(source.path("units") if source else units_path)
        joined = io.read_table(joined_path, index=None)
        band_values = None
        if bands is not None:
            try:
                band_values = tuple(float(x) for x in bands.split(","))
            except ValueError as exc:
                raise typer.BadParameter(f"--bands must be three numbers, got {bands!r}") from exc
        with console.status("scoring units"):
            scored = risk.score(
                units,
                joined,
                period=_period(period),
                measure=measure,
                scheme=scheme,
                bands=band_values,
                hotspot_stats=hotspot_stats,
            )
        risk_s = lap()
        with console.status("finding black spots"):
            spots = blackspots.find_black_spots(
                units, joined, profile=profile, period=_period(spots_period)
            )
        spots_s = lap()
        if into_folder:
            folder = DataFolder(output, create=True)
            written = write_risk_into_folder(folder, scored, spots, joined, joined_path)
            output, black_spots = written, folder.path("black_spots")
            folder.record_stage("risk", risk_s)
            folder.record_stage("black_spots", spots_s)
        else:
            io.write_table(scored, output)
        if black_spots is not None and not into_folder:
            io.write_table(spots, black_spots)
        if figure is not None:
            import matplotlib

            matplotlib.use("Agg")
            from .. import plot

            ax = plot.risk_map(scored, spots=spots, label_top=min(top, 10))
            figure.parent.mkdir(parents=True, exist_ok=True)
            with io.atomic_path(figure) as tmp:
                ax.figure.savefig(tmp, dpi=150, format=figure.suffix.lstrip(".") or "png")
        print_summary(scored, spots, joined, output=output, black_spots=black_spots, top=top)


def write_risk_into_folder(
    folder: Any, scored: Any, spots: Any, joined: Any, joined_path: Path
) -> Path:
    """Scored units and black spots into a data folder; rule, period, counts and the accidents
    the scores were computed from into its manifest."""

    from ..datafolder import file_record
    from ..project import counts, extent

    if joined_path.resolve() != folder.path("accidents").resolve():
        # the folder serves the accidents that were scored
        folder.write("accidents", joined)
    elif joined_path.exists():
        folder.record_file("accidents", rows=len(joined))
    path: Path = folder.write("units", scored)
    folder.write("black_spots", spots)
    rep = joined.attrs.get("report") or {}
    read = rep.get("read") if isinstance(rep.get("read"), dict) else None
    if read and read.get("source"):  # `join` keeps the reader's report in the table
        source = Path(str(read["source"]))
        folder.record_source(str(read.get("kind") or "accident"), source, report=read)
        with folder.edit_manifest() as m:
            m["sources"][-1]["join"] = {
                k: rep[k]
                for k in ("events", "matched", "matched_share", "by_match", "max_distance_m")
                if k in rep
            }
    rule = scored.attrs.get("rule", {})
    with folder.edit_manifest() as m:
        m["rule"] = rule
        m["period"] = rule.get("period")
        m["counts"].update(counts(scored, {"accidents": joined}, spots))
        m["extent"] = m.get("extent") or extent(scored)
        m["risk_inputs"] = {"accidents": file_record(folder.path("accidents"))}
    return path


def _text(value: Any) -> str:
    """A cell as text; missing (None, NaN, pd.NA) as empty."""
    import pandas as pd

    return "" if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) else str(value)


def print_summary(
    scored: Any,
    spots: Any,
    joined: Any,
    *,
    output: Path | None,
    black_spots: Path | None,
    top: int,
) -> None:
    """Colour distribution, top units and top sections on one screen."""
    from .. import risk

    rule = scored.attrs.get("rule", {})
    rep = scored.attrs.get("report", {})
    seg = scored["kind"] == "segment"
    table = Table(title="risk levels", show_edge=False)
    for col in ("level", "segments", "km", "% km", "intersections", "accidents", "EPDO"):
        table.add_column(col, justify="left" if col == "level" else "right")
    km_total = scored.loc[seg, "length_m"].sum() / 1000 or 1.0
    for level in RISK_LEVELS[::-1]:
        sel = scored["level"] == level
        km = scored.loc[sel & seg, "length_m"].sum() / 1000
        table.add_row(
            f"[{rule.get('colours', {}).get(level, 'white')}]{level}[/]",
            f"{int((sel & seg).sum()):,}",
            f"{km:.2f}",
            f"{100 * km / km_total:.1f}",
            f"{int((sel & ~seg).sum()):,}",
            f"{int(scored.loc[sel, 'crashes'].sum()):,}",
            f"{scored.loc[sel, 'epdo'].sum():,.0f}",
        )
    console.print(table)
    period_text = rule.get("period_label") or " – ".join(
        str(p)[:10] for p in rule.get("period", [])
    )
    console.print(
        f"period {period_text} "
        f"({rule.get('years', 0):.2f} years); {rep.get('used', 0):,} accidents scored, "
        f"{rep.get('unmatched', 0):,} unmatched, {rep.get('outside_period', 0):,} outside the "
        f"period, {rep.get('unknown_severity', 0):,} without severity"
    )
    console.print(f"rule: {rule.get('text', '')}", highlight=False)
    cov = scored.attrs.get("coverage", {})
    for warning in cov.get("warnings", []):
        console.print(f"[yellow]sparse data:[/] {warning}", highlight=False)
    if cov.get("warnings"):
        console.print(f"[yellow]remedy:[/] {cov.get('remedy', '')}", highlight=False)
    worst = risk.top(scored, n=top)
    if len(worst):
        why = risk.explain(scored, joined, unit_ids=list(worst.index))
        t = Table(title=f"top {len(worst)} units", show_edge=False)
        for col in ("unit", "kind", "name", "level", "accidents", "EPDO", "EB excess", "why"):
            t.add_column(col, overflow="fold")
        for uid, row in worst.iterrows():
            t.add_row(
                str(uid),
                str(row["kind"]),
                _text(row.get("name")),
                str(row["level"]),
                str(int(row["crashes"])),
                f"{row['epdo']:.0f}",
                f"{row['eb_excess']:.2f}",
                str(why.loc[uid, "why"]),
            )
        console.print(t)
    sections = spots.loc[spots["type"] == "section"].head(top) if len(spots) else spots
    prof = spots.attrs.get("profile", {})
    console.print(
        f"black spots ({prof.get('name')}, "
        f"{' – '.join(str(p)[:10] for p in spots.attrs.get('period', []))}): "
        f"{int((spots['type'] == 'point').sum()) if len(spots) else 0} points, "
        f"{int((spots['type'] == 'section').sum()) if len(spots) else 0} sections"
    )
    if len(sections):
        t = Table(title="top sections", show_edge=False)
        cols = ("spot", "road", "from-to m", "accidents", "in junctions", "K", "A", "EPDO", "what")
        for col in cols:
            t.add_column(col, overflow="fold")
        for _, row in sections.iterrows():
            t.add_row(
                str(row["spot_id"]),
                str(row["road"]) + (" (corridor)" if bool(row.get("corridor", False)) else ""),
                f"{row['start_m']:.0f}-{row['end_m']:.0f}",
                str(int(row["crashes"])),
                str(int(row.get("junction_crashes", 0))),
                str(int(row["K"])),
                str(int(row["A"])),
                f"{row['epdo']:.0f}",
                str(row["explanation"]),
            )
        console.print(t)
    if output is not None:
        console.print(f"wrote [bold]{output}[/]")
    if black_spots is not None:
        console.print(f"wrote [bold]{black_spots}[/]")
