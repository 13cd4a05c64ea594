"""The composition root: ``create_app(settings)`` wires Kafka (Faust), Redis and the pure core together.

There is no module-level app. Everything a worker needs is built here, once, from one ``Settings``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from alerts import config
from alerts.codec import event_to_wire
from alerts.config import AlertingConfig, policy_id
from alerts.policy import AlertEvent, UnknownAlert
from streams import fastdrain
from streams.actions import decode_action
from streams.enrolment import decode_enrolment
from streams.metrics import Metrics
from streams.outage import Backoff, KafkaWatch, RedisOutage, combined_status
from streams.processor import BatchProcessor, BatchResult, RawMessage
from streams.schema import Reason, Rejected
from streams.security import faust_credentials, redis_client
from streams.settings import Settings
from twin_state.profile import Status
from twin_state.redis_store import RedisProfileStore, RedisTwinStore

log = logging.getLogger("twinmon.worker")
EXIT_CRASHED = 70  # EX_SOFTWARE
SWEEP_MAX_LAG = 1000
"""A vitals partition with at least this many unprocessed messages is catching up: its patients are not swept."""
CENSUS_INTERVAL_S = 10.0
KAFKA_PROBE_INTERVAL_S = 3.0
KAFKA_PROBE_TIMEOUT_S = 2.5


@dataclass(slots=True)
class Worker:
    """What ``create_app`` built; the CLI runs ``app`` and serves ``metrics``."""

    app: faust.App
    processor: BatchProcessor
    policy_name: str
    metrics: Metrics
    redis: Redis
    outage: RedisOutage
    kafka: KafkaWatch

    def status(self) -> str:
        """The health endpoint's line: "ok", or what the worker is waiting for."""
        return combined_status(self.outage.status, self.kafka.status)()


def faust_app(settings: Settings) -> faust.App:
    """The Faust application with twinmon's consumer and producer settings (also used by ``twinmon bench``)."""
    return fastdrain.App(
        settings.app_id,
        fast_drain=settings.fast_drain,
        broker=[f"kafka://{hp.strip()}" for hp in settings.kafka_bootstrap.split(",")],
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,
        topic_disable_leader=True,
        producer_acks=-1,
        broker_commit_interval=1.0,
        # One consumer group per app id: workers with the same id share the partitions.
        autodiscover=False,
        datadir=settings.data_dir,
        broker_credentials=faust_credentials(settings),
        # A SIGKILLed worker's partitions move to the others after this long.
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.kafka_session_timeout_s / 3),
        # Room for this many fetched messages per stream before the fetcher waits: with a small buffer a worker
        # with a backlog hands messages over one at a time as the agent frees slots (docs/performance.md).
        stream_buffer_maxsize=settings.stream_buffer,
    )


def load_policy(settings: Settings) -> tuple[str, AlertingConfig]:
    """The policy file's name and settings (the code defaults without one); ``alerts.config.ConfigError``, naming
    the file and the key, if it is wrong, so the worker stops before it consumes anything."""
    return config.load_policy(settings.policy_file)


