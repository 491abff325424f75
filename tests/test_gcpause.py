"""The garbage collector paused during the heavy stages, and given back as it was."""

from __future__ import annotations

import gc
import inspect
import threading
import warnings

import pytest

import trafficunit as tu
from trafficunit._gcpause import gc_paused


@pytest.fixture(autouse=True)
def _collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_inside_and_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("stage failed")
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_threads_resume_it_when_the_last_one_ends() -> None:
    entered, release_a, a_done = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with gc_paused():
            entered.set()
            release_a.wait(30)
        a_done.set()

    t = threading.Thread(target=a)
    t.start()
    assert entered.wait(30)
    with gc_paused():
        release_a.set()
        assert a_done.wait(30)
        assert not gc.isenabled()  # the other stage ended, this one still runs
    t.join(30)
    assert gc.isenabled()


def test_the_stages_pause_it_and_keep_their_signatures(monkeypatch) -> None:
    seen = []
    roads = tu.read_network(tu.sample_network_path())
    real = tu.units._build

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(tu.units, "_build", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        units = tu.build_units(roads)
    assert seen == [False] and gc.isenabled() and len(units)
    for fn, first in ((tu.build_units, "roads"), (tu.assign, "units"), (tu.score, "units")):
        assert next(iter(inspect.signature(fn).parameters)) == first
