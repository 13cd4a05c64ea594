"""Prometheus metrics of a worker. Built on a registry passed in, so tests read values from a fresh one.

Labels never carry patient ids or values: only topic, partition number, reason code, outcome, Redis operation,
alert condition and level, and care team. Care teams are capped (``MAX_CARE_TEAMS`` per worker, the rest
counted under ``other``), so the page stays a few hundred lines however many patients a worker holds.

Names follow Prometheus conventions: counters end in ``_total``, durations are in seconds (``_seconds``),
timestamps are Unix seconds (``_timestamp_seconds``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from alerts.policy import AlertEvent, Condition, Kind, Level, PatientAlerts
from streams.schema import Reason
from twin_state.packed import PackedTwin, census_fields
from twin_state.profile import Profile, Status
from twin_state.twin import Outcome, Twin

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ACKNOWLEDGE_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0)
"""People's response times: half a minute to four hours (the unacknowledged escalation runs at 5/15/60 min)."""
REDIS_OPS = ("load", "save", "profiles")
"""The ``op`` label values of the Redis metrics (the processor's ``_timed`` calls)."""
MAX_CARE_TEAMS = 100
"""Care-team label values one worker exports at most; the smallest teams beyond that are summed as ``other``."""
UNASSIGNED = "unassigned"
"""Care-team label of resident patients without an enrolment profile."""
OTHER = "other"
CENSUS_CHUNK = 5000
"""Patients the census looks at between two yields to the event loop."""
ALERT_LEVELS = (Level.LOW, Level.MEDIUM, Level.HIGH)
PUBLICATION_LATENCY_KINDS = frozenset({Kind.RAISED, Kind.ESCALATED})
"""Alert events that a reading triggered (people's acknowledgements and resolutions are not timed from one)."""


