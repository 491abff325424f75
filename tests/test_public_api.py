"""The public API is visible: every lazily imported name is listed, typed and importable."""

from __future__ import annotations

import ast
from pathlib import Path

import trafficunit as tu

INIT = Path(tu.__file__)


def _type_checking_names() -> set[str]:
    """Names imported under ``if TYPE_CHECKING:`` in ``trafficunit/__init__.py``."""
    tree = ast.parse(INIT.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    names |= {a.asname or a.name for a in stmt.names}
    return names


def test_every_lazy_name_is_public_typed_and_resolves() -> None:
    lazy = set(tu._LAZY)
    assert lazy <= set(tu.__all__), sorted(lazy - set(tu.__all__))
    assert lazy <= _type_checking_names(), sorted(lazy - _type_checking_names())
    assert set(tu.__all__) <= set(dir(tu))
    for name in tu.__all__:
        assert getattr(tu, name) is not None, name


def test_unknown_names_raise_attribute_error() -> None:
    try:
        tu.no_such_function  # noqa: B018
    except AttributeError as exc:
        assert "no_such_function" in str(exc)
    else:
        raise AssertionError("an unknown name resolved")
