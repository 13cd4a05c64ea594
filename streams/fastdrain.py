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

The loop is copied from faust-streaming ``FAUST_VERSION``; with any other version installed the stock consumer is
used (``supported()``), and ``TWINMON_FAST_DRAIN=false`` turns it off.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import AsyncIterator, Coroutine, Generator
from types import CoroutineType
from typing import Any, cast

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service

log = logging.getLogger("twinmon.fastdrain")
FAUST_VERSION = "0.15.3"
DIRECT, WAITED, STOCK = "direct", "waited", "stock"
PATHS = (DIRECT, WAITED, STOCK)
"""How a message reached its stream: in place; in place then waiting for room (backpressure); the stock path
(flow suspended by a rebalance, or the stock consumer). Counted in ``App.deliveries``."""


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
                            # --- the one change from faust-streaming's loop: deliver in place when we can ---
                            if suspended() or consumer_should_stop() or crashed():
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


class FastDrainTransport(faust_aiokafka.Transport):
    Consumer = FastDrainConsumer


class App(faust.App):
    """``faust.App`` whose consumer is ``FastDrainConsumer`` (when ``fast_drain`` and the Faust version allow),
    without Faust's Monitor sensor."""

    def __init__(self, *args: Any, fast_drain: bool = True, **kwargs: Any) -> None:
        self._fast_drain = fast_drain and supported()
        if fast_drain and not self._fast_drain:
            log.warning("faust-streaming %s is not %s: using its stock consumer", faust.__version__, FAUST_VERSION)
        super().__init__(*args, **kwargs)
        self.deliveries: Tally[str] = Tally()

    def on_init_dependencies(self) -> Any:
        deps = super().on_init_dependencies()
        # Faust's Monitor sensor keeps per-event statistics for Faust's own web views, which twinmon does not
        # run (its metrics are its own): detached, it costs nothing per event (71 -> 64 us of CPU per event in the
        # no-op agent, alternated runs). The consumer still calls the monitor directly for offsets; that stays.
        self.sensors.remove(self.monitor)
        return deps

    def _new_transport(self) -> Any:
        if not self._fast_drain:
            return super()._new_transport()
        return FastDrainTransport(self.conf.broker_consumer, self)
