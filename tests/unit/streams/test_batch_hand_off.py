"""The batch hand-off of streams.fastdrain: what ``take`` returns, joins, drops, tracks and acknowledges.

The drain loop's side (a fetch put on the queue, or dropped when a rebalance suspends the flow) runs in the e2e
fault tests on the real broker; here the hand-off is given a stand-in for the three things of the Faust app it
reads: the flow control, the generation and the consumer's track/ack."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.fastdrain import BATCHED, DROPPED, BatchHandOff


@dataclass(eq=False)
class Message:
    offset: int
    generation_id: int = 1


@dataclass
class Flow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class Consumer:
    tracked: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def track_message(self, m: Message) -> None:
        self.tracked.append(m.offset)

    def ack(self, m: Message) -> None:
        self.acked.append(m.offset)


@dataclass
class FakeApp:
    flow_control: Flow = field(default_factory=Flow)
    consumer_generation_id: int = 1
    consumer: Consumer = field(default_factory=Consumer)
    deliveries: Counter[str] = field(default_factory=Counter)


def fetch(*offsets: int, generation: int = 1) -> list[Message]:
    return [Message(o, generation) for o in offsets]


def hand_off(app: FakeApp, batch_max: int = 10, fetches: int = 8) -> BatchHandOff:
    return BatchHandOff(app, "vitals", fetches, batch_max)  # type: ignore[arg-type]


def offsets(ms: list[Any]) -> list[int]:
    return [m.offset for m in ms]


def test_waiting_fetches_are_joined_in_order_up_to_the_batch_limit_never_split() -> None:
    async def scenario() -> None:
        app = FakeApp()
        h = hand_off(app, batch_max=5)
        for f in (fetch(1, 2), fetch(3, 4), fetch(5, 6), fetch(7)):
            h.queue.put_nowait(f)
        first = await h.take()
        assert offsets(first) == [1, 2, 3, 4]  # 5 and 6 would make six: that fetch waits for the next take
        assert offsets(await h.take()) == [5, 6, 7]
        assert app.consumer.tracked == [1, 2, 3, 4, 5, 6, 7]
        assert app.consumer.acked == []

    asyncio.run(scenario())


def test_a_fetch_bigger_than_the_limit_comes_whole() -> None:
    async def scenario() -> None:
        h = hand_off(FakeApp(), batch_max=2)
        h.queue.put_nowait(fetch(1, 2, 3))
        h.queue.put_nowait(fetch(4))
        assert offsets(await h.take()) == [1, 2, 3]
        assert offsets(await h.take()) == [4]

    asyncio.run(scenario())


def test_fetches_of_an_earlier_generation_are_dropped_untracked_and_unacknowledged() -> None:
    async def scenario() -> None:
        app = FakeApp(consumer_generation_id=2)
        h = hand_off(app)
        h.queue.put_nowait(fetch(1, 2, generation=1))
        h.queue.put_nowait(fetch(3, generation=2))
        taken = await h.take()
        assert offsets(taken) == [3]
        assert app.consumer.tracked == [3]
        assert app.deliveries[DROPPED] == 2
        h.done(taken)
        assert app.consumer.acked == [3]

    asyncio.run(scenario())


def test_nothing_is_taken_while_a_rebalance_suspends_the_flow() -> None:
    async def scenario() -> None:
        app = FakeApp()
        app.flow_control.active = False
        h = hand_off(app)
        h.queue.put_nowait(fetch(1, 2))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(h.take(), 0.05)  # dropped, and waiting for the next fetch
        assert app.deliveries[DROPPED] == 2
        assert app.consumer.tracked == [] and app.consumer.acked == []
        app.flow_control.active = True
        h.queue.put_nowait(fetch(1, 2))  # fetched again from the committed offset
        assert offsets(await h.take()) == [1, 2]

    asyncio.run(scenario())


def test_done_acknowledges_every_message_taken() -> None:
    async def scenario() -> None:
        app = FakeApp()
        h = hand_off(app)
        h.queue.put_nowait(fetch(7, 8, 9))
        taken = await h.take()
        h.done(taken)
        assert app.consumer.acked == [7, 8, 9]
        assert app.deliveries[BATCHED] == 0  # counted by the drain loop when it puts, not here

    asyncio.run(scenario())


class DrainSide:
    """What ``FastDrainConsumer._hand_off`` reads of the consumer: its flow and service events and ``wait_first``
    (as mode's: the first of the awaitables to finish, the others cancelled)."""

    def __init__(self) -> None:
        self.suspend_flow, self._stopped, self._crashed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def wait_first(self, *aws: Any) -> None:
        futures = [asyncio.ensure_future(a) for a in aws]
        _, pending = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
        for f in pending:
            f.cancel()


async def hand_over(side: DrainSide, h: BatchHandOff, messages: list[Message], tally: Counter[str]) -> None:
    from streams.fastdrain import FastDrainConsumer

    await FastDrainConsumer._hand_off(side, h, messages, tally)  # type: ignore[arg-type]


def test_a_big_fetch_is_handed_over_in_lists_of_the_batch_limit_waiting_for_room() -> None:
    async def scenario() -> None:
        app, side, tally = FakeApp(), DrainSide(), Counter[str]()
        h = hand_off(app, batch_max=3, fetches=1)
        drain = asyncio.create_task(hand_over(side, h, fetch(*range(8)), tally))
        await asyncio.sleep(0.01)
        assert not drain.done() and tally[BATCHED] == 3  # the first list is in; the second waits for room
        taken = [offsets(await h.take()) for _ in range(3)]
        await drain
        assert taken == [[0, 1, 2], [3, 4, 5], [6, 7]]
        assert tally[BATCHED] + tally["waited"] == 8 and tally["waited"] >= 3

    asyncio.run(scenario())


def test_a_rebalance_while_waiting_for_room_drops_the_rest_of_the_fetch() -> None:
    async def scenario() -> None:
        app, side, tally = FakeApp(), DrainSide(), Counter[str]()
        h = hand_off(app, batch_max=2, fetches=1)
        drain = asyncio.create_task(hand_over(side, h, fetch(*range(6)), tally))
        await asyncio.sleep(0.01)
        side.suspend_flow.set()
        await asyncio.wait_for(drain, 1)
        assert tally[BATCHED] == 2 and tally[DROPPED] == 4
        assert h.queue.qsize() == 1  # the list put before the rebalance: dropped by take if its generation is gone

    asyncio.run(scenario())
