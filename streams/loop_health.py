"""The worker's event loop: how long it stalls, and the cyclic garbage collector that would stall it most.

A worker holds every twin of its partitions in memory: with 50,000 patients that is well over a million objects
the collector tracks, and a full collection walks all of them with the loop stopped (380 ms measured). The twins
are immutable values that die by reference count when replaced, not in cycles, so walking them finds nothing.

``install`` (the CLI's worker only; never at import) raises the young generation's threshold, so that fewer short-
lived objects are promoted, and times every collection. ``refreeze`` (a timer) moves what survived into the
permanent generation, which no collection walks: a full collection then only walks what was promoted since. Cyclic
garbage frozen that way stays until ``UNFREEZE_EVERY_S`` has passed, when everything is handed back to the
collector once.

``LoopWatch`` sleeps ``TICK_S`` at a time and records how much later than asked it woke: the longest time the loop
could not run anything (a batch, a Redis reply, a health probe).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram

GEN0_THRESHOLD = 10_000
UNFREEZE_EVERY_S = 3600.0
TICK_S = 0.05
STALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopWatch:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.stalls = Histogram(
            "twinmon_event_loop_stall_seconds",
            f"How much later than asked a {TICK_S * 1000:.0f} ms sleep on the worker's event loop woke: time the loop "
            "could run nothing else", buckets=STALL_BUCKETS, registry=registry)
        self.longest = Gauge("twinmon_event_loop_stall_max_seconds",
                             "The longest event-loop stall since the worker started", registry=registry)
        self.max_s = 0.0

    def observe(self, stall_s: float) -> None:
        self.stalls.observe(stall_s)
        if stall_s > self.max_s:
            self.max_s = stall_s
            self.longest.set(stall_s)

    async def run(self) -> None:
        clock, sleep = time.perf_counter, asyncio.sleep
        while True:
            asked = clock() + TICK_S
            await sleep(TICK_S)
            self.observe(max(clock() - asked, 0.0))


class GcPolicy:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.pauses = Histogram("twinmon_gc_pause_seconds", "Cyclic garbage collections, by generation, and how "
                                "long each stopped the worker", ["generation"], buckets=STALL_BUCKETS,
                                registry=registry)
        self.frozen = Gauge("twinmon_gc_frozen_objects", "Objects in the permanent generation, which no collection "
                            "walks (streams/loop_health.py)", registry=registry)
        self.installed = False
        self._started = 0.0
        self._last_unfreeze = time.monotonic()

    def install(self) -> None:
        """Tune and time the collector for this process (a worker process: it changes global state)."""
        _, g1, g2 = gc.get_threshold()
        gc.set_threshold(GEN0_THRESHOLD, g1, g2)
        gc.callbacks.append(self._on_gc)
        self.installed = True

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.labels(str(info["generation"])).observe(time.perf_counter() - self._started)

    def refreeze(self, now_s: float | None = None) -> None:
        """Freeze what the young collections let survive, or, once every ``UNFREEZE_EVERY_S``, unfreeze all."""
        if not self.installed:
            return
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self._last_unfreeze >= UNFREEZE_EVERY_S:
            gc.unfreeze()
            self._last_unfreeze = now_s
        else:
            gc.collect(0)
            gc.freeze()
        self.frozen.set(gc.get_freeze_count())
