"""The composition root: ``create_app(settings)`` wires Kafka (Faust), Redis and the pure core together.

There is no module-level app. Everything a worker needs is built here, once, from one ``Settings``. What the
agents and timers do is in ``streams.agents``, ``streams.timers`` and ``streams.publish``; ``create_app`` says what
is connected to what. Its one-line Faust wrappers stay inside it: Faust names a timer, and labels an agent in its
logs, by the function's qualified name (``streams.app.create_app.<locals>.report_lag``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from alerts import config
from alerts.config import AlertingConfig, policy_id
from streams import fastdrain, timers
from streams.agents import (
    VitalsProgress,
    consume_actions,
    consume_enrolments,
    consume_vitals,
    consume_vitals_batches,
    forget_revoked,
    or_exit,
    preload_assigned,
)
from streams.loop_health import GcPolicy, LoopWatch
from streams.metrics import Metrics
from streams.outage import Backoff, KafkaWatch, RedisOutage, combined_status
from streams.processor import BatchProcessor
from streams.publish import AlertPublisher, DeadLetters
from streams.security import faust_credentials, redis_client
from streams.settings import Settings
from twin_state.redis_store import RedisProfileStore, RedisTwinStore

CENSUS_INTERVAL_S = 10.0
KAFKA_PROBE_INTERVAL_S = 3.0
REFREEZE_INTERVAL_S = 5.0


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
    gc: GcPolicy

    def status(self) -> str:
        """The health endpoint's line: "ok", or what the worker is waiting for."""
        return combined_status(self.outage.status, self.kafka.status)()


def faust_app(settings: Settings) -> faust.App:
    """The Faust application with twinmon's consumer and producer settings (also used by ``twinmon bench``)."""
    return fastdrain.App(
        settings.app_id,
        fast_drain=settings.fast_drain,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
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
    metrics = _metrics(app, settings, registry, pid, name)
    redis = redis_client(settings)
    # Wait out Redis outages instead of exiting (streams/outage.py).
    outage = RedisOutage(metrics.registry, Backoff(settings.redis_retry_initial_ms / 1000.0,
                                                   settings.redis_retry_max_ms / 1000.0))
    kafka = KafkaWatch(metrics.registry)
    profiles = RedisProfileStore(redis, settings.redis_prefix)
    # Each alert names its patient's care team from the profiles the processor (built next) holds.
    publish = AlertPublisher(app, settings.topic_alerts, pid, metrics, lambda patient: processor.profile(patient))
    processor = BatchProcessor(RedisTwinStore(redis, settings.redis_prefix, settings.history_length), metrics,
                               profiles=profiles, publish=publish, evaluation=evaluation)
    dlq = DeadLetters(app, settings.topic_dlq, metrics)
    progress = VitalsProgress()
    vitals, enrolments, actions = (_raw_topic(app, topic) for topic in (
        settings.topic_vitals, settings.topic_enrolments, settings.topic_alert_actions))

    @app.agent(actions, name="apply-alert-actions", concurrency=1)
    async def apply_alert_actions(stream: faust.StreamT[bytes]) -> None:
        await or_exit("alert-actions", consume_actions(stream, processor, outage, metrics, dlq, settings))

    # The agent subscribes the topic; with the fast-drain consumer its messages come in batches from the hand-off.
    hand_off = (app.hand_off(settings.topic_vitals, settings.batch_queue_fetches, settings.batch_max)
                if isinstance(app, fastdrain.App) and app.fast_drain else None)

    @app.agent(vitals, name="apply-vitals", concurrency=1)
    async def apply_vitals(stream: faust.StreamT[bytes]) -> None:
        await or_exit("vitals", consume_vitals(stream, processor, outage, metrics, dlq, progress, settings)
                      if hand_off is None else
                      consume_vitals_batches(hand_off, processor, outage, metrics, dlq, progress, settings))

    @app.agent(enrolments, name="apply-enrolments", concurrency=1)
    async def apply_enrolments(stream: faust.StreamT[bytes]) -> None:
        await or_exit("enrolments", consume_enrolments(stream, processor, outage, metrics, dlq, profiles, settings))

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # faust's stub wants a `signal` keyword
    async def on_revoked(sender: faust.App, revoked: set[Any], **_: Any) -> None:
        forget_revoked(revoked, processor, progress, metrics, settings.topic_vitals)

    preloading: set[asyncio.Task[None]] = set()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # faust's stub wants a `signal` keyword
    async def on_assigned(sender: faust.App, assigned: set[Any], **_: Any) -> None:
        # In the background: the rebalance callback must return within the session timeout.
        task = asyncio.ensure_future(preload_assigned(assigned, processor, outage, settings.topic_vitals))
        preloading.add(task)
        task.add_done_callback(preloading.discard)

    @app.timer(interval=30.0)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def sweep_quiet_patients() -> None:
        await timers.sweep_quiet_patients(processor, outage, progress)

    @app.timer(interval=KAFKA_PROBE_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def probe_kafka() -> None:
        await timers.probe_kafka(app, kafka)

    @app.timer(interval=2.0)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def report_lag() -> None:
        timers.report_lag(app.consumer, progress, metrics, settings.topic_vitals)

    loop_watch, gc_policy = LoopWatch(metrics.registry), GcPolicy(metrics.registry)

    @app.task  # type: ignore[untyped-decorator]  # faust's task decorator is untyped
    async def watch_event_loop() -> None:
        await loop_watch.run()

    @app.timer(interval=REFREEZE_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def refreeze() -> None:
        gc_policy.refreeze()

    @app.timer(interval=CENSUS_INTERVAL_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def census() -> None:
        await timers.census(metrics, processor)

    return Worker(app=app, processor=processor, policy_name=name, metrics=metrics, redis=redis, outage=outage,
                  kafka=kafka, gc=gc_policy)


def _metrics(app: faust.App, settings: Settings, registry: CollectorRegistry | None, pid: str, name: str) -> Metrics:
    """The worker's metrics, on ``registry`` (a fresh one without), with the policy and the topics it serves."""
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    metrics.policy.info({"policy_id": pid, "name": name})
    if isinstance(app, fastdrain.App):
        metrics.deliveries(lambda: app.deliveries, fastdrain.PATHS)
    metrics.topics(consumed=(settings.topic_vitals, settings.topic_enrolments, settings.topic_alert_actions),
                   produced=(settings.topic_alerts, settings.topic_dlq))
    return metrics


def _raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic whose keys and values reach the agent as the bytes on the wire (each agent decodes its own)."""
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


def run_worker(built: Worker, log_level: str) -> None:
    """Run the worker until SIGTERM or Ctrl-C."""
    from streams.logsafety import hold_payload_loggers, limit_repeats

    # No patient data in logs: the Kafka client's DEBUG output carries message keys and values.
    hold_payload_loggers(log_level)
    limit_repeats()
    built.gc.install()
    faust.Worker(built.app, loglevel=log_level.upper(), quiet=True).execute_from_commandline()
