"""The library↔server seam: the server imports the library's public names only, the library
never names the server, and the CLI finds the server through its entry point."""

from __future__ import annotations

import ast
import importlib
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import trafficunit
import trafficunit_server

LIBRARY = Path(trafficunit.__file__).resolve().parent
SERVER = Path(trafficunit_server.__file__).resolve().parent


def _library_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, module, name) of every ``from trafficunit... import name`` in the server."""
    out = []
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trafficunit"):
                where = str(path.relative_to(SERVER))
                out += [(where, node.lineno, node.module or "", a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                where = str(path.relative_to(SERVER))
                out += [
                    (where, node.lineno, a.name, "")
                    for a in node.names
                    if a.name.startswith("trafficunit")
                ]
    return out


def _public(module: str, name: str) -> bool:
    if any(part.startswith("_") for part in module.split(".")):
        return False
    if not name:
        return True
    if name.startswith("_"):
        return False
    mod = importlib.import_module(module)
    if (
        importlib.util.find_spec(f"{module}.{name}") is not None
        if hasattr(mod, "__path__")
        else False
    ):
        return True  # a submodule
    listed = getattr(mod, "__all__", None)
    return name in listed if listed is not None else hasattr(mod, name)


def test_the_server_imports_only_public_library_names() -> None:
    imports = _library_imports()
    private = [
        f"{f}:{line}: {module}.{name}"
        for f, line, module, name in imports
        if not _public(module, name)
    ]
    assert not private, "\n".join(private)


def test_the_library_never_names_the_server() -> None:
    modules = "|".join(p.stem for p in SERVER.glob("*.py") if p.stem != "__init__")
    pattern = re.compile(
        rf"\btrafficunit_server\b|\bserver\.({modules}|routers)\b|\bimport server\b"
    )
    named = [
        f"{path.relative_to(LIBRARY)}:{n}: {line.strip()}"
        for path in sorted(LIBRARY.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not named, "\n".join(named)


def test_the_cli_finds_the_server_through_its_entry_points() -> None:
    from trafficunit.cli.serve import ENTRY_POINT_GROUP, server_launcher

    group = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert {"launcher", "app", "rsgi"} <= set(group)
    launcher = server_launcher()
    assert launcher is group["launcher"].load()
    assert all(callable(getattr(launcher, f)) for f in ("check_settings", "port_holders", "run"))
    assert group["app"].load() is trafficunit_server.app.app_from_env
    assert group["rsgi"].load() is trafficunit_server.rsgi.rsgi_from_env


def test_without_the_server_the_cli_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from trafficunit._optional import MissingExtraError
    from trafficunit.cli import serve

    monkeypatch.setattr(serve, "entry_points", lambda **kw: ())
    with pytest.raises(MissingExtraError, match=r"pip install 'trafficunit\[server\]'"):
        serve.server_launcher()


def test_the_wheel_layout_has_no_top_level_server_package() -> None:
    """Installed, the server is ``trafficunit_server``; ``server`` is not importable from it."""
    assert trafficunit_server.__name__ == "trafficunit_server"
    assert importlib.util.find_spec("trafficunit_server.routers") is not None
    assert (SERVER / "static" / "i18n" / "zh-CN.json").is_file()
