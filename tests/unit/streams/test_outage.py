"""Which Redis errors are outages, the backoff schedule, the retry loop and the health endpoint's answers."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis import exceptions as rx

from streams.health import health_app
from streams.outage import Backoff, KafkaWatch, RedisOutage, combined_status, is_outage
from streams.processor import BatchProcessor, RawMessage
from tests.unit.streams.test_processor import NOW, Recorder, deteriorating
from twin_state.history import HistoryPoint
from twin_state.packed import PackedTwin
from twin_state.store import AnyTwin, InMemoryTwinStore
from twin_state.twin import Twin


@pytest.mark.parametrize("exc", [
    rx.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
    rx.TimeoutError("Timeout reading from socket"),
    rx.BusyLoadingError("Redis is loading the dataset in memory"),
    rx.ReadOnlyError("You can't write against a read only replica."),
    rx.ResponseError("Command # 2 (EVALSHA abc 1 k) of pipeline caused error: READONLY You can't write"),
    rx.ResponseError("MASTERDOWN Link with MASTER is down"),
])
def test_outages_are_retried(exc: Exception) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize("exc", [
    rx.ResponseError("Error running script (call to f_abc): @user_script:5: attempt to compare nil"),
    rx.AuthenticationError("invalid username-password pair"),
    rx.NoPermissionError("NOPERM this user has no permissions to run the 'eval' command"),
    rx.DataError("Invalid input of type: 'dict'"),
    ValueError("corrupt twin"),
    KeyError("p-1"),
])
def test_other_errors_are_not_outages(exc: Exception) -> None:
    assert not is_outage(exc)


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    b = Backoff(initial_s=0.1, cap_s=2.0, floor_s=0.01)
    assert [b.ceiling(n) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert b.ceiling(10_000) == 2.0
    assert b.delay(3, rand=lambda: 1.0) == 0.8
    assert b.delay(3, rand=lambda: 0.5) == 0.4
    assert b.delay(3, rand=lambda: 0.0) == 0.01  # never a busy loop


def _value(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return registry.get_sample_value(name, labels or {})


def test_retry_loop_waits_reports_and_recovers() -> None:
    registry = CollectorRegistry()
    slept: list[float] = []
    seen: list[str] = []
    outage: RedisOutage

    async def sleep(s: float) -> None:
        slept.append(s)
        seen.append(outage.status())
        assert _value(registry, "twinmon_redis_up") == 0

    outage = RedisOutage(registry, Backoff(0.1, 0.4), sleep=sleep)
    failures = iter([rx.ConnectionError("down"), rx.BusyLoadingError("loading"), rx.TimeoutError("slow")])

    async def attempt() -> str:
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return "done"

    assert outage.status() == "ok"
    assert asyncio.run(outage.run("vitals", attempt)) == "done"
    assert len(slept) == 3 and all(0 < s <= 0.4 for s in slept)
    assert seen[0].startswith("redis unavailable since ") and "ConnectionError" in seen[0]
    assert "TimeoutError" in seen[2]
    assert _value(registry, "twinmon_redis_retries_total", {"agent": "vitals"}) == 3
    assert _value(registry, "twinmon_redis_up") == 1
    assert _value(registry, "twinmon_redis_unavailable_since_timestamp_seconds") == 0
    assert outage.status() == "ok"


def test_errors_that_are_not_outages_escape_at_once() -> None:
    registry = CollectorRegistry()
    outage = RedisOutage(registry, Backoff())
    calls = 0

    async def attempt() -> None:
        nonlocal calls
        calls += 1
        raise rx.ResponseError("Error running script: corrupt")

    with pytest.raises(rx.ResponseError):
        asyncio.run(outage.run("vitals", attempt))
    assert calls == 1
    assert _value(registry, "twinmon_redis_up") == 1


def _get(app: Any, path: str) -> tuple[str, bytes]:
    got: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got.append(status)

    body: Iterable[bytes] = app({"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": ""}, start_response)
    return got[0], b"".join(body)


def test_health_endpoints_say_why_the_worker_is_not_ready() -> None:
    registry = CollectorRegistry()
    state = ["ok"]
    app = health_app(registry, lambda: state[0])
    assert _get(app, "/readyz") == ("200 OK", b"ok\n")
    assert _get(app, "/healthz") == ("200 OK", b"ok\n")
    state[0] = "redis unavailable since 2026-01-01T00:00:00Z (ConnectionError); retrying"
    status, body = _get(app, "/readyz")
    assert status.startswith("503") and body.startswith(b"redis unavailable since 2026-01-01T00:00:00Z")
    status, body = _get(app, "/healthz")
    assert status == "200 OK" and b"redis unavailable" in body  # alive: a restart would not bring Redis back
    RedisOutage(registry, Backoff())
    status, body = _get(app, "/metrics")
    assert status.startswith("200") and b"twinmon_redis_up 1.0" in body


class FlakyStore(InMemoryTwinStore):
    """The in-memory store, failing like a Redis that goes away: some calls fail before reaching it, and some after
    their write was applied (the connection broke before the reply)."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__()
        self.failures = failures  # per call, in order: "before", "after" or "ok"

    def _next(self) -> str:
        return self.failures.pop(0) if self.failures else "ok"

    async def load_records(self, patient_ids: Sequence[str]) -> dict[str, tuple[Twin, bytes | None]]:
        if self._next() == "before":
            raise rx.ConnectionError("Connection closed by server.")
        return await super().load_records(patient_ids)

    async def load_packed(self, patient_ids: Sequence[str]) -> dict[str, tuple[PackedTwin, bytes | None]]:
        if self._next() == "before":
            raise rx.ConnectionError("Connection closed by server.")
        return await super().load_packed(patient_ids)

    async def save_many(self, twins: Sequence[AnyTwin], history: Mapping[str, Sequence[HistoryPoint]] | None = None,
                        alert_states: Mapping[str, bytes] | None = None) -> int:
        how = self._next()
        if how == "before":
            raise rx.BusyLoadingError("Redis is loading the dataset in memory")
        written = await super().save_many(twins, history, alert_states)
        if how == "after":
            raise rx.TimeoutError("Timeout reading from socket")
        return written


