"""Faust's Kafka consumer with a cheaper hand-off of each fetched message to the agents' streams.

faust-streaming's ``Consumer._drain_messages`` delivers every fetched message with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: two new tasks, an ``asyncio.wait`` and
two cancellations per message, so that a delivery blocked on a full stream buffer is abandoned when a rebalance
suspends the flow. py-spy put that at about half of Faust's ~140 us of CPU per message on this machine.

``FastDrainConsumer`` keeps that loop line for line except the delivery: while the flow is not suspended and the
service is neither stopping nor crashed, it runs the delivery coroutine one step in place. Almost always that step
finishes (the message is in the stream's buffer) and nothing else is needed. If the step has to wait (a full
buffer: backpressure), the started coroutine is resumed under the stock ``wait_first(..., suspend_flow.wait())``,
so a rebalance abandons it exactly as it abandons a stock delivery. When the flow is suspended, delivery is the
stock path from the start. Same messages, same order, same offsets; only the per-message tasks are gone.

A topic given a ``BatchHandOff`` (the worker gives ``vitals`` one) is not delivered to a stream at all: what one
fetch returned for it goes to the hand-off's bounded queue after the loop over that fetch, in lists of at most
``TWINMON_BATCH_MAX``, and the worker's batch loop takes it from there (``streams.agents.consume_vitals_batches``).
No Event, no stream iteration, no per-message ack under the stream's lock, no wait window. A full queue holds the
drain loop (backpressure, as a full stream buffer does) under the same ``wait_first(..., suspend_flow.wait())``, and
a fetch while the flow is suspended is dropped, as the stock path drops it: those offsets were never acknowledged,
and Faust seeks back to the committed offsets before the flow resumes.

The loop is copied from faust-streaming ``FAUST_VERSION``; with any other version installed the stock consumer is
used (``supported()``), and ``TWINMON_FAST_DRAIN=false`` turns it off (and with it the hand-off).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Coroutine, Generator, Sequence
from types import CoroutineType
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

log = logging.getLogger("twinmon.fastdrain")
FAUST_VERSION = "0.15.3"
DIRECT, WAITED, STOCK, BATCHED, DROPPED = "direct", "waited", "stock", "batched", "dropped"
PATHS = (DIRECT, WAITED, STOCK, BATCHED, DROPPED)
"""How a message reached its stream: in place; after waiting for room (backpressure: a full stream buffer, or a
full ``BatchHandOff`` queue); the stock path (flow suspended by a rebalance, or the stock consumer); in a batch to a
``BatchHandOff`` without waiting; or not at all (fetched for a hand-off while a rebalance suspended the flow, or taken
from it after the rebalance: fetched again from the committed offset). Counted in ``App.deliveries``."""


class BatchHandOff:
    """Fetched messages of one topic, in lists of at most ``batch_max`` (a fetch, or a part of a big one), from the
    drain loop to the one task that processes them.

    ``take`` returns every list waiting (up to ``batch_max`` messages, never splitting a list), dropping the lists
    fetched before the current rebalance generation or while the flow is suspended: their offsets were never
    acknowledged, so they are fetched again. What it returns is tracked by the consumer as in flight (a rebalance
    waits for it to be acknowledged, then commits), and ``done`` acknowledges it."""

    def __init__(self, app: App, topic: str, max_fetches: int, batch_max: int) -> None:
        self.app, self.topic, self.batch_max = app, topic, batch_max
        self.queue: asyncio.Queue[list[Any]] = asyncio.Queue(max_fetches)

    def _current(self, fetched: list[Any]) -> bool:
        app = self.app
        return app.flow_control.is_active() and fetched[0].generation_id == app.consumer_generation_id

    async def take(self) -> list[Any]:
        """The next messages to process, in fetch order (waits for a fetch)."""
        queue, tally = self.queue, self.app.deliveries
        while True:
            taken: list[Any] = []
            fetched = await queue.get()
            while True:
                if self._current(fetched):
                    taken.extend(fetched)
                else:
                    tally[DROPPED] += len(fetched)
                if queue.empty() or len(taken) + len(queue._queue[0]) > self.batch_max:  # type: ignore[attr-defined]
                    break
                fetched = queue.get_nowait()
            if taken:
                track = self.app.consumer.track_message
                for message in taken:
                    track(message)
                return taken

    def done(self, messages: Sequence[Any]) -> None:
        """Acknowledge ``messages`` (from ``take``): processed, and their results accepted by Redis and Kafka."""
        ack = self.app.consumer.ack
        for message in messages:
            ack(message)


def supported() -> bool:
    return faust.__version__ == FAUST_VERSION


class _Resumed:
    """An awaitable that continues a coroutine already run up to its first wait (``first`` is what it yielded)."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro, self._first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation, or an exception thrown in by the task
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


class FastDrainConsumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by the integration tests
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        crashed = cast(Service, self)._crashed.is_set
        suspended = self.suspend_flow.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for

        tally = self.app.deliveries if isinstance(self.app, App) else Tally()
        hand_offs: dict[str, BatchHandOff] = self.app.hand_offs if isinstance(self.app, App) else {}
        fetched: dict[str, list[Any]] = {}

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            # --- the change from faust-streaming's loop: batch, or deliver in place when we can ---
                            if hand_offs and tp.topic in hand_offs:
                                fetched.setdefault(tp.topic, []).append(message)
                            elif suspended() or consumer_should_stop() or crashed():
                                tally[STOCK] += 1
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            else:
                                delivery = callback(message)
                                if type(delivery) is not CoroutineType:  # not faust's on_message: as stock
                                    tally[STOCK] += 1
                                    await self.wait_first(delivery, self.suspend_flow.wait())
                                else:
                                    try:
                                        first = delivery.send(None)
                                    except StopIteration:
                                        tally[DIRECT] += 1  # delivered without waiting
                                    else:
                                        tally[WAITED] += 1
                                        resumed = _Resumed(delivery, first)
                                        await self.wait_first(resumed, self.suspend_flow.wait())
                            # --- end of the change ---
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev("DROPPED MESSAGE ROFF %r", offset)
                    for topic, messages in fetched.items():
                        await self._hand_off(hand_offs[topic], messages, tally)
                    fetched.clear()
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


    async def _hand_off(self, hand_off: BatchHandOff, messages: list[Any], tally: Tally[str]) -> None:
        """One fetch's messages of a batched topic to its hand-off, in lists of at most its ``batch_max``; what a
        rebalance suspends the flow before is dropped (never acknowledged: fetched again)."""
        size, service = hand_off.batch_max, cast(Service, self)
        for start in range(0, len(messages), size):
            chunk = messages[start:start + size]
            if self.suspend_flow.is_set() or service._stopped.is_set() or service._crashed.is_set():
                tally[DROPPED] += len(messages) - start
                return
            try:
                hand_off.queue.put_nowait(chunk)
            except asyncio.QueueFull:
                put = asyncio.ensure_future(hand_off.queue.put(chunk))
                await self.wait_first(put, self.suspend_flow.wait())  # cancels the put if the flow is suspended
                if not put.done() or put.cancelled():
                    tally[DROPPED] += len(messages) - start
                    return
                tally[WAITED] += len(chunk)
            else:
                tally[BATCHED] += len(chunk)


class FetchWaitThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread with the broker's longest wait for a fetch taken from the app (``App``'s
    ``fetch_max_wait_ms``) instead of Faust's fixed 1,500 ms.

    Why it matters: aiokafka's fetcher sends one fetch to a broker at a time, and leaves out the partitions whose
    last fetch is still unread. When the worker is busy with a batch for more than aiokafka's prefetch backoff
    (100 ms), every ``vitals`` partition is still unread, so the next fetch asks for the idle topics only
    (enrolments, alert actions): the broker holds it for the whole wait, and no ``vitals`` data can be fetched
    until it answers. With 1,500 ms that was a 1.5 s pause every cycle (fetches of ~8,300 readings, the oldest
    1.65 s old, every 1.6 s at 5,000/s): the p99 of 2.4 s at 58 % of capacity."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            # aiokafka keeps the value to give its fetcher at start(); there is no public setter.
            consumer._fetch_max_wait_ms = int(wait)
        return consumer


class FetchWaitConsumer(faust_aiokafka.Consumer):
    """Faust's stock consumer, with ``FetchWaitThread``."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchWaitThread(self, loop=self.loop, beacon=self.beacon)


class FastDrainConsumerWithWait(FastDrainConsumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return FetchWaitThread(self, loop=self.loop, beacon=self.beacon)


class FastDrainTransport(faust_aiokafka.Transport):
    Consumer = FastDrainConsumerWithWait


class FetchWaitTransport(faust_aiokafka.Transport):
    Consumer = FetchWaitConsumer


class App(faust.App):
    """``faust.App`` whose consumer is ``FastDrainConsumer`` (when ``fast_drain`` and the Faust version allow),
    without Faust's Monitor sensor."""

    def __init__(self, *args: Any, fast_drain: bool = True, fetch_max_wait_ms: int | None = None,
                 **kwargs: Any) -> None:
        """``fetch_max_wait_ms``: the longest the broker holds a fetch that has no data yet (``FetchWaitThread``);
        None keeps Faust's 1,500 ms."""
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self._fast_drain = fast_drain and supported()
        if fast_drain and not self._fast_drain:
            log.warning("faust-streaming %s is not %s: using its stock consumer", faust.__version__, FAUST_VERSION)
        super().__init__(*args, **kwargs)
        self.deliveries: Tally[str] = Tally()
        self.hand_offs: dict[str, BatchHandOff] = {}

    @property
    def fast_drain(self) -> bool:
        """Whether the consumer is ``FastDrainConsumer`` (so that ``hand_off`` is served)."""
        return self._fast_drain

    def hand_off(self, topic: str, max_fetches: int, batch_max: int) -> BatchHandOff:
        """Deliver ``topic`` in batches to the returned hand-off instead of to its stream (needs ``fast_drain``)."""
        if not self._fast_drain:
            raise RuntimeError("batch hand-off needs the fast-drain consumer")
        self.hand_offs[topic] = hand_off = BatchHandOff(self, topic, max_fetches, batch_max)
        return hand_off

    def on_init_dependencies(self) -> Any:
        deps = super().on_init_dependencies()
        # Faust's Monitor sensor keeps per-event statistics for Faust's own web views, which twinmon does not
        # run (its metrics are its own): detached, it costs nothing per event (71 -> 64 us of CPU per event in the
        # no-op agent, alternated runs). The consumer still calls the monitor directly for offsets; that stays.
        self.sensors.remove(self.monitor)
        return deps

    def _new_transport(self) -> Any:
        if not self._fast_drain:
            if self.fetch_max_wait_ms is None:
                return super()._new_transport()
            return FetchWaitTransport(self.conf.broker_consumer, self)
        return FastDrainTransport(self.conf.broker_consumer, self)
