"""The event-loop stall watch and the garbage collector policy of streams.loop_health."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streams.loop_health import GEN0_THRESHOLD, UNFREEZE_EVERY_S, GcPolicy, LoopWatch


def test_a_blocked_loop_is_recorded_as_a_stall_of_about_that_long() -> None:
    registry = CollectorRegistry()
    watch = LoopWatch(registry)

    async def scenario() -> None:
        task = asyncio.create_task(watch.run())
        await asyncio.sleep(0.12)
        time.sleep(0.3)  # a batch that holds the loop
        await asyncio.sleep(0.12)
        task.cancel()

    asyncio.run(scenario())
    assert 0.2 <= watch.max_s < 1.0
    assert registry.get_sample_value("twinmon_event_loop_stall_max_seconds") == watch.max_s
    assert (registry.get_sample_value("twinmon_event_loop_stall_seconds_bucket", {"le": "0.1"}) or 0) >= 1
    assert registry.get_sample_value("twinmon_event_loop_stall_seconds_bucket", {"le": "0.25"}) \
        < registry.get_sample_value("twinmon_event_loop_stall_seconds_count")


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold, callbacks = gc.get_threshold(), list(gc.callbacks)
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    gc.callbacks[:] = callbacks


@pytest.mark.usefixtures("restore_gc")
def test_refreeze_moves_survivors_out_of_reach_of_collections_and_unfreezes_once_an_hour() -> None:
    registry = CollectorRegistry()
    policy = GcPolicy(registry)
    policy.refreeze()
    assert gc.get_freeze_count() == 0  # not installed: a library user's process is left alone
    policy.install()
    assert gc.get_threshold()[0] == GEN0_THRESHOLD
    kept = [[i] for i in range(50_000)]  # noqa: F841  # tracked objects that survive
    t0 = time.monotonic()
    policy.refreeze(t0)
    assert gc.get_freeze_count() >= 50_000
    assert registry.get_sample_value("twinmon_gc_frozen_objects") == gc.get_freeze_count()
    gc.collect()
    assert registry.get_sample_value("twinmon_gc_pause_seconds_count", {"generation": "2"}) >= 1
    policy.refreeze(t0 + UNFREEZE_EVERY_S + 1)
    assert gc.get_freeze_count() == 0
    assert registry.get_sample_value("twinmon_gc_frozen_objects") == 0
