"""Explicit routes (ordered unit ids) checked for continuity and driving direction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd

from .graph import UnitGraph


@dataclass
class RouteCheck:
    """Result of :func:`check_route`: ``ok`` and one message per problem found."""

    ok: bool
    problems: list[str]
    length_m: float

    def __bool__(self) -> bool:
        return self.ok


def check_route(units: gpd.GeoDataFrame | UnitGraph, unit_ids: Sequence[str]) -> RouteCheck:
    """Check an explicit route (ordered unit ids) for continuity and driving direction.

    Consecutive units must touch (a segment and the intersection or segment at one of its ends;
    links inside a junction count as the junction), and a one-way segment must be entered at
    its first vertex and left at its last.

    Examples
    --------
    >>> import trafficunit as tu
    >>> units = tu.build_units(tu.read_network(tu.sample_network_path()), max_length_m=200)
    >>> r = tu.route(units, (24.9375, 60.1698), (24.9450, 60.1665))
    >>> tu.routing.check_route(units, r.unit_ids).ok
    True
    >>> tu.routing.check_route(units, [r.unit_ids[0], r.unit_ids[-1]]).ok
    False
    """
    graph = units if isinstance(units, UnitGraph) else UnitGraph(units)
    if len(unit_ids) == 0:
        return RouteCheck(False, ["the route has no units"], 0.0)
    rows = graph.unit_rows(unit_ids, "route")
    problems: list[str] = []
    # the node sequence: each segment contributes (entry node, exit node) in driving order
    prev_exit: set[int] | None = None
    prev_id = ""
    for k, r in enumerate(rows.tolist()):
        uid = graph.ids[r]
        if graph.is_int[r] or graph.internal[r]:
            j = r if graph.is_int[r] else int(graph.row_of[graph.junction[r]])
            node = int(graph.int_node[j])
            if prev_exit is not None and node not in prev_exit:
                problems.append(f"step {k}: {uid} does not touch {prev_id}")
            prev_exit, prev_id = {node}, uid
            continue
        a, b = int(graph.from_node[r]), int(graph.to_node[r])
        if prev_exit is None:
            # the first segment: direction from the next unit
            entry_opts = {a, b}
        else:
            entry_opts = prev_exit & {a, b}
            if not entry_opts:
                problems.append(f"step {k}: {uid} does not touch {prev_id}")
                entry_opts = {a, b}
        exits: set[int] = set()
        if a in entry_opts:
            exits.add(b)
        if b in entry_opts and graph.backward_ok[r]:
            exits.add(a)
        if not exits:
            problems.append(f"step {k}: {uid} is one-way and would be driven against its direction")
            exits = {a, b}
        prev_exit, prev_id = exits, uid
    # one-way direction on the first segment depends on where the route goes next
    length = float(graph.length[rows].sum())
    return RouteCheck(not problems, problems, length)
