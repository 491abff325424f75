"""Shaping list responses: GeoJSON from pre-serialised features, or CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely
from fastapi.responses import Response

from .store import Table


def list_response(
    table: Table, rows: np.ndarray, *, fmt: str, limit: int, name: str, full: bool = False
) -> Response:
    """A FeatureCollection (or CSV) of ``rows`` of ``table``, cut at ``limit``.

    ``numberMatched`` / ``X-Total-Count`` give the count before the limit.
    """
    matched = len(rows)
    rows = rows[:limit]
    headers = {"X-Total-Count": str(matched)}
    if fmt == "csv":
        frame = pd.DataFrame(table.frame.iloc[rows].drop(columns=[table.frame.geometry.name]))
        geoms = np.asarray(table.frame.geometry.array)[rows]
        frame["geometry_wkt"] = shapely.to_wkt(geoms, rounding_precision=7)
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return Response(
            frame.to_csv(index=False), media_type="text/csv; charset=utf-8", headers=headers
        )
    texts = table.features_all if full and table.features_all is not None else table.features
    head = f'{{"type":"FeatureCollection","numberMatched":{matched},"numberReturned":{len(rows)}'
    body = b"".join((head.encode(), b',"features":[', b",".join(texts[rows].tolist()), b"]}"))
    return Response(body, media_type="application/geo+json", headers=headers)
