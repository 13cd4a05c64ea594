"""Prometheus metrics of a worker. Built on a registry passed in, so tests read values from a fresh one.

Labels never carry patient ids or values: only topic, partition number, reason code and outcome.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.schema import Reason
from twin_state.twin import Outcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "twinmon_events_consumed_total", "Messages consumed", ["topic"], registry=registry
        )
        self.dead_lettered = Counter(
            "twinmon_events_dead_lettered_total", "Messages sent to the dead-letter topic", ["reason"],
            registry=registry,
        )
        self.readings = Counter(
            "twinmon_readings_total", "Valid readings by what the twin did with them", ["outcome"],
            registry=registry,
        )
        self.twins_written = Counter(
            "twinmon_twins_persisted_total", "Twin writes that Redis accepted", registry=registry
        )
        self.batch_size = Histogram(
            "twinmon_batch_size", "Messages per batch", buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "twinmon_batch_duration_seconds", "Time to process one batch, decode to persisted",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.redis_seconds = Histogram(
            "twinmon_redis_command_duration_seconds", "Redis round trips (one pipeline each)", ["op"],
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.redis_errors = Counter(
            "twinmon_redis_errors_total", "Redis calls that failed", ["op"], registry=registry
        )
        self.reading_to_persist = Histogram(
            "twinmon_reading_to_twin_seconds", "From a reading's measured-at to its twin persisted",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.consumer_lag = Gauge(
            "twinmon_consumer_lag", "Messages behind the end of the partition", ["topic", "partition"],
            registry=registry,
        )
        self.twins_resident = Gauge(
            "twinmon_twins_resident", "Twins held in this worker's memory", registry=registry
        )
        self.alerts = Counter(
            "twinmon_alerts_total", "Alert lifecycle events published", ["event", "level"], registry=registry
        )
        self.stale_actions = Counter(
            "twinmon_alert_actions_stale_total", "Acknowledgements or resolutions of alerts no longer open",
            registry=registry,
        )
        for reason in Reason:
            self.dead_lettered.labels(reason.value)
        for outcome in Outcome:
            self.readings.labels(outcome.value)
