"""The run command's garbage-collector tuning (common.launcher.tune_gc)."""

from __future__ import annotations

import gc

import pytest

from common.launcher import GC_GEN0_THRESHOLD, tune_gc

CYCLES = 100


@pytest.fixture
def restored_gc():
    """Put the collector back as the test process had it."""
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()


@pytest.mark.costly  # a full collection of the whole test process
def test_startup_objects_are_frozen_and_the_young_generation_is_collected_less_often(restored_gc):
    _, gen1, gen2 = gc.get_threshold()
    tune_gc()
    assert gc.get_freeze_count() > 10_000  # the imports' objects: out of every later collection's reach
    assert gc.get_threshold() == (GC_GEN0_THRESHOLD, gen1, gen2)
    assert gc.isenabled()


@pytest.mark.costly  # a full collection of the whole test process
def test_cycles_made_after_tuning_are_collected_with_no_explicit_collect(restored_gc):
    tune_gc()
    collected: list[int] = []
    for _ in range(CYCLES):
        a, b = _Node(), _Node()
        a.other, b.other = b, a  # a cycle: only the collector can free it
        a.finalizer = _Finalizer(collected)
    del a, b
    automatic_runs: list[int] = []

    def watch(phase: str, info: dict) -> None:
        if phase == "start":
            automatic_runs.append(info["generation"])

    gc.callbacks.append(watch)
    try:
        # Allocations alone must trigger the collector (no gc.collect() here): with automatic
        # collection off, or a threshold of 0, the cycles would stay.
        kept = []
        for _ in range(40 * GC_GEN0_THRESHOLD):
            kept.append([])
            if len(collected) == CYCLES:
                break
    finally:
        gc.callbacks.remove(watch)
    assert automatic_runs
    assert len(collected) == CYCLES


class _Node:
    other: _Node
    finalizer: _Finalizer


class _Finalizer:
    def __init__(self, sink: list[int]) -> None:
        self.sink = sink

    def __del__(self) -> None:
        self.sink.append(1)
