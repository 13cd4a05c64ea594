"""The co-partitioning check: the topics keyed by patient must have the same partition count."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.protocol.metadata import MetadataResponse_v0, MetadataResponse_v1, MetadataResponse_v5

from streams.connect_check import partition_counts
from streams.kafka_io import co_partitioned, partition_mismatch
from streams.settings import Settings


def _topics(response_class: Any, spec: dict[str, tuple[int, int]]) -> list[tuple[Any, ...]]:
    """Encode and decode a real Metadata response of that version: topic -> (error code, partitions)."""
    if response_class is MetadataResponse_v0:
        topics = [(code, name, [(0, p, 1, [1], [1]) for p in range(n)]) for name, (code, n) in spec.items()]
        resp = response_class([(1, "localhost", 9092)], topics)
    elif response_class is MetadataResponse_v1:
        topics = [(code, name, False, [(0, p, 1, [1], [1]) for p in range(n)]) for name, (code, n) in spec.items()]
        resp = response_class([(1, "localhost", 9092, None)], 1, topics)
    else:
        topics = [(code, name, False, [(0, p, 1, [1], [1], []) for p in range(n)]) for name, (code, n) in spec.items()]
        resp = response_class(0, [(1, "localhost", 9092, None)], "c", 1, topics)
    decoded = response_class.decode(resp.encode())
    return list(decoded.topics)


@pytest.mark.parametrize("version", [MetadataResponse_v0, MetadataResponse_v1, MetadataResponse_v5])
def test_partition_counts_reads_every_response_version(version: Any) -> None:
    topics = _topics(version, {"vitals": (0, 12), "enrolments": (0, 6), "gone": (3, 0)})
    assert partition_counts(topics) == {"vitals": 12, "enrolments": 6}


def test_equal_counts_pass_and_any_difference_is_refused() -> None:
    s = Settings()
    names = co_partitioned(s)
    assert names == (s.topic_vitals, s.topic_enrolments, s.topic_alert_actions)
    assert partition_mismatch(dict.fromkeys(names, 12), names) is None
    for odd in names:
        counts = {**dict.fromkeys(names, 12), odd: 11}
        said = partition_mismatch(counts, names)
        assert said is not None and f"{odd} has 11" in said and "same partition count" in said


def test_missing_topics_are_left_to_the_missing_topic_checks() -> None:
    s = Settings()
    names = co_partitioned(s)
    assert partition_mismatch({s.topic_vitals: 12}, names) is None
    assert partition_mismatch({s.topic_vitals: 12, s.topic_enrolments: 0}, names) is None


def test_output_topics_may_differ() -> None:
    s = Settings()
    counts = {**dict.fromkeys(co_partitioned(s), 12), s.topic_alerts: 3, s.topic_dlq: 1, s.topic_audit: 2}
    assert partition_mismatch(counts, co_partitioned(s)) is None
