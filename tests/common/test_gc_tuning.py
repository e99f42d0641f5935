"""The run command's garbage-collector tuning (common.launcher.tune_gc)."""

from __future__ import annotations

import gc

import pytest

from common.launcher import GC_GEN0_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc():
    """Put the collector back as the test process had it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_startup_objects_are_frozen_and_the_young_generation_is_collected_less_often(restored_gc):
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() > 10_000  # the imports' objects: out of every later collection's reach
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    assert gc.isenabled()


def test_cycles_made_after_tuning_are_still_collected(restored_gc):
    tune_gc()

    class Node:
        pass

    collected = []
    for _ in range(100):
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: only the collector can free it
        a.__dict__["_"] = _Finalizer(collected)
    del a, b
    gc.collect()
    assert len(collected) == 100


class _Finalizer:
    def __init__(self, sink: list) -> None:
        self.sink = sink

    def __del__(self) -> None:
        self.sink.append(1)
