"""What makes the benchmark's figures honest: the ceiling fetches as the worker does, the latency stage's mix is
the steady state it says, and a slow sample is never dropped."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from bench import steady
from bench.pipeline import WORKER_FETCH, MiB, _TwinWatch, percentiles
from streams.app import faust_app
from streams.schema import Rejected, decode
from streams.settings import Settings


def test_the_raw_ceiling_uses_the_fetch_settings_faust_gives_the_worker() -> None:
    conf = faust_app(Settings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9")).conf
    assert WORKER_FETCH["max_partition_fetch_bytes"] == conf.consumer_max_fetch_size == 1 * MiB
    assert WORKER_FETCH["check_crcs"] is conf.broker_check_crcs
    assert WORKER_FETCH["fetch_max_wait_ms"] == Settings.model_fields["kafka_fetch_max_wait_ms"].default
    assert conf.broker_max_poll_records is None  # consume_rate's default max_records


def test_the_steady_mix_has_its_invalid_messages_duplicates_entries_and_sick_patients() -> None:
    start = 1_000_000_000_000
    planned = steady.plan(200, 20.0, start)
    assert [p.at_s for p in planned] == sorted(p.at_s for p in planned)
    reasons: Counter[str] = Counter()
    for p in planned:
        decoded = decode(p.value, p.key, start + 60_000)
        if p.reading is None:
            assert isinstance(decoded, Rejected)
            reasons[decoded.reason.value] += 1
        else:
            assert not isinstance(decoded, Rejected) and decoded == p.reading
    vitals = sum(1 for p in planned if p.reading is not None and p.reading.device_id != "nurse-station")
    invalid = sum(1 for p in planned if p.reading is None)
    assert 0.008 < invalid / (vitals + invalid) < 0.012
    assert set(reasons) == {"not_json", "impossible_value", "unknown_metric"}
    values = Counter(p.value for p in planned if p.reading is not None)
    duplicated = [v for v, n in values.items() if n > 1]
    assert 0.008 < len(duplicated) / vitals < 0.012
    assert all(not p.sample for p in planned if p.reading is None or p.reading.device_id == "nurse-station")
    assert sum(1 for p in planned if p.reading is not None and p.reading.device_id == "nurse-station") == 20
    assert any(p.reading is not None and p.reading.value == 138.0 for p in planned)  # one in 50 unwell
    ids = steady.patient_ids(planned)
    assert len(ids) == 200 and len(steady.profiles(ids, start)) == 200


def test_aged_twins_are_an_hour_old_and_under_the_patients_ids() -> None:
    twins = steady.aged_twins(["a-1", "a-2", "a-3"], minutes=60.0, templates=2)
    assert [t.patient_id for t in twins] == ["a-1", "a-2", "a-3"]
    for t in twins:
        assert max(q.total for q in t.quality.values()) > 0
        assert max(v.baseline_minutes for v in t.vitals.values()) >= 50


def test_a_sample_never_seen_persisted_still_counts_with_what_it_waited() -> None:
    watch = _TwinWatch(None, None)  # type: ignore[arg-type]  # finish() touches neither
    fut: asyncio.Future[Any] = asyncio.Future(loop=asyncio.new_event_loop())
    watch.pending.append(("p", fut, 0.0))
    watch.seconds.append(0.01)
    watch.finish()
    assert watch.unfinished == 1 and len(watch.seconds) == 2
    assert percentiles(watch.seconds)["max_ms"] > 1000.0  # monotonic time since 0: far longer than any sample