async def _run(store: InMemoryTwinStore, batches: list[list[RawMessage]]) -> tuple[dict[str, Twin | None], Recorder]:
    published = Recorder()
    proc = BatchProcessor(store, publish=published)

    async def no_wait(_: float) -> None:
        return None

    outage = RedisOutage(CollectorRegistry(), Backoff(), sleep=no_wait)
    for batch in batches:
        await outage.run("vitals", functools.partial(proc.process, batch, NOW + 10**8))
    return {pid: await store.get(pid) for pid in await store.patient_ids()}, published


async def test_retrying_through_failures_applies_every_batch_exactly_once() -> None:
    stream = deteriorating(3600.0)
    batches = [stream[i:i + 200] for i in range(0, len(stream), 200)]
    clean, clean_events = await _run(InMemoryTwinStore(), batches)
    # Per batch: load then save. Fail loads, saves before the write, and saves after it, across the stream.
    failures = ["before", "ok", "before", "after", "ok", "ok", "ok", "after", "after", "ok", "before", "before"] * 5
    store = FlakyStore(failures)
    retried, events = await _run(store, batches)
    assert not store.failures, "not every failure was exercised"
    assert retried == clean  # twins, positions and counters: nothing lost, nothing applied twice
    assert clean_events.events, "the stream raised no alert: the check could not fail"
    # A retried batch republishes its events with the same ids; de-duplicated by id they are the clean run's.
    assert {e.event_id: e for e in events.events} == {e.event_id: e for e in clean_events.events}
    assert len(events.events) > len(clean_events.events)


def _gauge(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name)


async def test_kafka_watch_reports_an_outage_once_and_its_end() -> None:
    registry = CollectorRegistry()
    watch = KafkaWatch(registry)
    assert watch.status() == "ok" and _gauge(registry, "twinmon_kafka_up") == 1

    async def refused() -> object:
        raise ConnectionRefusedError("connect call failed")

    async def silent() -> object:
        await asyncio.sleep(10)
        return None

    async def answered() -> object:
        return object()

    assert not await watch.probe(refused, 1.0)
    began = _gauge(registry, "twinmon_kafka_unavailable_since_timestamp_seconds")
    assert _gauge(registry, "twinmon_kafka_up") == 0 and began
    assert watch.status().startswith("kafka unavailable since ") and "ConnectionRefusedError" in watch.status()
    assert not await watch.probe(silent, 0.05)  # a broker that never answers is an outage too
    assert _gauge(registry, "twinmon_kafka_unavailable_since_timestamp_seconds") == began  # the same outage
    assert "TimeoutError" in watch.status()
    assert await watch.probe(answered, 1.0)
    assert watch.status() == "ok" and _gauge(registry, "twinmon_kafka_up") == 1
    assert _gauge(registry, "twinmon_kafka_unavailable_since_timestamp_seconds") == 0


def test_health_line_names_every_dependency_that_is_down() -> None:
    assert combined_status(lambda: "ok", lambda: "ok")() == "ok"
    assert combined_status(lambda: "redis down", lambda: "ok")() == "redis down"
    assert combined_status(lambda: "redis down", lambda: "kafka down")() == "redis down; kafka down"
