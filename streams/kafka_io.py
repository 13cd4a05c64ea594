"""Plain aiokafka helpers outside the worker: topic administration and the simulator's producer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError, for_code

from streams.kafka_acls import Binding
from streams.security import aiokafka_kwargs
from streams.settings import Settings
from twin_state.errors import TwinmonError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TopicStatus:
    name: str
    exists: bool
    partitions: int


def topic_plan(settings: Settings) -> list[NewTopic]:
    rf = settings.replication_factor
    return [
        NewTopic(settings.topic_vitals, settings.partitions, rf),
        NewTopic(settings.topic_dlq, settings.partitions, rf, topic_configs={"retention.ms": str(30 * 86_400_000)}),
        NewTopic(settings.topic_alerts, settings.partitions, rf),
        # Compacted: the latest profile of every patient stays replayable for as long as they are enrolled.
        NewTopic(settings.topic_enrolments, settings.partitions, rf, topic_configs={"cleanup.policy": "compact"}),
        # The audit trail of acknowledgements and resolutions: kept, never compacted.
        NewTopic(settings.topic_alert_actions, settings.partitions, rf, topic_configs={"retention.ms": "-1"}),
        # The feed's audit trail (who changed an enrolment or acted on an alert): append-only, kept forever.
        NewTopic(settings.topic_audit, settings.partitions, rf,
                 topic_configs={"retention.ms": "-1", "cleanup.policy": "delete"}),
    ]


def co_partitioned(settings: Settings) -> tuple[str, ...]:
    """Topics keyed by patient whose partitions must line up: a patient's readings, profile and alert actions
    reach the worker that owns the patient only if all three topics have the same partition count."""
    return (settings.topic_vitals, settings.topic_enrolments, settings.topic_alert_actions)


def partition_mismatch(counts: dict[str, int], topics: Iterable[str]) -> str | None:
    """Why ``topics`` (those that exist, by partition ``counts``) cannot be co-partitioned, or None if they can."""
    present = {t: counts[t] for t in topics if counts.get(t)}
    if len(set(present.values())) <= 1:
        return None
    listed = ", ".join(f"{t} has {n}" for t, n in present.items())
    return (f"the topics' partition counts differ ({listed}): a patient's readings, profile and alert actions "
            "would reach different workers, so their alerts and profiles would be wrong. Give these topics the "
            "same partition count (docs/runbook.md, 'Partition counts')")


def refused_topics(topic_errors: Iterable[tuple[Any, ...]]) -> KafkaError | None:
    """The first real per-topic error of a CreateTopics response, or None.

    The broker answers a refused creation (no ACL, bad config) inside the response, not as an exception;
    ``already exists`` is success (another process was first).
    """
    for topic, code, *message in topic_errors:
        if code and code != TopicAlreadyExistsError.errno:
            detail = message[0] if message and message[0] else ""
            return for_code(int(code))(f"topic {topic}: {detail}".rstrip(": "))
    return None


async def create_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topic_plan(settings) if t.name not in existing]
        if wanted:
            # Another process may create them between our list and create; that is success too.
            with contextlib.suppress(TopicAlreadyExistsError):
                response = await admin.create_topics(wanted)
                if (refused := refused_topics(response.topic_errors)) is not None:
                    raise refused
        return [t.name for t in wanted]
    finally:
        await admin.close()


async def check_topics(settings: Settings) -> list[TopicStatus]:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        names = [t.name for t in topic_plan(settings)]
        existing = set(await admin.list_topics())
        present = [n for n in names if n in existing]
        described = await admin.describe_topics(present) if present else []
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        return [TopicStatus(n, n in existing, counts.get(n, 0)) for n in names]
    finally:
        await admin.close()


# Kafka's protocol codes (org.apache.kafka.common.acl / resource): resource types, pattern types, operations.
_RESOURCE = {"topic": 2, "group": 3, "cluster": 4}
_PATTERN = {"literal": 3, "prefixed": 4}
_OPERATION = {"Read": 3, "Write": 4, "Create": 5, "Delete": 6, "Alter": 7, "Describe": 8, "DescribeConfigs": 10,
              "AlterConfigs": 11, "IdempotentWrite": 12}
_ALLOW, _ANY_HOST = 3, "*"


def topic_names(settings: Settings) -> dict[str, str]:
    """Topic role (as in deploy/kafka-acls.toml) -> this installation's topic name."""
    return {"vitals": settings.topic_vitals, "dlq": settings.topic_dlq, "alerts": settings.topic_alerts,
            "enrolments": settings.topic_enrolments, "alert_actions": settings.topic_alert_actions,
            "audit": settings.topic_audit}


async def apply_acls(settings: Settings, bindings: Iterable[Binding]) -> int:
    """Add the allow bindings (adding one that exists changes nothing); returns how many were sent."""
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    sent = 0
    try:
        for b in bindings:
            request = CreateAclsRequest(_RESOURCE[b.resource], b.name, _PATTERN[b.pattern], b.principal, _ANY_HOST,
                                        _OPERATION[b.operation], _ALLOW)
            response = await admin._send_request(request)  # aiokafka has the request but no public call for it
            for code, message in response.creation_responses:
                if code:
                    raise for_code(code)(f"ACL {b.operation} on {b.resource} {b.name} for {b.principal}: {message}")
            sent += 1
        return sent
    finally:
        await admin.close()


async def start_producer(prod: AIOKafkaProducer) -> None:
    try:
        await prod.start()
    except BaseException:
        await prod.stop()  # release its connections and tasks before the error reaches the user
        raise


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **aiokafka_kwargs(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
    )


async def produce_all(settings: Settings, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send ``(key, value)`` pairs in order and wait until the broker has every one of them."""
    prod = producer(settings)
    await start_producer(prod)
    sent = 0
    try:
        pending: list[asyncio.Future[object]] = []
        for key, value in messages:
            pending.append(await prod.send(topic, value=value, key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await prod.stop()
    return sent


class KafkaProblem(TwinmonError):
    """Kafka could not be reached or refused a request; the message says which, for a person."""


def run_with_kafka(coro: Coroutine[Any, Any, T], settings: Settings) -> T:
    """``asyncio.run(coro)`` for a command that talks to Kafka: the client's errors become one ``KafkaProblem``."""
    from streams.logsafety import limit_repeats

    limit_repeats()  # a broker restart during `twinmon simulate` logged 30,000 identical lines in 14 s
    try:
        return asyncio.run(coro)
    except KafkaConnectionError:
        # The client hides why; one probe connection tells a wrong password or an untrusted certificate.
        from streams.connect_check import probe_kafka

        refusal = asyncio.run(probe_kafka(settings))
        unreachable = f"cannot reach Kafka at {settings.kafka_bootstrap} (set TWINMON_KAFKA_BOOTSTRAP)"
        raise KafkaProblem(refusal.message if refusal else unreachable) from None
    except KafkaError as exc:
        raise KafkaProblem(f"Kafka refused: {type(exc).__name__}: {exc}") from None
