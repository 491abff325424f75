"""Re-segmentation: the new units, the lineage table, versions (:func:`resegment`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from .._errors import ValidationError
from .._validate import metric_crs
from ..settings import JoinSettings, LineageSettings, UnitSettings
from .pairs import (
    CHANGE_KINDS,
    LINEAGE_COLUMNS,
    _as_timestamp,
    _changed_attributes,
    _intersection_pairs,
    _kinds,
    _network_units,
    _radius,
    _segment_pairs,
    _split_history,
    _units_table,
    _ways,
)
from .reassignment import reassign

# --------------------------------------------------------------------------------------------
# result


@dataclass
class Resegmented:
    """What :func:`resegment` returns; unpacks as ``new_units, lineage``.

    Attributes
    ----------
    units
        The new units (the data contract of ``tu.build_units``) with ``valid_from`` and
        ``valid_to``.
    lineage
        One row per relation between an old and a new unit (:data:`LINEAGE_COLUMNS`).
    history
        Every unit version so far: the new units and the retired ones (``valid_to`` set),
        indexed by position, with a ``unit_id`` column. Pass it as ``old_units`` next time.
    accidents, hazards
        The joined events re-assigned to the new units (``None`` when not given).
    summary
        Counts of what changed (:func:`lineage_summary`), plus the events' re-assignment.
    """

    units: gpd.GeoDataFrame
    lineage: pd.DataFrame
    history: gpd.GeoDataFrame
    accidents: gpd.GeoDataFrame | None = None
    hazards: gpd.GeoDataFrame | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.units, self.lineage))

    def __repr__(self) -> str:
        return f"Resegmented(\n{self.summary_text()}\n)"

    def summary_text(self) -> str:
        """The summary as a few lines of plain text."""
        return _summary_text(self.summary)


def lineage_summary(lineage: pd.DataFrame) -> dict[str, Any]:
    """Counts of a lineage table: old and new units by change kind, attribute changes."""
    lin = lineage
    out: dict[str, Any] = {}
    for uk in ("segment", "intersection"):
        sub = lin.loc[lin["unit_kind"] == uk]
        row: dict[str, int] = {}
        for kind in CHANGE_KINDS:
            s = sub.loc[sub["kind"] == kind]
            if kind in ("added", "merged"):
                row[kind] = int(s["new_id"].nunique())
            else:
                row[kind] = int(s["old_id"].nunique())
        out[uk] = row
    same = lin.loc[lin["kind"] == "unchanged", "changed"].fillna("")
    attrs = same[same != ""].str.split(";").explode()
    out["attribute_changes"] = {str(k): int(v) for k, v in attrs.value_counts().items()}
    out["units_with_attribute_changes"] = int((same != "").sum())
    out["old_units"] = int(lin["old_id"].nunique())
    out["new_units"] = int(lin["new_id"].nunique())
    as_of = lin["as_of"].dropna()
    out["as_of"] = as_of.iloc[0].isoformat() if len(as_of) else None
    return out


def change_lines(summary: dict[str, Any]) -> list[str]:
    """Sentences on attribute changes and on where the events went (for summaries and the CLI)."""
    lines = []
    if summary.get("attribute_changes"):
        lines.append(
            f"{summary['units_with_attribute_changes']:,} unchanged units with new attributes: "
            + ", ".join(f"{k} {v:,}" for k, v in summary["attribute_changes"].items())
        )
    for what in ("accidents", "hazards"):
        rep = summary.get(what)
        if rep:
            lines.append(
                f"{what}: {rep['events']:,} events; kept {rep['kept']:,}, moved through the "
                f"lineage {rep['lineage']:,}, joined again {rep['spatial']:,} (and "
                f"{rep['retried']:,} unmatched before tried again); on a unit before "
                f"{rep['matched_before']:,}, after {rep['matched_after']:,}"
                + (f"; lost {rep['lost']:,}" if rep.get("lost") else "")
            )
    return lines


def _summary_text(summary: dict[str, Any]) -> str:
    lines = [
        f"re-segmentation as of {summary.get('as_of')}: "
        f"{summary.get('old_units', 0):,} old units -> {summary.get('new_units', 0):,} new"
    ]
    for uk in ("segment", "intersection"):
        row = summary.get(uk, {})
        lines.append(f"  {uk}s: " + ", ".join(f"{row.get(k, 0):,} {k}" for k in CHANGE_KINDS))
    lines += [f"  {line}" for line in change_lines(summary)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# resegment


def resegment(
    old_units: gpd.GeoDataFrame,
    new_network: Any,
    *,
    accidents: gpd.GeoDataFrame | None = None,
    hazards: gpd.GeoDataFrame | None = None,
    as_of: Any = None,
    max_length_m: float | None = None,
    junction_merge_m: float | None = None,
    split_on: Sequence[str] | None = None,
    crs: Any = None,
    unit_settings: UnitSettings | None = None,
    settings: LineageSettings | None = None,
    join_settings: JoinSettings | None = None,
    progress: bool = False,
) -> Resegmented:
    """Rebuild the units of an edited network and relate them to the old ones.

    Parameters
    ----------
    old_units
        The previous units (``tu.build_units``), or the ``history`` of a previous
        re-segmentation (rows with ``valid_to`` set are carried over as retired).
    new_network
        The edited road network: road lines (``tu.read_network``), a path to read them from,
        or units already built from it.
    accidents, hazards
        Events joined to the old units (``tu.assign``) to re-assign to the new ones.
    as_of
        When the new units take effect (date or time; naive times are UTC). Default: now.
    max_length_m, junction_merge_m, split_on, crs, unit_settings
        Options of :func:`trafficunit.build_units`; use those the old units were built with
        (unchanged units keep their ids only then). ``crs`` is also the metric CRS of the
        comparison (default: the UTM zone of the old units).
    settings
        Matching options (:class:`~trafficunit.settings.LineageSettings`).
    join_settings
        Options of the spatial fallback join (:class:`~trafficunit.settings.JoinSettings`).
    progress
        Show the build's progress bar.

    Returns
    -------
    Resegmented
        Unpacks as ``new_units, lineage``; also holds ``history``, the re-assigned
        ``accidents`` and ``hazards`` and a ``summary``.
    """
    cfg = settings or LineageSettings()
    when = _as_timestamp(as_of)
    old_all = _units_table(old_units, "old units")
    old, retired_before = _split_history(old_all)
    if not old.index.is_unique:
        raise ValidationError("old units have duplicate unit_id values among current units")
    new = _network_units(
        new_network,
        max_length_m=max_length_m,
        junction_merge_m=junction_merge_m,
        split_on=split_on,
        crs=crs,
        unit_settings=unit_settings,
        progress=progress,
    )
    new = new.drop(columns=[c for c in ("valid_from", "valid_to") if c in new.columns])
    mcrs = metric_crs(old, crs)
    lineage = _lineage(old, new, mcrs, cfg, when)

    # versions
    if "valid_from" in old.columns:
        prev_from = pd.to_datetime(old["valid_from"], utc=True)
    else:
        prev_from = pd.Series(pd.NaT, index=old.index, dtype="datetime64[ns, UTC]")
    kept = new.index.isin(old.index)
    valid_from = pd.Series(when, index=new.index, dtype="datetime64[ns, UTC]")
    valid_from = valid_from.where(~kept, prev_from.reindex(new.index))
    new = new.copy()
    new["valid_from"] = valid_from
    new["valid_to"] = pd.Series(pd.NaT, index=new.index, dtype="datetime64[ns, UTC]")
    if len(prev_from.dropna()) and (prev_from.dropna() > when).any():
        raise ValidationError(
            f"as_of {when.isoformat()} is before some old units' valid_from; give a later as_of"
        )

    hist = _history_table(old, new, retired_before, when)
    summary = lineage_summary(lineage)
    summary["old_km"] = round(float(old.loc[old["kind"] == "segment", "length_m"].sum()) / 1e3, 3)
    summary["new_km"] = round(float(new.loc[new["kind"] == "segment", "length_m"].sum()) / 1e3, 3)
    acc_out = hz_out = None
    jcfg = join_settings or JoinSettings()
    if accidents is not None:
        acc_out = reassign(accidents, new, lineage, crs=mcrs, settings=cfg, join_settings=jcfg)
        summary["accidents"] = acc_out.attrs["report"]
    if hazards is not None:
        hz_out = reassign(hazards, new, lineage, crs=mcrs, settings=cfg, join_settings=jcfg)
        summary["hazards"] = hz_out.attrs["report"]
    lineage.attrs = {"summary": summary}
    new.attrs = {**old_units.attrs, **new.attrs, "lineage": summary}
    return Resegmented(new, lineage, hist, acc_out, hz_out, summary)


def _lineage(
    old: gpd.GeoDataFrame,
    new: gpd.GeoDataFrame,
    mcrs: pyproj.CRS,
    cfg: LineageSettings,
    when: pd.Timestamp,
) -> pd.DataFrame:
    same_ids = old.index.intersection(new.index)
    parts: list[pd.DataFrame] = []
    same_len = old["length_m"].reindex(same_ids).to_numpy(dtype=float)
    parts.append(
        pd.DataFrame(
            {
                "old_id": same_ids.to_numpy(dtype=object),
                "new_id": same_ids.to_numpy(dtype=object),
                "kind": "unchanged",
                "unit_kind": old["kind"].reindex(same_ids).to_numpy(dtype=object),
                "share": 1.0,
                "share_new": 1.0,
                "overlap_m": same_len,
                "distance_m": 0.0,
                "changed": _changed_attributes(old, new, same_ids, cfg.compare_attributes),
            }
        )
    )
    old_ch = old.loc[~old.index.isin(new.index)]
    new_ch = new.loc[~new.index.isin(old.index)]
    old_m = old_ch.geometry.to_crs(mcrs).to_numpy() if len(old_ch) else np.zeros(0, object)
    new_m = new_ch.geometry.to_crs(mcrs).to_numpy() if len(new_ch) else np.zeros(0, object)
    for uk in ("segment", "intersection"):
        o_sel = np.flatnonzero((old_ch["kind"] == uk).to_numpy())
        n_sel = np.flatnonzero((new_ch["kind"] == uk).to_numpy())
        if uk == "segment":
            pairs = _segment_pairs(
                old_m[o_sel],
                new_m[n_sel],
                _ways(old_ch.iloc[o_sel]),
                _ways(new_ch.iloc[n_sel]),
                cfg,
            )
        else:
            old_pts = shapely.centroid(old_m[o_sel]) if len(o_sel) else old_m[o_sel]
            new_pts = shapely.centroid(new_m[n_sel]) if len(n_sel) else new_m[n_sel]
            pairs = _intersection_pairs(
                old_pts,
                new_pts,
                _radius(old_ch.iloc[o_sel]),
                _radius(new_ch.iloc[n_sel]),
                cfg,
            )
        old_ids = old_ch.index.to_numpy(dtype=object)[o_sel]
        new_ids = new_ch.index.to_numpy(dtype=object)[n_sel]
        kinds = _kinds(pairs.old, pairs.new, len(o_sel), len(n_sel))
        parts.append(
            pd.DataFrame(
                {
                    "old_id": old_ids[pairs.old],
                    "new_id": new_ids[pairs.new],
                    "kind": kinds,
                    "unit_kind": uk,
                    "share": pairs.share,
                    "share_new": pairs.share_new,
                    "overlap_m": pairs.overlap_m,
                    "distance_m": pairs.distance_m,
                    "changed": "",
                }
            )
        )
        removed = np.setdiff1d(np.arange(len(o_sel)), pairs.old)
        added = np.setdiff1d(np.arange(len(n_sel)), pairs.new)
        parts.append(
            pd.DataFrame(
                {
                    "old_id": old_ids[removed],
                    "new_id": None,
                    "kind": "removed",
                    "unit_kind": uk,
                    "share": 0.0,
                    "share_new": np.nan,
                    "overlap_m": 0.0,
                    "distance_m": np.nan,
                    "changed": "",
                }
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "old_id": None,
                    "new_id": new_ids[added],
                    "kind": "added",
                    "unit_kind": uk,
                    "share": np.nan,
                    "share_new": 0.0,
                    "overlap_m": 0.0,
                    "distance_m": np.nan,
                    "changed": "",
                }
            )
        )
    lin = pd.concat([p for p in parts if len(p)], ignore_index=True)
    if not len(lin):
        lin = pd.DataFrame({c: pd.Series(dtype=object) for c in LINEAGE_COLUMNS[:-1]})
    for c in ("old_id", "new_id", "kind", "unit_kind", "changed"):
        lin[c] = lin[c].astype("string")
    for c in ("share", "share_new", "overlap_m", "distance_m"):
        lin[c] = lin[c].astype(float)
    lin["as_of"] = pd.Series(when, index=lin.index, dtype="datetime64[ns, UTC]")
    order = np.lexsort(
        (
            lin["new_id"].fillna("").to_numpy(dtype=object),
            lin["old_id"].fillna("~").to_numpy(dtype=object),
        )
    )
    lin = lin.iloc[order].reset_index(drop=True)
    return lin[list(LINEAGE_COLUMNS)]


def _history_table(
    old: gpd.GeoDataFrame,
    new: gpd.GeoDataFrame,
    retired_before: gpd.GeoDataFrame | None,
    when: pd.Timestamp,
) -> gpd.GeoDataFrame:
    retiring = old.loc[~old.index.isin(new.index)].copy()
    if "valid_from" not in retiring.columns:
        retiring["valid_from"] = pd.Series(
            pd.NaT, index=retiring.index, dtype="datetime64[ns, UTC]"
        )
    retiring["valid_to"] = pd.Series(when, index=retiring.index, dtype="datetime64[ns, UTC]")
    frames = [new]
    for f in (retiring, retired_before):
        if f is not None and len(f):
            f = f.to_crs(new.crs) if f.crs != new.crs else f
            frames.append(f)
    hist = pd.concat(frames)
    hist = gpd.GeoDataFrame(hist, geometry=hist.geometry.name, crs=new.crs)
    hist["valid_from"] = pd.to_datetime(hist["valid_from"], utc=True)
    hist["valid_to"] = pd.to_datetime(hist["valid_to"], utc=True)
    hist = hist.reset_index()
    hist.attrs = {}
    return hist
