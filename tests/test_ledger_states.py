"""Hazard state names live in ``trafficunit/ledger/lifecycle.py`` only: SQL, the schema's CHECK
and the server's ledger code build on its constants, so a new state is one edit there."""

from __future__ import annotations

import re
from pathlib import Path

from trafficunit.ledger import lifecycle as lc
from trafficunit.ledger._db import _v1

ROOT = Path(__file__).resolve().parents[1]
#: Files that still spell states as words for their own reasons (a receipt's wording, a site
#: file's order steps): named here so a new file with a literal fails this test.
_WORDING = {"trafficunit/ledger/public.py", "trafficunit/ledger/sitefile.py"}
#: Files of the investigations' own state machine (open → investigated → closed): their
#: "closed" is not a hazard state.
_INVESTIGATIONS = {
    "trafficunit/ledger/_invtables.py",
    "trafficunit/ledger/_kpitree.py",
    "server/routers/investigations.py",
}


def test_no_state_literal_outside_the_lifecycle() -> None:
    quoted = re.compile("['\"](" + "|".join(lc.STATES) + ")['\"]")
    files = [
        *sorted((ROOT / "trafficunit" / "ledger").glob("*.py")),
        *sorted((ROOT / "server" / "ledger").glob("*.py")),
        *(ROOT / "server" / "routers" / f"{n}.py" for n in ("hazards", "investigations")),
    ]
    found = []
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel == "trafficunit/ledger/lifecycle.py" or rel in _WORDING:
            continue
        previous = ""
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            doctest = line.lstrip().startswith((">>>", "...")) or previous.startswith(">>>")
            previous = line.lstrip() or previous
            names = set(quoted.findall(line)) - ({"closed"} if rel in _INVESTIGATIONS else set())
            if names and not doctest:
                found.append(f"{rel}:{no}: {line.strip()}")
    assert not found, "state names outside lifecycle.py:\n" + "\n".join(found)


def test_schema_check_lists_the_lifecycle_states() -> None:
    for dialect in ("sqlite", "postgresql"):
        hazards = next(s for s in _v1(dialect) if s.startswith("CREATE TABLE hazards "))
        check = re.search(r"CHECK \(state IN \(([^)]*)\)\)", hazards)
        assert check is not None
        assert re.findall(r"'(\w+)'", check.group(1)) == list(lc.STATES)


def test_reopen_state_and_sql_lists_follow_the_transitions() -> None:
    assert lc.TRANSITIONS[(lc.CLOSED, lc.REOPEN_STATE)] == "reopen"
    assert lc.sql_in(lc.OVERDUE_STATES) == "('assigned', 'rectifying')"
    assert "h.deadline < ?" in lc.overdue_sql("h.")


def test_step_keywords_are_checked_as_a_signature_checks_them() -> None:
    import pytest

    from trafficunit.ledger.workzones import works_columns

    step = lc.checked_step({"actor": "ann", "role": "supervisor", "comment": "ok"})
    assert step == {
        "actor": "ann",
        "role": "supervisor",
        "comment": "ok",
        "expected_version": None,
        "now": None,
    }
    with pytest.raises(TypeError, match="'actr'"):
        lc.checked_step({"actr": "ann", "role": "supervisor"})
    with pytest.raises(TypeError, match="missing required keyword argument 'role'"):
        lc.checked_step({"actor": "ann"})
    assert works_columns({"lanes_taken": 2, "night_works": True}) == {
        "lanes_taken": 2,
        "night_works": 1,
    }
    with pytest.raises(TypeError, match="'lanes'"):
        works_columns({"lanes": 2})  # type: ignore[typeddict-unknown-key]
