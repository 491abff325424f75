"""Generated city-size road networks for benchmarks (labelled as generated, not real data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def grid_city_osm(path: Path, *, n: int = 320, spacing_m: float = 90.0, seed: int = 0) -> int:
    """Write a perturbed n×n street grid as OSM XML; return the number of graph edges.

    Streets run the full width of the grid as ways of ~10 blocks, so ways have interior junction
    nodes as in real OSM data. Around Helsinki (60.17 N, 24.94 E); every 7th street is primary.
    """
    rng = np.random.default_rng(seed)
    lat0, lon0 = 60.10, 24.80
    dlat = spacing_m / 111_320.0
    dlon = spacing_m / (111_320.0 * np.cos(np.radians(lat0)))
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lat = lat0 + ii * dlat + rng.normal(0, dlat * 0.08, ii.shape)
    lon = lon0 + jj * dlon + rng.normal(0, dlon * 0.08, jj.shape)
    node_id = (ii * n + jj + 1).astype(np.int64)
    speeds = np.array(["30", "40", "50", "30 mph", "60"])
    with open(path, "w") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="bench">\n')
        for nid, la, lo in zip(node_id.ravel(), lat.ravel(), lon.ravel(), strict=True):
            f.write(f'<node id="{nid}" version="1" lat="{la:.7f}" lon="{lo:.7f}"/>\n')
        way = 1
        block = 10
        for axis in (0, 1):
            for k in range(n):
                cls = "primary" if k % 7 == 0 else "residential"
                for s in range(0, n - 1, block):
                    idx = np.arange(s, min(s + block, n - 1) + 1)
                    refs = node_id[k, idx] if axis == 0 else node_id[idx, k]
                    nds = "".join(f'<nd ref="{r}"/>' for r in refs)
                    sp = speeds[rng.integers(len(speeds))]
                    f.write(
                        f'<way id="{way}" version="1">{nds}<tag k="highway" v="{cls}"/>'
                        f'<tag k="maxspeed" v="{sp}"/><tag k="name" v="St {axis}-{k}"/></way>\n'
                    )
                    way += 1
        f.write("</osm>\n")
    return 2 * n * (n - 1)
