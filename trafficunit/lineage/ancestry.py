"""A unit followed through any number of lineage tables (:func:`history`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .._errors import ValidationError

# --------------------------------------------------------------------------------------------
# history


def history(
    unit_id: str,
    lineage: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    units_history: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Follow one unit back to its ancestors and forward to its descendants.

    Parameters
    ----------
    unit_id
        The unit to follow.
    lineage
        One lineage table or several (one per re-segmentation, any order); they are
        concatenated and read as one graph through time.
    units_history
        The ``history`` table of the latest :class:`Resegmented`: adds each version's
        ``valid_from``/``valid_to`` and attributes.

    Returns
    -------
    pandas.DataFrame
        One row per lineage relation reachable from ``unit_id`` (excluding ``unchanged``
        self-relations), ordered by ``as_of``, with ``direction`` ("ancestor" or
        "descendant") and ``step`` (1 for the unit's own relations, 2 for the next ...).
        With ``units_history``, also ``old_valid_from``/``old_valid_to`` (the old version,
        retired at ``as_of``) and ``new_valid_from``/``new_valid_to`` (the new version).
    """
    tables = [lineage] if isinstance(lineage, pd.DataFrame) else list(lineage)
    if not tables:
        raise ValidationError("give at least one lineage table")
    lin = pd.concat(tables, ignore_index=True)
    missing = [c for c in ("old_id", "new_id", "kind", "as_of") if c not in lin.columns]
    if missing:
        raise ValidationError(f"not a lineage table: columns {missing} are missing")
    lin = lin.loc[lin["kind"] != "unchanged"].copy()
    lin["as_of"] = pd.to_datetime(lin["as_of"], utc=True)
    rows: list[pd.DataFrame] = []
    for direction, here, there in (
        ("ancestor", "new_id", "old_id"),
        ("descendant", "old_id", "new_id"),
    ):
        frontier = {unit_id}
        seen = {unit_id}
        # the unit's own time: ancestors happened before the versions that follow
        step = 0
        while frontier:
            step += 1
            hit = lin.loc[lin[here].isin(frontier)].copy()
            if not len(hit):
                break
            hit["direction"] = direction
            hit["step"] = step
            rows.append(hit)
            nxt = set(hit[there].dropna().astype(str)) - seen
            seen |= nxt
            frontier = nxt
    if rows:
        out = pd.concat(rows, ignore_index=True).drop_duplicates(
            subset=["old_id", "new_id", "as_of", "direction"]
        )
        out = out.sort_values(["as_of", "direction", "step"], kind="stable").reset_index(drop=True)
    else:
        out = pd.DataFrame(columns=[*lin.columns, "direction", "step"])
    if units_history is not None:
        hist = units_history if "unit_id" in units_history.columns else units_history.reset_index()
        for side, col, when in (("old", "old_id", "valid_to"), ("new", "new_id", "valid_from")):
            v = hist[["unit_id", "valid_from", "valid_to"]].copy()
            v[when] = pd.to_datetime(v[when], utc=True)
            v["as_of"] = v[when]
            v = v.dropna(subset=["as_of"]).drop_duplicates(["unit_id", "as_of"])
            v = v.rename(
                columns={
                    "unit_id": col,
                    "valid_from": f"{side}_valid_from",
                    "valid_to": f"{side}_valid_to",
                }
            )
            out = out.merge(v, on=[col, "as_of"], how="left")
    return out
