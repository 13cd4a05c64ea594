"""The feed's Kafka edge, the only module of the feed that talks to Kafka.

* The audit topic: signed, chained appends (``feed.audit_chain``) by the feed and the CLI, each acknowledged by the
  broker (acks=all) before the change it records is sent, and the whole topic read back for ``twinmon audit
  verify``.
* The API process's consumers: the audit and alert-history indexers (each in its own consumer group) and the live
  fan-out of alert events to the connected SSE clients of the patient's current team (no group, from the end).
  A consumer that fails (broker away, Redis away) logs the error type and starts again after a pause; bad
  messages are counted and skipped, never fatal. Nothing about a patient is logged.
* The producer the API sends enrolments and alert actions with.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from feed.audit import audit_key
from feed.audit_chain import Chain, Report, verify
from feed.index import FeedIndex
from feed.live import Hub, parse_alert_event, parse_audit
from feed.models import AuditRecord
from streams.kafka_io import check_topics, producer, start_producer
from streams.security import aiokafka_kwargs
from streams.settings import Settings
from twin_state.errors import TwinmonError


class AuditWriter:
    """One writer's chain: appends one record at a time, each acknowledged before the next is signed."""

    def __init__(self, prod: AIOKafkaProducer, topic: str, key: bytes, kind: Literal["feed", "cli"]) -> None:
        self._producer, self._topic, self._key, self._kind = prod, topic, key, kind
        self._lock = asyncio.Lock()
        self._chain = self._new_chain()

    def _new_chain(self) -> Chain:
        return Chain(f"{self._kind}-{uuid.uuid4().hex}")

    async def append(self, record: AuditRecord) -> dict[str, Any]:
        """Sign ``record`` as the chain's next link and wait for the broker to have it (keyed by team)."""
        async with self._lock:
            doc = self._chain.seal(record.model_dump(exclude={"writer", "seq", "prev", "mac"}), self._key)
            try:
                await (await self._producer.send(self._topic, orjson.dumps(doc), key=record.team.encode()))
            except BaseException:
                # The broker may or may not have it: a new chain, so neither outcome looks like a dropped record.
                self._chain = self._new_chain()
                raise
            self._chain.advance(doc)
            return doc


async def audited_send(settings: Settings, records: Sequence[AuditRecord], topic: str,
                       messages: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """The CLI's write: ``records`` on the audit topic, each acknowledged, then the change's ``(key, value)``
    messages on ``topic``, all acknowledged; the records' ids."""
    signing_key = audit_key(settings)
    prod = producer(settings)
    await start_producer(prod)
    try:
        writer = AuditWriter(prod, settings.topic_audit, signing_key, "cli")
        for record in records:
            await writer.append(record)
        await asyncio.gather(*[await prod.send(topic, value, key=key) for key, value in messages])
    finally:
        await prod.stop()
    return [r.id for r in records]


async def read_trail(settings: Settings) -> tuple[list[bytes | None], int]:
    """Every record of the audit topic, from the start to its end when called, and how many partitions no longer
    start at offset 0."""
    status = {s.name: s for s in await check_topics(settings)}[settings.topic_audit]
    if not status.exists:
        raise TwinmonError(f"no audit topic {settings.topic_audit!r} (TWINMON_TOPIC_AUDIT); "
                           "`twinmon topics create` makes it")
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_audit, p) for p in range(status.partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        values: list[bytes | None] = []
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                values.extend(r.value for r in records if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return values, sum(1 for tp in tps if starts[tp] > 0)
    finally:
        await consumer.stop()


async def verify_trail(settings: Settings) -> Report:
    key = audit_key(settings)
    values, truncated = await read_trail(settings)
    return verify(values, key, truncated)

Producer = AIOKafkaProducer
log = logging.getLogger("twinmon.feed")
RETRY_S = 2.0


async def _forever(name: str, run: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s consumer failed (%s); retrying in %.0fs", name, type(exc).__name__, RETRY_S)
            await asyncio.sleep(RETRY_S)


def _indexer(settings: Settings, name: str, topic: str, parse: Callable[[bytes | None], dict[str, Any] | None],
             add: Callable[[dict[str, Any]], Awaitable[bool]]) -> Coroutine[Any, Any, None]:
    """Index ``topic`` into Redis in the consumer group ``{app_id}-feed-{name}``, committing after each batch is
    indexed; a malformed record is logged (no content) and skipped."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(settings), group_id=f"{settings.app_id}-feed-{name}",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=500)
                for records in batch.values():
                    for r in records:
                        doc = parse(r.value)
                        if doc is None:
                            log.warning("skipped a malformed record on the %s topic", name)
                        else:
                            await add(doc)
                if batch:
                    await consumer.commit()  # only after Redis has every record of the batch
        finally:
            await consumer.stop()

    return _forever(name, run)


def audit_indexer(settings: Settings, index: FeedIndex, key: bytes) -> Coroutine[Any, Any, None]:
    return _indexer(settings, "audit", settings.topic_audit, functools.partial(parse_audit, key=key),
                    index.add_audit)


def alert_history_indexer(settings: Settings, index: FeedIndex) -> Coroutine[Any, Any, None]:
    return _indexer(settings, "alert-history", settings.topic_alerts, parse_alert_event, index.add_alert_event)


def live_alerts(settings: Settings, hub: Hub, in_team: Callable[[str, str], Awaitable[object | None]]
                ) -> Coroutine[Any, Any, None]:
    """Alert events to the SSE clients of the event's care team, if the patient is enrolled in that team now
    (``in_team(team, patient_id)``): a discharged or transferred patient's events reach no former team."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(settings.topic_alerts, **aiokafka_kwargs(settings), group_id=None,
                                    auto_offset_reset="latest", enable_auto_commit=False)
        await consumer.start()
        try:
            # Resolve "the end" of every partition now, so events published from here on are not skipped.
            while not consumer.assignment():
                await asyncio.sleep(0.1)
            for tp in consumer.assignment():
                await consumer.position(tp)
            hub.live.set()
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        event = parse_alert_event(r.value)
                        if event is None or not event.get("care_team"):
                            continue
                        team = str(event["care_team"])
                        if hub.has(team) and await in_team(team, str(event["patient_id"])):
                            hub.publish(team, event)
        finally:
            hub.live.clear()
            await consumer.stop()

    return _forever("live-alerts", run)
