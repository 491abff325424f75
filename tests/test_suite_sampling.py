"""`make test` samples the slow families; `--slow=sample` and `--slow=rest` partition the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLE = """
import pytest

def test_fast():
    pass

@pytest.mark.slow
@pytest.mark.parametrize("city", ["a", "b", "c"])
def test_city(city):
    pass

@pytest.mark.slow(family="build")
def test_build_one():
    pass

@pytest.mark.slow(family="build")
def test_build_two():
    pass

@pytest.mark.slow
def test_alone():
    pass
"""


class _Collected:
    """A plugin for an in-process run: the node ids it keeps after collection."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.ids = [item.nodeid for item in session.items]


def _collected(folder: Path, mode: str) -> list[str]:
    """The tests ``pytest --slow=MODE`` keeps in ``folder``, with this suite's conftest as its
    only plugin; run in this process (three interpreters importing the stack cost ~10 s)."""
    seen = _Collected()
    code = pytest.main(
        ["-p", "tests.conftest", "-c", "/dev/null", "--rootdir", str(folder), "--collect-only",
         "-q", "-p", "no:cacheprovider", "--import-mode=importlib", f"--slow={mode}",
         str(folder)],
        plugins=[seen],
    )  # fmt: skip
    assert code in (0, 5), f"pytest --slow={mode} exited with {code}"
    return [nodeid.split("::", 1)[1] for nodeid in seen.ids]


def test_sample_and_rest_partition_the_suite(tmp_path: Path) -> None:
    """One test of each family in the sample (the first collected), the others in the rest."""
    (tmp_path / "test_example.py").write_text(EXAMPLE, encoding="utf-8")
    everything = _collected(tmp_path, "all")
    sample = ["test_fast", "test_city[a]", "test_build_one", "test_alone"]
    rest = ["test_city[b]", "test_city[c]", "test_build_two"]
    assert sorted(everything) == sorted(sample + rest)
    assert _collected(tmp_path, "sample") == sample
    assert _collected(tmp_path, "rest") == rest
