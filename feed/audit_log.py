"""The audit topic's Kafka edge: signed, chained appends (``feed.audit_chain``) by the feed and the CLI, each
acknowledged by the broker (acks=all) before the change it records is sent, and the whole topic read back for
``twinmon audit verify``."""

from __future__ import annotations

import asyncio
import getpass
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from feed.audit_chain import Chain, Report, verify
from feed.models import AuditRecord
from streams.kafka_io import check_topics, producer, start_producer
from streams.security import aiokafka_kwargs
from streams.settings import Settings
from twin_state.errors import TwinmonError


class AuditKeyMissing(TwinmonError):
    def __init__(self) -> None:
        super().__init__("TWINMON_AUDIT_KEY is not set: audit records are signed with it (at least 32 characters, "
                         "the same for the feed, the CLI and `twinmon audit verify`; e.g. `openssl rand -hex 32`)")


def audit_key(settings: Settings) -> bytes:
    if settings.audit_key is None:
        raise AuditKeyMissing()
    return settings.audit_key.get_secret_value().encode()


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


def cli_record(user: str | None, team: str, action: str, patient_id: str, alert_id: str | None = None,
               reason: str = "") -> AuditRecord:
    """A record of a CLI command: ``user`` as given on the command line (not verified; default the OS account),
    and the OS account."""
    os_user = getpass.getuser()
    return AuditRecord(id=uuid.uuid4().hex, at=int(time.time() * 1000), user=user or os_user, team=team,
                       action=action,  # validated by the model
                       patient_id=patient_id, alert_id=alert_id, reason=reason, source="cli",
                       os_user=os_user)


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
