"""streams.agents.consume_vitals_batches on a batch bigger than a chunk: the real hand-off, processor, outage guard
and chunking, with an in-memory store, the stand-in Faust app of test_batch_hand_off and no Kafka.

Each chunk is stored before any of its offsets is acknowledged, and acknowledged before the next chunk is stored;
when storing a chunk fails, neither its offsets nor any later ones are acknowledged, and the error leaves the loop
(``or_exit`` then exits the worker, to be restarted from the last committed offset)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from streams.agents import VitalsProgress, consume_vitals_batches
from streams.chunks import FIRST_CHUNK, MIN_CHUNK
from streams.fastdrain import BatchHandOff
from streams.metrics import Metrics
from streams.outage import Backoff, RedisOutage
from streams.processor import BatchProcessor
from streams.publish import DeadLetters
from streams.settings import Settings
from tests.unit.streams.test_batch_hand_off import FakeApp
from tests.unit.streams.test_processor import messages as readings
from twin_state.history import HistoryPoint
from twin_state.store import AnyTwin, InMemoryTwinStore

Log = list[tuple[str, int]]


@dataclass(eq=False)
class Message:
    """What the hand-off and ``_raw`` read of a Faust message."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float | None
    generation_id: int = 1


@dataclass
class Consumer:
    log: Log

    def track_message(self, m: Message) -> None:
        pass

    def ack(self, m: Message) -> None:
        self.log.append(("ack", m.offset))


@dataclass
class App(FakeApp):
    log: Log = field(default_factory=list)

    def __post_init__(self) -> None:
        self.consumer = Consumer(self.log)  # type: ignore[assignment]


class Store(InMemoryTwinStore):
    """Logs each write once it completed, by the newest offset it holds; the ``fail_at``-th write (from 1) raises."""

    def __init__(self, log: Log, fail_at: int | None = None) -> None:
        super().__init__()
        self.log, self.fail_at, self.writes = log, fail_at, 0

    async def save_many(self, twins: Sequence[AnyTwin], history: Mapping[str, Sequence[HistoryPoint]] | None = None,
                        alert_states: Mapping[str, bytes] | None = None) -> int:
        self.writes += 1
        self.log.append(("store", -1))
        await asyncio.sleep(0)  # a write that takes a turn of the loop, as Redis does
        if self.writes == self.fail_at:
            raise ValueError("corrupt twin")  # not an outage: escapes the guard at once
        written = await super().save_many(twins, history, alert_states)
        self.log[-1] = ("stored", max(t.offset for t in twins))
        return written


def fetched() -> list[Message]:
    return [Message(r.partition, r.offset, r.key, r.value, None) for r in readings(4, 300.0)]


async def run(store: Store, app: App, batch: list[Message]) -> asyncio.Task[None]:
    settings = Settings(batch_target_ms=1, batch_max=len(batch))
    hand_off = BatchHandOff(app, settings.topic_vitals, 4, settings.batch_max)  # type: ignore[arg-type]
    hand_off.queue.put_nowait(batch)
    metrics = Metrics(CollectorRegistry())
    dead_letters = DeadLetters(None, settings.topic_dlq, metrics)  # type: ignore[arg-type]  # none are sent
    task = asyncio.ensure_future(consume_vitals_batches(
        hand_off, BatchProcessor(store, metrics), RedisOutage(CollectorRegistry(), Backoff()), metrics, dead_letters,
        VitalsProgress(), settings))
    for _ in range(10_000):
        if task.done() or len([k for k, _ in app.log if k == "ack"]) == len(batch):
            break
        await asyncio.sleep(0)
    return task


@pytest.fixture
def cpu_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """10 ms of CPU between the chunk sizer's readings of the clock: with a 1 ms target, chunks of the first size,
    then of the least."""
    ticks = iter(range(1_000_000))
    monkeypatch.setattr(time, "process_time", lambda: next(ticks) * 0.01)


def chunks(log: Log) -> list[list[int]]:
    """The acknowledged offsets, cut at each store write."""
    out: list[list[int]] = []
    for kind, offset in log:
        if kind == "ack":
            assert out, f"offset {offset} acknowledged before any store write"
            out[-1].append(offset)
        else:
            out.append([])
    return out


@pytest.mark.usefixtures("cpu_clock")
async def test_a_big_batch_is_stored_and_acknowledged_chunk_by_chunk_in_order() -> None:
    batch = fetched()
    assert len(batch) > FIRST_CHUNK + 2 * MIN_CHUNK
    app = App()
    task = await run(Store(app.log), app, batch)
    assert not task.done(), task  # still waiting on the hand-off for the next fetch
    task.cancel()

    acked = chunks(app.log)
    sizes = [len(c) for c in acked]
    assert len(acked) >= 3 and sizes[0] == FIRST_CHUNK and set(sizes[1:-1]) == {MIN_CHUNK}
    assert [o for c in acked for o in c] == [m.offset for m in batch]  # every offset, once, in order
    for (kind, stored), chunk in zip([e for e in app.log if e[0] != "ack"], acked, strict=True):
        # The write completed (holding the chunk's last reading) before the chunk's first acknowledgement.
        assert (kind, stored) == ("stored", chunk[-1])


@pytest.mark.usefixtures("cpu_clock")
async def test_when_a_chunk_fails_to_be_stored_nothing_from_it_on_is_acknowledged() -> None:
    batch = fetched()
    app = App()
    task = await run(Store(app.log, fail_at=3), app, batch)
    assert task.done()
    with pytest.raises(ValueError, match="corrupt twin"):
        task.result()

    acked = [o for kind, o in app.log if kind == "ack"]
    assert acked == [m.offset for m in batch[:FIRST_CHUNK + MIN_CHUNK]]  # chunks 1 and 2, none of 3 and later
    assert app.log[-1] == ("store", -1)  # the failed write of chunk 3 is the last thing that happened
