"""The consumer lag in seconds: how long the oldest unprocessed message has waited, not how many there are."""

from __future__ import annotations

from dataclasses import dataclass, field

from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.agents import VitalsProgress, forget_revoked
from streams.metrics import Metrics
from streams.timers import report_lag

NOW = 1_800_000_000_000


@dataclass
class Consumer:
    """What report_lag asks of Faust's consumer: the assignment and each partition's high-water mark."""

    marks: dict[TP, int] = field(default_factory=dict)

    def assignment(self) -> set[TP]:
        return set(self.marks)

    def highwater(self, tp: TP) -> int:
        return self.marks[tp]


class Processor:
    def forget(self, partitions: object) -> None:
        list(partitions)  # type: ignore[call-overload]


def _value(metrics: Metrics, name: str, partition: int) -> float | None:
    return metrics.registry.get_sample_value(name, {"topic": "vitals", "partition": str(partition)})


def test_lag_in_seconds_is_the_age_of_the_last_processed_message_while_behind_and_zero_when_caught_up() -> None:
    metrics = Metrics(CollectorRegistry())
    behind, caught_up, fresh = TP("vitals", 0), TP("vitals", 1), TP("vitals", 2)
    consumer = Consumer({behind: 500, caught_up: 100, fresh: 40, TP("alerts", 0): 9})
    progress = VitalsProgress(processed_up_to={0: 199, 1: 99}, processed_timestamp_ms={0: NOW - 42_500, 1: NOW - 5})
    report_lag(consumer, progress, metrics, "vitals", now_ms=NOW)  # type: ignore[arg-type]
    assert _value(metrics, "twinmon_consumer_lag", 0) == 300
    assert _value(metrics, "twinmon_consumer_lag_seconds", 0) == 42.5
    assert _value(metrics, "twinmon_consumer_lag_seconds", 1) == 0  # nothing waits, however old the last one
    # Behind with nothing processed yet: no claim about how long, only how many.
    assert _value(metrics, "twinmon_consumer_lag", 2) == 40
    assert _value(metrics, "twinmon_consumer_lag_seconds", 2) is None
    # A broker clock ahead of ours never makes a negative lag.
    progress.processed_timestamp_ms[0] = NOW + 3000
    report_lag(consumer, progress, metrics, "vitals", now_ms=NOW)  # type: ignore[arg-type]
    assert _value(metrics, "twinmon_consumer_lag_seconds", 0) == 0

    forget_revoked({behind, fresh}, Processor(), progress, metrics, "vitals")  # type: ignore[arg-type]
    assert _value(metrics, "twinmon_consumer_lag_seconds", 0) is None and 0 not in progress.processed_timestamp_ms
    assert _value(metrics, "twinmon_consumer_lag_seconds", 1) == 0
