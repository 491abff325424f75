"""Shaping list responses: GeoJSON from pre-serialised features, or CSV."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely
from fastapi.responses import Response

from trafficunit.tiles import json_values

from .deps import ListQuery
from .errors import Unavailable
from .ledger.http import GEOJSON
from .store import DataStore, Table

_PROPS = ',"properties":{'


def with_properties(texts: np.ndarray, more: pd.DataFrame) -> np.ndarray:
    """Feature texts (UTF-8 bytes, as the store serialises them) with ``more``'s columns
    first in their properties (positional), assembled by Arrow kernels."""
    if not len(texts) or not len(more.columns):
        return texts
    arr = pa.array(texts.tolist(), pa.binary()).cast(pa.string())
    parts = pc.split_pattern(arr, _PROPS, max_splits=1)  # the id is JSON: no bare quote in it
    head, tail = pc.list_element(parts, 0), pc.list_element(parts, 1)
    pieces: list[Any] = [head, _PROPS]
    for col in more.columns:
        pieces += [json.dumps(str(col)) + ":", json_values(more[col].reset_index(drop=True)), ","]
    pieces[-1] = pc.if_else(pc.starts_with(tail, "}"), "", ",")  # none before empty properties
    out = pc.binary_join_element_wise(*pieces, tail, "")
    return np.asarray(out.cast(pa.binary()).to_numpy(zero_copy_only=False), dtype=object)


def served_table(store: DataStore, name: str) -> Table:
    """The folder's table ``name``; 503 naming the missing file when the folder has none."""
    table = store.table(name)
    if table is None:
        raise Unavailable(store.missing(name))
    return table


def list_response(
    table: Table,
    rows: np.ndarray,
    query: ListQuery,
    *,
    name: str,
    extra: Callable[[np.ndarray], pd.DataFrame | None] | None = None,
) -> Response:
    """A FeatureCollection (or CSV, by ``query.fmt``) of ``rows`` of ``table``, cut at
    ``query.limit``, with every property when ``query.full``.

    ``numberMatched`` / ``X-Total-Count`` give the count before the limit. ``extra(rows)``
    gives columns joined at answer time (positional like the rows: a unit's road chief),
    added to the CSV and to each feature's properties.
    """
    fmt, full = query.fmt, query.full
    matched = len(rows)
    rows = rows[: query.limit]
    more = extra(rows) if extra is not None else None
    headers = {"X-Total-Count": str(matched)}
    if fmt == "csv":
        frame = pd.DataFrame(table.frame.iloc[rows].drop(columns=[table.frame.geometry.name]))
        geoms = np.asarray(table.frame.geometry.array)[rows]
        if more is not None:
            frame = pd.concat([frame.reset_index(drop=True), more], axis=1)
        frame["geometry_wkt"] = shapely.to_wkt(geoms, rounding_precision=7)
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return Response(
            frame.to_csv(index=False), media_type="text/csv; charset=utf-8", headers=headers
        )
    texts = table.features_all if full and table.features_all is not None else table.features
    picked = texts[rows] if more is None else with_properties(texts[rows], more)
    head = f'{{"type":"FeatureCollection","numberMatched":{matched},"numberReturned":{len(rows)}'
    body = b"".join((head.encode(), b',"features":[', b",".join(picked.tolist()), b"]}"))
    return Response(body, media_type=GEOJSON, headers=headers)