def _version() -> str:
    try:
        return pkg_version("twinmon")
    except PackageNotFoundError:
        return "0+unknown"


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, max_care_teams: int = MAX_CARE_TEAMS) -> None:
        self.registry = registry
        self.max_care_teams = max_care_teams
        self.events_consumed = Counter(
            "twinmon_events_consumed_total", "Messages consumed", ["topic"], registry=registry
        )
        self.events_produced = Counter(
            "twinmon_events_produced_total", "Messages the broker acknowledged (alerts, dead letters)", ["topic"],
            registry=registry,
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
        self.last_batch = Gauge(
            "twinmon_last_batch_processed_timestamp_seconds", "When this worker last finished a vitals batch",
            registry=registry,
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
        self.reading_to_alert = Histogram(
            "twinmon_reading_to_alert_seconds",
            "From the reading that triggered an alert event (raised, escalated) to the broker acknowledging it",
            buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.consumer_lag = Gauge(
            "twinmon_consumer_lag", "Messages behind the end of the partition", ["topic", "partition"],
            registry=registry,
        )
        self.consumer_lag_seconds = Gauge(
            "twinmon_consumer_lag_seconds",
            "How long the partition's oldest unprocessed message has waited, at most: the wall clock minus the "
            "broker timestamp of the last message processed while any is behind; 0 when caught up",
            ["topic", "partition"], registry=registry,
        )
        self.twins_resident = Gauge(
            "twinmon_twins_resident", "Twins held in this worker's memory", registry=registry
        )
        self.twins_preloaded = Counter(
            "twinmon_twins_preloaded_total", "Twins loaded when their partition was assigned, before any reading",
            registry=registry,
        )
        self.alerts = Counter(
            "twinmon_alerts_total", "Alert lifecycle events published", ["event", "level"], registry=registry
        )
        self.stale_actions = Counter(
            "twinmon_alert_actions_stale_total", "Acknowledgements or resolutions of alerts no longer open",
            registry=registry,
        )
        self.time_to_acknowledge = Histogram(
            "twinmon_alert_time_to_acknowledge_seconds",
            "From an alert being raised (event time) to a person acknowledging it, by level when acknowledged",
            ["level"], buckets=ACKNOWLEDGE_BUCKETS, registry=registry,
        )
        # What the census (every few seconds, from the twins in memory) finds.
        self.alerts_open = Gauge(
            "twinmon_alerts_open", "Open alerts of the patients this worker holds", ["condition", "level"],
            registry=registry,
        )
        self.patients_monitored = Gauge(
            "twinmon_patients_monitored", "Resident patients not discharged, by care team", ["care_team"],
            registry=registry,
        )
        self.patients_stale = Gauge(
            "twinmon_patients_stale",
            "Resident patients with no accepted reading for the no-data limit (wall clock), by care team",
            ["care_team"], registry=registry,
        )
        self.readings_recent = Gauge(
            "twinmon_readings_recent",
            "Valid readings of the care team's patients, exponentially weighted over about the last hour",
            ["care_team"], registry=registry,
        )
        self.readings_recent_accepted = Gauge(
            "twinmon_readings_recent_accepted",
            "Of twinmon_readings_recent, those the twins accepted (not artefacts, late or duplicates)",
            ["care_team"], registry=registry,
        )
        self.census_seconds = Gauge(
            "twinmon_census_duration_seconds", "Time the last census of resident patients took", registry=registry
        )
        self.worker_up = Gauge(
            "twinmon_worker_up", "1 while the worker's event loop runs its timers (0 before)", registry=registry
        )
        self.build = Info("twinmon_build", "Version of the twinmon worker", registry=registry)
        self.build.info({"version": _version()})
        self.policy = Info("twinmon_policy", "Policy file whose thresholds the worker runs (docs/policy.md)",
                           registry=registry)
        # process_cpu_seconds_total, process_resident_memory_bytes, process_start_time_seconds, ...
        ProcessCollector(registry=registry)

        # Series that exist from the start, so that rates and panels show 0 rather than nothing.
        for reason in Reason:
            self.dead_lettered.labels(reason.value)
        for outcome in Outcome:
            self.readings.labels(outcome.value)
        for op in REDIS_OPS:
            self.redis_errors.labels(op)
        for level in ALERT_LEVELS:
            self.time_to_acknowledge.labels(level.name.lower())
            for kind in Kind:
                self.alerts.labels(kind.value, level.name.lower())
            for condition in Condition:
                self.alerts_open.labels(condition.value, level.name.lower()).set(0)
        self._teams: set[str] = set()

    def deliveries(self, source: Callable[[], Mapping[str, int]], paths: Sequence[str]) -> None:
        """``twinmon_kafka_deliveries_total{path}``: how fetched messages reached the streams (streams.fastdrain),
        read from ``source`` at scrape time; the consumer counts in a plain dict, not a metric, per message."""
        self.registry.register(_Deliveries(source, tuple(paths)))

    def topics(self, consumed: Iterable[str], produced: Iterable[str]) -> None:
        """Create the per-topic series at 0, so a topic that never had a message still shows (as 0)."""
        for topic in consumed:
            self.events_consumed.labels(topic)
        for topic in produced:
            self.events_produced.labels(topic)

    def alerts_published(self, topic: str, events: Sequence[AlertEvent], now_s: float) -> None:
        """Alert events the broker has acknowledged: counted per topic; raised and escalated ones are timed
        from their event time (the measured-at of the reading that triggered them)."""
        self.events_produced.labels(topic).inc(len(events))
        for e in events:
            if e.kind in PUBLICATION_LATENCY_KINDS:
                self.reading_to_alert.observe(max(now_s - e.at / 1000.0, 0.0))

    def acknowledged(self, state: PatientAlerts, alert_id: str) -> None:
        """An alert of ``state`` was just acknowledged: time from raised to acknowledged, by level."""
        for alert in state.open.values():
            if alert.alert_id == alert_id and alert.acknowledged_at is not None:
                seconds = max(alert.acknowledged_at - alert.raised_at, 0) / 1000.0
                self.time_to_acknowledge.labels(alert.level.name.lower()).observe(seconds)

    async def census(self, residents: Sequence[tuple[Twin | PackedTwin, PatientAlerts, Profile | None]], now_ms: int,
                     no_data_after_ms: int) -> None:
        """Gauges of what the worker holds: open alerts, monitored and stale patients, recent valid readings.

        ``residents`` is a snapshot (a packed twin is read as it is when the loop reaches it); the loop yields to
        the event loop every ``CENSUS_CHUNK`` patients, so 100,000 patients do not hold up a batch.
        """
        started = time.perf_counter()
        open_alerts: Tally[tuple[str, str]] = Tally()
        teams: dict[str, list[float]] = {}  # care team -> [monitored, stale, readings, accepted]
        stale_before = now_ms - no_data_after_ms
        for i, (twin, alerts, profile) in enumerate(residents):
            if i % CENSUS_CHUNK == CENSUS_CHUNK - 1:
                await asyncio.sleep(0)
            if alerts.open:
                for alert in alerts.open.values():
                    open_alerts[(alert.condition.value, alert.level.name.lower())] += 1
            if profile is None:
                team = UNASSIGNED
            elif profile.status is Status.DISCHARGED:
                continue
            else:
                team = profile.care_team
            row = teams.get(team)
            if row is None:
                row = teams[team] = [0.0, 0.0, 0.0, 0.0]
            row[0] += 1
            if isinstance(twin, PackedTwin):
                last, total, valid = census_fields(twin)
            else:
                last, total, valid = 0, 0.0, 0.0
                for v in twin.vitals.values():
                    if v.updated_at > last:
                        last = v.updated_at
                for q in twin.quality.values():
                    total += q.total
                    valid += q.valid
            if last <= stale_before:
                row[1] += 1
            row[2] += total
            row[3] += valid
        for condition in Condition:
            for level in ALERT_LEVELS:
                key = (condition.value, level.name.lower())
                self.alerts_open.labels(*key).set(open_alerts.get(key, 0))
        teams = _cap(teams, self.max_care_teams)
        for team, (monitored, stale, readings, accepted) in teams.items():
            self.patients_monitored.labels(team).set(monitored)
            self.patients_stale.labels(team).set(stale)
            self.readings_recent.labels(team).set(readings)
            self.readings_recent_accepted.labels(team).set(accepted)
        for gone in self._teams - teams.keys():
            for gauge in (self.patients_monitored, self.patients_stale, self.readings_recent,
                          self.readings_recent_accepted):
                gauge.remove(gone)
        self._teams = set(teams)
        self.twins_resident.set(len(residents))
        self.census_seconds.set(time.perf_counter() - started)


def _cap(teams: dict[str, list[float]], most: int) -> dict[str, list[float]]:
    """At most ``most`` care teams: the largest keep their name, the rest are summed under ``other``."""
    if len(teams) <= most:
        return teams
    ranked = sorted(teams, key=lambda t: (-teams[t][0], t))
    kept = {t: teams[t] for t in ranked[: most - 1] if t != OTHER}
    other = [0.0, 0.0, 0.0, 0.0]
    for t in teams.keys() - kept.keys():
        other = [a + b for a, b in zip(other, teams[t], strict=True)]
    kept[OTHER] = other
    return kept


class _Deliveries(Collector):
    def __init__(self, source: Callable[[], Mapping[str, int]], paths: tuple[str, ...]) -> None:
        self._source, self._paths = source, paths

    def collect(self) -> Iterable[CounterMetricFamily]:
        counts = self._source()
        family = CounterMetricFamily(
            "twinmon_kafka_deliveries",
            "Fetched messages handed to the streams, by path: batched (to the vitals batch loop), direct (in place), "
            "waited (after waiting for room in the stream's buffer or the batch queue: backpressure), stock "
            "(faust-streaming's own path, during rebalances), dropped (fetched during a rebalance: fetched again)",
            labels=["path"],
        )
        for path in self._paths:
            family.add_metric([path], counts.get(path, 0))
        yield family
