"""The worker's consume loops, one per topic, and what a rebalance takes away; ``create_app`` subscribes them.

Each loop takes what it uses as arguments (the processor, the Redis outage guard, the metrics, the dead-letter
topic, the settings) and knows Faust only as the stream it iterates and the partitions a rebalance revokes.
Each runs inside ``or_exit``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from faust.types import TP

from alerts.policy import UnknownAlert
from streams.actions import decode_action
from streams.chunks import ChunkSizer, in_chunks
from streams.enrolment import decode_enrolment
from streams.fastdrain import BatchHandOff
from streams.metrics import Metrics
from streams.outage import RedisOutage
from streams.processor import BatchProcessor, RawMessage
from streams.publish import DeadLetters
from streams.schema import Reason
from streams.settings import Settings
from twin_state.redis_store import RedisProfileStore

log = logging.getLogger("twinmon.worker")
EXIT_CRASHED = 70  # EX_SOFTWARE


@dataclass(slots=True)
class VitalsProgress:
    """Per ``vitals`` partition this worker owns: the last offset the vitals agent processed, and the lag the lag
    timer last measured (which the no-data sweep reads). A revoked partition's entries go with it."""

    processed_up_to: dict[int, int] = field(default_factory=dict)
    lag_by_partition: dict[int, int] = field(default_factory=dict)
    processed_timestamp_ms: dict[int, int] = field(default_factory=dict)
    """The broker timestamp of the last message processed, per partition (for the lag in seconds)."""


async def or_exit(what: str, work: Awaitable[object]) -> None:
    try:
        await work
    except Exception as exc:
        # An error nobody planned for: exit at once so the supervisor restarts the worker from the last
        # committed offset. Not a graceful stop: closing take_events' generator acknowledges the batch in
        # hand, and a graceful stop would then commit offsets whose twins were never written. Faust's own
        # handling would restart just the agent, past that batch. Redelivery is harmless (idempotent store).
        log.critical("unexpected %s in the %s agent; exiting for a restart", type(exc).__name__, what)
        logging.shutdown()
        os._exit(EXIT_CRASHED)


async def consume_vitals_batches(hand_off: BatchHandOff, processor: BatchProcessor, outage: RedisOutage,
                                 metrics: Metrics, dead_letters: DeadLetters, progress: VitalsProgress,
                                 settings: Settings) -> None:
    """The vitals loop on the batch hand-off (``streams.fastdrain``): whatever was fetched, processed at once, in
    chunks of about ``TWINMON_BATCH_TARGET_MS`` of work each (``streams.chunks``)."""
    sizer = ChunkSizer(settings.batch_target_ms / 1000.0, settings.batch_max)

    async def process(chunk: Sequence[Any]) -> None:
        await _process_vitals([_raw(m) for m in chunk], processor, outage, metrics, dead_letters, progress, settings)

    while True:
        messages = await hand_off.take()
        # Each chunk acknowledged only once Redis and the dead-letter topic have accepted it: Faust's commit timer
        # (and its commit when a rebalance revokes partitions, which waits for every message taken) commits no
        # further than that.
        # Sized by CPU time: time spent waiting for Redis and Kafka does not hold the loop, and counting it (or the
        # time other programs take the core) cut chunks small enough to cost a fifth of the throughput.
        await in_chunks(messages, sizer, process, hand_off.done, time.process_time)


async def _process_vitals(batch: list[RawMessage], processor: BatchProcessor, outage: RedisOutage, metrics: Metrics,
                          dead_letters: DeadLetters, progress: VitalsProgress, settings: Settings) -> None:
    started = time.perf_counter()
    result = await outage.run("vitals", functools.partial(processor.process, batch, int(time.time() * 1000)))
    await dead_letters.send(settings.topic_vitals, result)
    metrics.events_consumed.labels(settings.topic_vitals).inc(len(batch))
    metrics.batch_size.observe(len(batch))
    metrics.batch_seconds.observe(time.perf_counter() - started)
    metrics.events_produced.labels(settings.topic_dlq).inc(len(result.dead_letters))
    metrics.last_batch.set_to_current_time()
    processed, stamped = progress.processed_up_to, progress.processed_timestamp_ms
    for msg in batch:
        processed[msg.partition] = msg.offset
        if msg.timestamp_ms is not None:
            stamped[msg.partition] = msg.timestamp_ms


