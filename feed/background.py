"""The API process's Kafka consumers: the audit and alert-history indexers (each in its own consumer group) and
the live fan-out of alert events to the connected SSE clients of the event's care team (no group, from the end).

A consumer that fails (broker away, Redis away) logs the error type and starts again after a pause; bad
messages are counted and skipped, never fatal. Nothing about a patient is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel, ValidationError

from feed import models
from feed.audit_chain import mac_ok
from feed.index import FeedIndex
from streams.security import aiokafka_kwargs
from streams.settings import Settings

log = logging.getLogger("twinmon.feed")
RETRY_S = 2.0
QUEUE_MAX = 1000


class Hub:
    """Connected SSE clients by care team; each has a bounded queue (a client that stops reading is dropped)."""

    def __init__(self) -> None:
        self._clients: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)
        self.live = asyncio.Event()
        """Set once the live consumer has its partitions and positions: events after that reach clients."""

    def subscribe(self, team: str) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_MAX)
        self._clients[team].add(q)
        return q

    def unsubscribe(self, team: str, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._clients[team].discard(q)
        if not self._clients[team]:
            del self._clients[team]

    def publish(self, team: str, event: dict[str, Any]) -> int:
        sent = 0
        for q in list(self._clients.get(team, ())):
            try:
                q.put_nowait(event)
                sent += 1
            except asyncio.QueueFull:
                self.unsubscribe(team, q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)  # tells the stream to close
        return sent

    def has(self, team: str) -> bool:
        return bool(self._clients.get(team))

    def clients(self) -> int:
        return sum(len(v) for v in self._clients.values())


def _parse(model: type[BaseModel], raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw).model_dump()
    except ValidationError:
        return None


def parse_alert_event(raw: bytes | None) -> dict[str, Any] | None:
    return _parse(models.AlertEvent, raw)


def parse_audit(raw: bytes | None, key: bytes) -> dict[str, Any] | None:
    """The record, or None when malformed or not signed with ``key`` (a forged record is never indexed)."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return _parse(models.AuditRecord, raw) if isinstance(doc, dict) and mac_ok(doc, key) else None


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
