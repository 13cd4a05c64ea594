"""What the worker does on a clock rather than on a message: the no-data sweep, the consumer lag, the Kafka probe
and the census of resident patients. ``create_app`` runs each on a Faust timer."""

from __future__ import annotations

import time

import faust
from faust.types import ConsumerT

from streams.agents import VitalsProgress, or_exit
from streams.metrics import Metrics
from streams.outage import KafkaWatch, RedisOutage
from streams.processor import BatchProcessor

SWEEP_MAX_LAG = 1000
"""A vitals partition with at least this many unprocessed messages is catching up: its patients are not swept."""
KAFKA_PROBE_TIMEOUT_S = 2.5


async def sweep_quiet_patients(processor: BatchProcessor, outage: RedisOutage, progress: VitalsProgress) -> None:
    # On a partition the worker is still catching up on, event time lags the wall clock and every patient
    # would look silent: those patients wait for a sweep after it has caught up; the others are swept now.
    behind = [p for p, lag in progress.lag_by_partition.items() if lag >= SWEEP_MAX_LAG]
    await or_exit("sweep", outage.run("sweep", lambda: processor.sweep(int(time.time() * 1000), behind)))


async def probe_kafka(app: faust.App, kafka: KafkaWatch) -> None:
    # Faust's producer wraps an aiokafka producer; its client asks any known broker for cluster metadata.
    producer = getattr(app.producer, "_producer", None)  # faust exposes no public handle on it
    if producer is not None:
        await kafka.probe(producer.client.fetch_all_metadata, KAFKA_PROBE_TIMEOUT_S)


def report_lag(consumer: ConsumerT, progress: VitalsProgress, metrics: Metrics, vitals_topic: str,
               now_ms: int | None = None) -> None:
    """Each owned vitals partition's unprocessed messages (its high-water mark past the last offset processed),
    and how long the oldest of them has waited at most: since the broker stamped the last one processed, as the
    next message was stamped no earlier. A partition behind with nothing processed yet has no lag in seconds."""
    metrics.worker_up.set(1)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    for tp in consumer.assignment():
        if tp.topic != vitals_topic:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        done = progress.processed_up_to.get(tp.partition)
        committed = -1 if done is None else done
        lag = max(highwater - committed - 1, 0)
        progress.lag_by_partition[tp.partition] = lag
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        stamped = progress.processed_timestamp_ms.get(tp.partition)
        if lag == 0:
            metrics.consumer_lag_seconds.labels(tp.topic, str(tp.partition)).set(0)
        elif stamped is not None:
            metrics.consumer_lag_seconds.labels(tp.topic, str(tp.partition)).set(max(now_ms - stamped, 0) / 1000.0)


async def census(metrics: Metrics, processor: BatchProcessor) -> None:
    # Metrics only: open alerts, monitored and stale patients per care team, from the twins in memory.
    await metrics.census(processor.residents(), int(time.time() * 1000), processor.no_data_after_ms)
