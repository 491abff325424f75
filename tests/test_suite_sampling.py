"""`make test` samples the slow families; `--slow=sample` and `--slow=rest` partition the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

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


def _collected(folder: Path, mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", "/dev/null",
         "--rootdir", str(folder), "--collect-only", "-q", "-p", "no:cacheprovider",
         f"--slow={mode}", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode in (0, 5), done.stdout + done.stderr
    return [line.split("::", 1)[1] for line in done.stdout.splitlines() if "::" in line]


def test_sample_and_rest_partition_the_suite(tmp_path: Path) -> None:
    """One test of each family in the sample (the first collected), the others in the rest."""
    (tmp_path / "test_example.py").write_text(EXAMPLE, encoding="utf-8")
    everything = _collected(tmp_path, "all")
    sample = ["test_fast", "test_city[a]", "test_build_one", "test_alone"]
    rest = ["test_city[b]", "test_city[c]", "test_build_two"]
    assert sorted(everything) == sorted(sample + rest)
    assert _collected(tmp_path, "sample") == sample
    assert _collected(tmp_path, "rest") == rest