# faust's StreamT stub lacks take_events (faust-streaming adds it on the concrete Stream).
async def consume_vitals(stream: Any, processor: BatchProcessor, outage: RedisOutage, metrics: Metrics,
                         dead_letters: DeadLetters, progress: VitalsProgress, settings: Settings) -> None:
    """The vitals loop on Faust's own stream, when the batch hand-off is not available (stock consumer)."""
    within_s = settings.batch_within_ms / 1000.0
    async for events in stream.take_events(settings.batch_max, within=within_s):
        await _process_vitals([_raw(e.message) for e in events], processor, outage, metrics, dead_letters, progress,
                              settings)
        # take_events acknowledges the batch when control returns here: only after Redis and the
        # dead-letter topic have both accepted it, so a crash before this line replays the batch.


async def consume_enrolments(stream: Any, processor: BatchProcessor, outage: RedisOutage, metrics: Metrics,
                             dead_letters: DeadLetters, profiles: RedisProfileStore, settings: Settings) -> None:
    async for event in stream.events():
        msg = event.message
        decoded = decode_enrolment(msg.value, msg.key)
        if isinstance(decoded, str):
            await dead_letters.reject_one(msg, Reason.BAD_ENROLMENT, decoded, settings.topic_enrolments)
        else:
            await outage.run("enrolments", functools.partial(processor.apply_profile, decoded, profiles.save))
        metrics.events_consumed.labels(settings.topic_enrolments).inc()


async def consume_actions(stream: Any, processor: BatchProcessor, outage: RedisOutage, metrics: Metrics,
                          dead_letters: DeadLetters, settings: Settings) -> None:
    async for event in stream.events():
        msg = event.message
        decoded = decode_action(msg.value, msg.key)
        if isinstance(decoded, str):
            await dead_letters.reject_one(msg, Reason.BAD_ACTION, decoded, settings.topic_alert_actions)
        else:
            try:
                await outage.run("alert-actions", functools.partial(
                    processor.apply_action, decoded.patient_id, decoded.alert_id, decoded.user, decoded.at,
                    decoded.reason if decoded.action == "resolve" else None,
                ))
            except UnknownAlert:
                # Already resolved (two people pressed the button) or a stale page: nothing to change.
                metrics.stale_actions.inc()
        metrics.events_consumed.labels(settings.topic_alert_actions).inc()


async def preload_assigned(assigned: AbstractSet[TP], processor: BatchProcessor, outage: RedisOutage,
                           vitals_topic: str) -> None:
    """A rebalance gave this worker ``assigned``: load their enrolled patients' twins ahead of their readings."""
    partitions = sorted(tp.partition for tp in assigned if tp.topic == vitals_topic)
    if partitions:
        await or_exit("preload", outage.run("preload", functools.partial(processor.preload, partitions)))


def forget_revoked(revoked: AbstractSet[TP], processor: BatchProcessor, progress: VitalsProgress,
                   metrics: Metrics, vitals_topic: str) -> None:
    """A rebalance took ``revoked`` away: drop their twins and progress, and their lag series."""
    processor.forget(tp.partition for tp in revoked if tp.topic == vitals_topic)
    for tp in revoked:
        progress.lag_by_partition.pop(tp.partition, None)
        progress.processed_timestamp_ms.pop(tp.partition, None)
        if tp.topic == vitals_topic and progress.processed_up_to.pop(tp.partition, None) is not None:
            metrics.consumer_lag.remove(tp.topic, str(tp.partition))
            with contextlib.suppress(KeyError):  # set only once the lag timer has measured the partition
                metrics.consumer_lag_seconds.remove(tp.topic, str(tp.partition))


def _raw(message: Any) -> RawMessage:
    """The processor's view of a Faust message; Faust gives the record timestamp in seconds (None if absent)."""
    ts = message.timestamp
    return RawMessage(message.partition, message.offset, message.key, message.value,
                      None if ts is None else int(ts * 1000))
