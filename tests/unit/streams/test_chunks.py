"""streams.chunks: a batch processed in chunks of about the target time, each acknowledged only after it was
processed, in order, and nothing acknowledged past a chunk that failed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from streams.chunks import FIRST_CHUNK, MIN_CHUNK, ChunkSizer, in_chunks


def test_the_first_chunk_is_of_the_first_size_capped_by_the_batch_limit() -> None:
    assert ChunkSizer(0.025, 2000).size() == FIRST_CHUNK
    assert ChunkSizer(0.025, 100).size() == 100


def test_the_size_follows_the_time_a_reading_takes() -> None:
    sizer = ChunkSizer(0.025, 2000)
    sizer.observe(250, 0.025)  # 100 us a reading
    assert sizer.size() == 250
    for _ in range(30):
        sizer.observe(250, 0.0125)  # readings got twice as cheap
    assert sizer.size() == pytest.approx(500, abs=2)


def test_the_size_stays_between_the_least_and_the_batch_limit() -> None:
    slow, fast = ChunkSizer(0.025, 2000), ChunkSizer(0.025, 2000)
    slow.observe(10, 1.0)
    fast.observe(1000, 1e-6)
    assert slow.size() == MIN_CHUNK
    assert fast.size() == 2000
    tiny = ChunkSizer(0.025, 20)
    tiny.observe(10, 1.0)
    assert tiny.size() == 20


def test_one_slow_chunk_moves_the_size_only_part_of_the_way() -> None:
    sizer = ChunkSizer(0.025, 2000)
    sizer.observe(250, 0.025)
    sizer.observe(250, 0.25)  # a garbage collection in the middle of one chunk
    assert MIN_CHUNK < sizer.size() < 250


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_chunks_are_processed_in_order_and_each_acknowledged_after_it_was_processed() -> None:
    clock, log = Clock(), []

    async def process(chunk: Sequence[int]) -> None:
        log.append(("process", list(chunk)))
        await asyncio.sleep(0)
        clock.t += 0.0001 * len(chunk) * 10  # 1 ms a reading: a 25 ms target makes chunks of 25

    def done(chunk: Sequence[int]) -> None:
        log.append(("done", list(chunk)))

    sizer = ChunkSizer(0.025, 2000)
    messages = list(range(400))
    chunks = asyncio.run(in_chunks(messages, sizer, process, done, clock))
    assert [kind for kind, _ in log] == ["process", "done"] * chunks
    processed = [m for kind, c in log if kind == "process" for m in c]
    acked = [m for kind, c in log if kind == "done" for m in c]
    assert processed == acked == messages
    for (k1, c1), (k2, c2) in zip(log[::2], log[1::2], strict=True):
        assert (k1, k2) == ("process", "done") and c1 == c2
    sizes = [len(c) for kind, c in log if kind == "process"]
    assert sizes[0] == FIRST_CHUNK and sizes[1] == MIN_CHUNK  # 250 readings took 250 ms: cut to the least
    assert chunks == 1 + -(-(400 - FIRST_CHUNK) // MIN_CHUNK)


def test_nothing_past_a_failed_chunk_is_acknowledged() -> None:
    acked: list[int] = []
    clock = Clock()

    async def process(chunk: Sequence[int]) -> None:
        clock.t += 0.00025 * len(chunk)  # 250 us a reading: chunks of 100
        if 300 in chunk:
            raise ConnectionError("redis")

    sizer = ChunkSizer(0.025, 2000)
    sizer.observe(100, 0.025)
    with pytest.raises(ConnectionError):
        asyncio.run(in_chunks(list(range(500)), sizer, process, acked.extend, clock))
    assert acked == list(range(300))


def test_a_batch_smaller_than_a_chunk_is_one_chunk() -> None:
    calls: list[list[int]] = []

    async def process(chunk: Sequence[int]) -> None:
        calls.append(list(chunk))

    assert asyncio.run(in_chunks([1, 2, 3], ChunkSizer(0.025, 2000), process, lambda c: None)) == 1
    assert calls == [[1, 2, 3]]