def create_app(settings: Settings, registry: CollectorRegistry | None = None, *,
               policy: tuple[str, AlertingConfig] | None = None) -> Worker:
    """``policy``: the policy file's name and settings, if already loaded (``load_policy``)."""
    name, evaluation = policy if policy is not None else load_policy(settings)
    pid = policy_id(evaluation)
    app = faust_app(settings)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    metrics.policy.info({"policy_id": pid, "name": name})
    if isinstance(app, fastdrain.App):
        metrics.deliveries(lambda: app.deliveries, fastdrain.PATHS)
    metrics.topics(consumed=(settings.topic_vitals, settings.topic_enrolments, settings.topic_alert_actions),
                   produced=(settings.topic_alerts, settings.topic_dlq))
    redis = redis_client(settings)
    # Wait out Redis outages instead of exiting (streams/outage.py).
    outage = RedisOutage(metrics.registry, Backoff(settings.redis_retry_initial_ms / 1000.0,
                                                   settings.redis_retry_max_ms / 1000.0))
    profiles = RedisProfileStore(redis, settings.redis_prefix)

    async def publish_alerts(events: Sequence[AlertEvent]) -> None:
        # Keyed by patient: one patient's alert lifecycle stays in order on one partition. Awaited before the
        # twins are written (see streams.processor).
        futures = []
        for e in events:
            wire = event_to_wire(e, pid)
            profile = processor.profile(e.patient_id)
            # A discharged patient belongs to no team: its alerts reach no team's page.
            wire["care_team"] = (profile.care_team if profile is not None and profile.status is Status.ENROLLED
                                 else None)
            futures.append(await app.producer.send(
                settings.topic_alerts, e.patient_id.encode(), orjson.dumps(wire), None, None, None))
        for fut in futures:
            await fut
        metrics.alerts_published(settings.topic_alerts, events, time.time())

    processor = BatchProcessor(
        RedisTwinStore(redis, settings.redis_prefix, settings.history_length),
        metrics,
        profiles=profiles,
        publish=publish_alerts,
        evaluation=evaluation,
    )

    vitals = app.topic(
        settings.topic_vitals, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    within_s = settings.batch_within_ms / 1000.0
    processed_up_to: dict[int, int] = {}
    lag_by_partition: dict[int, int] = {}

    enrolments = app.topic(
        settings.topic_enrolments, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    actions = app.topic(
        settings.topic_alert_actions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )

    async def _reject_one(msg: Any, reason: Reason, detail: str, source_topic: str) -> None:
        """Dead-letter one message of a low-volume topic (enrolments, alert actions) and count it."""
        raw = RawMessage(msg.partition, msg.offset, msg.key, msg.value)
        result = BatchResult(dead_letters=[(raw, Rejected(reason, detail))])
        await _dead_letter(app, settings.topic_dlq, source_topic, result)
        metrics.dead_lettered.labels(reason.value).inc()
        metrics.events_produced.labels(settings.topic_dlq).inc()

    @app.agent(actions, name="apply-alert-actions", concurrency=1)
    async def apply_alert_actions(stream: faust.StreamT[bytes]) -> None:
        await _or_exit("alert-actions", _consume_actions(stream))

    async def _consume_actions(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            decoded = decode_action(msg.value, msg.key)
            if isinstance(decoded, str):
                await _reject_one(msg, Reason.BAD_ACTION, decoded, settings.topic_alert_actions)
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

    @app.agent(vitals, name="apply-vitals", concurrency=1)
    async def apply_vitals(stream: faust.StreamT[bytes]) -> None:
        await _or_exit("vitals", _consume(stream))

    @app.agent(enrolments, name="apply-enrolments", concurrency=1)
    async def apply_enrolments(stream: faust.StreamT[bytes]) -> None:
        await _or_exit("enrolments", _consume_enrolments(stream))

    async def _consume_enrolments(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            decoded = decode_enrolment(msg.value, msg.key)
            if isinstance(decoded, str):
                await _reject_one(msg, Reason.BAD_ENROLMENT, decoded, settings.topic_enrolments)
            else:
                await outage.run("enrolments", functools.partial(processor.apply_profile, decoded, profiles.save))
            metrics.events_consumed.labels(settings.topic_enrolments).inc()

    # faust's StreamT stub lacks take_events (faust-streaming adds it on the concrete Stream).
    async def _consume(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=within_s):
            batch = [_raw(e.message) for e in events]
            started = time.perf_counter()
            result = await outage.run("vitals", functools.partial(processor.process, batch, int(time.time() * 1000)))
            await _dead_letter(app, settings.topic_dlq, settings.topic_vitals, result)
            metrics.events_consumed.labels(settings.topic_vitals).inc(len(batch))
            metrics.batch_size.observe(len(batch))
            metrics.batch_seconds.observe(time.perf_counter() - started)
            metrics.events_produced.labels(settings.topic_dlq).inc(len(result.dead_letters))
            metrics.last_batch.set_to_current_time()
            for msg in batch:
                processed_up_to[msg.partition] = msg.offset
            # take_events acknowledges the batch when control returns here: only after Redis and the
            # dead-letter topic have both accepted it, so a crash before this line replays the batch.

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's stub wants a `signal` keyword
    async def on_revoked(sender: faust.App, revoked: set[Any], **_: Any) -> None:
        processor.forget(tp.partition for tp in revoked if tp.topic == settings.topic_vitals)
        for tp in revoked:
            lag_by_partition.pop(tp.partition, None)
            if tp.topic == settings.topic_vitals and processed_up_to.pop(tp.partition, None) is not None:
                metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    @app.timer(interval=30.0)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def sweep_quiet_patients() -> None:
        # On a partition the worker is still catching up on, event time lags the wall clock and every patient
        # would look silent: those patients wait for a sweep after it has caught up; the others are swept now.
        behind = [p for p, lag in lag_by_partition.items() if lag >= SWEEP_MAX_LAG]
        await _or_exit("sweep", outage.run("sweep", lambda: processor.sweep(int(time.time() * 1000), behind)))

    kafka = KafkaWatch(metrics.registry)

    @app.timer(interval=KAFKA_PROBE_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def probe_kafka() -> None:
        # Faust's producer wraps an aiokafka producer; its client asks any known broker for cluster metadata.
        producer = getattr(app.producer, "_producer", None)  # faust exposes no public handle on it
        if producer is not None:
            await kafka.probe(producer.client.fetch_all_metadata, KAFKA_PROBE_TIMEOUT_S)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def report_lag() -> None:
        metrics.worker_up.set(1)
        consumer = app.consumer
        for tp in consumer.assignment():
            if tp.topic != settings.topic_vitals:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            done = processed_up_to.get(tp.partition)
            committed = -1 if done is None else done
            lag = max(highwater - committed - 1, 0)
            lag_by_partition[tp.partition] = lag
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)

    @app.timer(interval=CENSUS_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def census() -> None:
        # Metrics only: open alerts, monitored and stale patients per care team, from the twins in memory.
        await metrics.census(processor.residents(), int(time.time() * 1000), processor.no_data_after_ms)

    return Worker(app=app, processor=processor, policy_name=name, metrics=metrics, redis=redis, outage=outage,
                  kafka=kafka)


def run_worker(built: Worker, log_level: str) -> None:
    """Run the worker until SIGTERM or Ctrl-C."""
    from streams.logsafety import hold_payload_loggers, limit_repeats

    # No patient data in logs: the Kafka client's DEBUG output carries message keys and values.
    hold_payload_loggers(log_level)
    limit_repeats()
    faust.Worker(built.app, loglevel=log_level.upper(), quiet=True).execute_from_commandline()


def _raw(message: Any) -> RawMessage:
    """The processor's view of a Faust message; Faust gives the record timestamp in seconds (None if absent)."""
    ts = message.timestamp
    return RawMessage(message.partition, message.offset, message.key, message.value,
                      None if ts is None else int(ts * 1000))


async def _or_exit(what: str, work: Any) -> None:
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


async def _dead_letter(app: faust.App, dlq_topic: str, source_topic: str, result: BatchResult) -> None:
    if not result.dead_letters:
        return
    futures = []
    for msg, rejected in result.dead_letters:
        headers = [
            ("twinmon-reason", rejected.reason.value.encode()),
            ("twinmon-detail", rejected.detail.encode("utf-8", "replace")),
            ("twinmon-source", f"{source_topic}/{msg.partition}/{msg.offset}".encode()),
        ]
        futures.append(await app.producer.send(dlq_topic, msg.key, msg.value, None, None, headers))
    for fut in futures:
        await fut
