"""The in-place delivery of streams.fastdrain: a coroutine run one step by hand, then resumed under a task,
behaves as if the task had run it from the start (results, waits, exceptions and cancellation)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.fastdrain import PATHS, _Resumed
from streams.metrics import Metrics


def started(coro: Any) -> Any:
    """Run ``coro`` to its first wait, as the drain loop does; what it yielded."""
    return coro.send(None)


def test_a_delivery_with_room_in_the_buffer_finishes_in_its_first_step() -> None:
    async def scenario() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
        with pytest.raises(StopIteration):
            started(queue.put(1))
        assert queue.get_nowait() == 1

    asyncio.run(scenario())


def test_a_delivery_blocked_on_a_full_buffer_completes_once_there_is_room() -> None:
    async def scenario() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(1)
        put = queue.put(2)
        first = started(put)  # full: it waits
        task = asyncio.ensure_future(_Resumed(put, first))
        await asyncio.sleep(0.01)
        assert not task.done()
        assert await queue.get() == 1
        await asyncio.wait_for(task, 1)
        assert queue.get_nowait() == 2

    asyncio.run(scenario())


def test_results_and_several_waits_come_through() -> None:
    async def scenario() -> None:
        a: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        b: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def two_waits() -> int:
            return await a + await b

        coro = two_waits()
        task = asyncio.ensure_future(_Resumed(coro, started(coro)))
        a.set_result(2)
        await asyncio.sleep(0)
        b.set_result(40)
        assert await asyncio.wait_for(task, 1) == 42

    asyncio.run(scenario())


def test_an_exception_after_the_wait_propagates() -> None:
    async def scenario() -> None:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def fails() -> None:
            await fut
            raise ValueError("broken after the wait")

        coro = fails()
        task = asyncio.ensure_future(_Resumed(coro, started(coro)))
        fut.set_result(1)
        with pytest.raises(ValueError, match="broken after the wait"):
            await task

    asyncio.run(scenario())


def test_cancelling_the_waiting_delivery_cancels_the_coroutine_and_runs_its_cleanup() -> None:
    # What a rebalance does: wait_first(delivery, suspend_flow.wait()) cancels a delivery that is still waiting.
    async def scenario() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        queue.put_nowait(1)
        cleaned: list[str] = []

        async def deliver() -> None:
            try:
                await queue.put(2)
            finally:
                cleaned.append("finally")

        coro = deliver()
        task = asyncio.ensure_future(_Resumed(coro, started(coro)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["finally"]
        assert queue.qsize() == 1  # the abandoned message never went in; it is redelivered after the rebalance
        assert coro.cr_frame is None  # finished, not left suspended

    asyncio.run(scenario())


def test_the_delivery_paths_are_on_the_metrics_page_from_the_consumers_tally() -> None:
    tally: Counter[str] = Counter()
    metrics = Metrics(CollectorRegistry())
    metrics.deliveries(lambda: tally, PATHS)
    tally["direct"] += 5
    tally["waited"] += 2
    page = generate_latest(metrics.registry).decode()
    assert 'twinmon_kafka_deliveries_total{path="direct"} 5.0' in page
    assert 'twinmon_kafka_deliveries_total{path="waited"} 2.0' in page
    assert 'twinmon_kafka_deliveries_total{path="stock"} 0.0' in page
