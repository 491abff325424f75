"""The array helpers of ``build_units`` against plain references (sorting, Python loops).

The fast paths (hashing instead of sorting 16-byte keys, ids ordered by their hashes, joins
sorted on integer ranks, a junction's lead segment by grouped minima) must give exactly what
the straightforward versions give: unit ids, adjacency and attributes depend on them.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trafficunit import _hash
from trafficunit._unit_arrays import (
    _id_order,
    _join_strings,
    _key_positions,
    _node_codes,
    _node_ids,
    _split_even,
)
from trafficunit._unit_stages import _lead_segments

coords = st.integers(min_value=-3, max_value=40).flatmap(
    lambda n: arrays(
        np.float64,
        (max(n, 0), 2),
        elements=st.one_of(
            st.floats(-5.0, 5.0, allow_nan=False),
            st.floats(-1e7, 1e7, allow_nan=False),
            st.sampled_from([0.0, 0.25, 0.5, -0.5, 1.0]),
        ),
    )
)


def _reference_nodes(xy: np.ndarray, snap: float) -> tuple[np.ndarray, np.ndarray]:
    q = np.floor(xy / snap + 0.5).astype(np.int64)
    keys = np.ascontiguousarray(q).view(np.dtype((np.void, 16))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return inverse.ravel(), first


@settings(max_examples=200, deadline=None)
@given(xy=coords, snap=st.sampled_from([0.5, 1.0, 1e-3]))
def test_node_ids_number_nodes_as_sorting_their_keys(xy: np.ndarray, snap: float) -> None:
    if len(xy) == 0:
        return
    xy = np.concatenate([xy, xy[::2]])  # repeated vertices
    node, first = _node_ids(xy, snap)
    ref_node, ref_first = _reference_nodes(xy, snap)
    assert np.array_equal(node, ref_node)
    assert np.array_equal(first, ref_first)


@settings(max_examples=200, deadline=None)
@given(xy=coords, snap=st.sampled_from([0.5, 1.0]))
def test_node_codes_tell_the_same_nodes_apart(xy: np.ndarray, snap: float) -> None:
    xy = np.concatenate([xy, xy[::3]])
    codes, first = _node_codes(xy, snap)
    ref_node, ref_first = _reference_nodes(xy, snap) if len(xy) else (codes, first)
    # the same partition of the vertices, numbered by first appearance
    assert len(first) == len(ref_first)
    assert np.array_equal(codes[:, None] == codes[None, :], ref_node[:, None] == ref_node[None, :])
    assert np.array_equal(np.sort(first), np.sort(ref_first))
    assert np.array_equal(codes[first], np.arange(len(first)))


def test_node_codes_beyond_one_int64_key() -> None:
    xy = np.array([[-4e18, 4e18], [4e18, -4e18], [-4e18, 4e18], [0.0, 0.0]])
    codes, first = _node_codes(xy, 1.0)
    assert codes.tolist() == [0, 1, 0, 2]
    assert first.tolist() == [0, 1, 3]


@settings(max_examples=100, deadline=None)
@given(
    seg=arrays(np.uint64, st.integers(0, 30), elements=st.integers(0, 2**64 - 1)),
    inter=arrays(np.uint64, st.integers(0, 30), elements=st.integers(0, 2**64 - 1)),
)
def test_id_order_sorts_ids_as_text(seg: np.ndarray, inter: np.ndarray) -> None:
    ids = np.r_[_hash.to_ids("S", seg), _hash.to_ids("I", inter)]
    order = _id_order(seg, inter)
    if len(set(ids.tolist())) < len(ids):
        assert order is None
        return
    assert order is not None
    assert ids[order].tolist() == sorted(ids.tolist())


def test_to_ids_formats_crockford_digits() -> None:
    h = np.array([0, 1, 31, 32, 2**64 - 1, 0x0123456789ABCDEF], dtype=np.uint64)
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    expected = [
        "S" + "".join(alphabet[(int(v) >> (5 * (11 - i))) & 31] for i in range(12)) for v in h
    ]
    assert _hash.to_ids("S", h).tolist() == expected
    assert _hash.to_ids("I", np.zeros(0, dtype=np.uint64)).tolist() == []


words = st.one_of(st.none(), st.sampled_from(["", "a", "b", "ab", "B", "ä", "a;b", "10", "9"]))


@settings(max_examples=200, deadline=None)
@given(data=st.lists(st.tuples(st.integers(0, 5), words), max_size=40))
def test_join_strings_sorted_unique_per_key(data: list[tuple[int, str | None]]) -> None:
    n = 6
    keys = np.array([k for k, _ in data], dtype=np.int64)
    values = np.array([v for _, v in data], dtype=object)
    expected: list[str | None] = []
    for k in range(n):
        got = sorted({v for kk, v in data if kk == k and v}, key=lambda s: s.encode())
        expected.append(";".join(got) if got else None)
    assert _join_strings(keys, values, n).to_pylist() == expected
    # with ranks in the values' text order (equal exactly for equal values)
    distinct = sorted({v for _, v in data if v is not None}, key=lambda s: s.encode())
    ranks = np.array([distinct.index(v) if v is not None else -1 for _, v in data], np.int64)
    assert _join_strings(keys, pa.array(values, pa.string()), n, ranks=ranks).to_pylist() == (
        expected
    )


@settings(max_examples=200, deadline=None)
@given(
    ends=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 7)), max_size=30),
    rank=arrays(np.int64, 8, elements=st.integers(0, 3)),
    length=arrays(np.float64, 8, elements=st.sampled_from([0.0, 1.5, 20.0, 200.0])),
)
def test_lead_segment_is_the_first_of_a_full_sort(
    ends: list[tuple[int, int]], rank: np.ndarray, length: np.ndarray
) -> None:
    n_int = 5
    ie_cl = np.array([c for c, _ in ends], dtype=np.int64)
    ie_seg = np.array([s for _, s in ends], dtype=np.int64)
    expected = np.full(n_int, -1, dtype=np.int64)
    if len(ie_seg):
        o = np.lexsort((ie_seg, -length[ie_seg], rank[ie_seg], ie_cl))
        first_of = o[np.r_[True, ie_cl[o][1:] != ie_cl[o][:-1]]]
        expected[ie_cl[first_of]] = ie_seg[first_of]
    assert np.array_equal(_lead_segments(ie_cl, ie_seg, rank, length, n_int), expected)


pairs = st.one_of(st.integers(-50, 50), st.sampled_from([-(2**62), 2**62]))


@settings(max_examples=100, deadline=None)
@given(
    keys=st.integers(0, 20).flatmap(lambda n: arrays(np.int64, (n, 2), elements=pairs)),
    query=st.integers(0, 20).flatmap(lambda n: arrays(np.int64, (n, 2), elements=pairs)),
)
def test_key_positions_find_equal_pairs(keys: np.ndarray, query: np.ndarray) -> None:
    keys = np.unique(keys, axis=0) if len(keys) else keys
    rows = {tuple(k): i for i, k in enumerate(keys.tolist())}
    expected = [rows.get(tuple(q), -1) for q in query.tolist()]
    assert _key_positions(keys, query).tolist() == expected


def test_the_same_way_twice_gets_suffixed_sorted_ids() -> None:
    """Equal ids (a way drawn twice) take the text path: suffixed, unique, sorted as text."""
    import geopandas as gpd
    import shapely

    import trafficunit as tu

    lines = [
        shapely.LineString([(0, 0), (100, 0), (200, 0)]),
        shapely.LineString([(100, -100), (100, 0), (100, 100)]),
        shapely.LineString([(100, -100), (100, 0), (100, 100)]),  # the same way again
    ]
    roads = gpd.GeoDataFrame(
        {"osm_id": [1, 2, 2], "highway": ["residential"] * 3}, geometry=lines, crs=3067
    )
    units = tu.build_units(roads, max_length_m=500)
    ids = units.index.tolist()
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids, key=lambda s: s.encode())
    suffixed = [i for i in ids if "-" in i]
    assert suffixed and all(i.rsplit("-", 1)[0] in ids for i in suffixed)
    # every neighbour named is a unit of the table
    named = {n for v in units["neighbours"].dropna() for n in v.split(";")}
    assert named <= set(ids)


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.floats(5.0, 900.0), min_size=1, max_size=12),
    max_length=st.sampled_from([50.0, 200.0]),
    seed=st.integers(0, 2**16),
)
def test_split_even_cuts_each_line_as_alone(
    lengths: list[float], max_length: float, seed: int
) -> None:
    """A line's pieces do not depend on the other lines of the call (a partitioned build
    sees other lines around it): equal to those of the line alone, ``ceil(L / max)`` of
    them, of equal length, along the line; a line not cut comes back as it is."""
    import shapely

    rng = np.random.default_rng(seed)
    geoms = np.empty(len(lengths), dtype=object)
    for i, length in enumerate(lengths):  # zigzags of random steps, scaled to the length
        steps = rng.normal(size=(int(rng.integers(1, 8)), 2))
        xy = np.cumsum(np.r_[rng.uniform(-1e5, 1e5, (1, 2)), steps], axis=0)
        line = shapely.LineString(xy)
        geoms[i] = shapely.affinity.scale(line, length / line.length, length / line.length)
    pieces, chain, k, n = _split_even(geoms, max_length)
    for i, g in enumerate(geoms):
        mine = pieces[chain == i]
        assert k[chain == i].tolist() == list(range(len(mine))) and len(mine) == n[chain == i][0]
        assert len(mine) == max(1, int(np.ceil(g.length / max_length - 1e-9)))
        alone = _split_even(geoms[i : i + 1], max_length)[0]
        assert shapely.equals_exact(mine, alone, 0).all()
        if len(mine) == 1:
            assert mine[0] is g
        else:
            np.testing.assert_allclose(shapely.length(mine), g.length / len(mine), rtol=1e-9)
            ends = [shapely.get_coordinates(p)[[0, -1]] for p in mine]  # end to end, along g
            assert all((a[1] == b[0]).all() for a, b in zip(ends, ends[1:], strict=False))
            xy = shapely.get_coordinates(g)
            assert (ends[0][0] == xy[0]).all() and (ends[-1][1] == xy[-1]).all()
