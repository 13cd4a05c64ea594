"""Riding out a Redis outage: which errors are outages, the backoff between attempts, and what the worker reports.

A worker whose Redis is restarting, still loading its append-only file, failing over (``READONLY``) or not
answering in time does not exit: it keeps the batch in hand (unacknowledged, so Kafka still owns it), waits with
capped exponential backoff and full jitter, and tries the whole batch again. Nothing is applied twice: the cache of
twins is dropped after a failed attempt (``BatchProcessor`` forgets on any error) and every store write is
conditional on the log position, so an attempt that did reach Redis before the connection broke is skipped.

Every other error (a Lua script error, a corrupt twin, a bug) is not an outage and keeps the old behaviour: the
agent exits the worker for its supervisor to restart.

``is_outage`` and ``Backoff`` are pure; ``RedisOutage`` holds the state the metrics and health endpoints show.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from redis import exceptions as rx

log = logging.getLogger("twinmon.worker")
T = TypeVar("T")

OUTAGE_REPLIES = ("READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN")
"""Error replies of a Redis that is up but cannot serve writes for now (failover, loading, cluster healing)."""
AGENTS = ("vitals", "enrolments", "alert-actions", "sweep")
"""The ``agent`` label values of ``twinmon_redis_retries_total`` (the worker's callers of ``RedisOutage.run``)."""


def redis_cause(exc: BaseException) -> BaseException:
    """The Redis error behind ``exc``: a Redis Cluster client that cannot (re)build its map of the cluster raises
    ``RedisClusterException`` (not a ``RedisError``) with the node's own error as its cause, such as a refused
    connection or a wrong password."""
    while isinstance(exc, rx.RedisClusterException) and (inner := exc.__cause__ or exc.__context__) is not None:
        exc = inner
    return exc


def is_outage(exc: BaseException) -> bool:
    """True for errors that say Redis is unreachable or not ready now, and will be again; never for errors that
    trying again cannot fix (wrong password, script errors, bad data). On a Redis Cluster also a failover or
    resharding in progress: slots not covered (``CLUSTERDOWN``, no node for a slot), ``TRYAGAIN``, redirections
    beyond the client's limit."""
    exc = redis_cause(exc)
    if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError):
        return False
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | rx.BusyLoadingError | rx.ReadOnlyError):
        return True
    if isinstance(exc, rx.ClusterError | rx.TryAgainError | rx.SlotNotCoveredError):
        return True
    if isinstance(exc, rx.RedisClusterException):
        # The cluster's map read while a failover or resharding is under way.
        return str(exc).startswith(("All slots are not covered", "startup_nodes could not agree"))
    if isinstance(exc, rx.ResponseError):
        # Pipelines prefix the reply ("Command # 2 (EVALSHA ...) of pipeline caused error: READONLY ...").
        text = str(exc)
        return any(text.startswith(r) or f"error: {r}" in text for r in OUTAGE_REPLIES)
    return False


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter: attempt ``n`` (from 0) waits uniformly in [0, min(cap,
    initial * 2**n)], at least ``floor``. Full jitter spreads the reconnections of many workers after an outage."""

    initial_s: float = 0.1
    cap_s: float = 10.0
    floor_s: float = 0.01

    def ceiling(self, attempt: int) -> float:
        return min(self.cap_s, self.initial_s * (2.0 ** min(attempt, 60)))

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return max(self.floor_s, rand() * self.ceiling(attempt))


class RedisOutage:
    """Whether Redis is usable, since when not, and the metrics that say so. Read by the health endpoint's thread
    (plain attribute reads of immutable values)."""

    def __init__(self, registry: CollectorRegistry, backoff: Backoff,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.backoff = backoff
        self._sleep = sleep
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.up = Gauge("twinmon_redis_up", "1 while Redis answers, 0 while the worker waits for it to come back",
                        registry=registry)
        self.up.set(1)
        self.retries = Counter("twinmon_redis_retries_total",
                               "Attempts repeated because Redis was unreachable, loading, read-only or slow",
                               ["agent"], registry=registry)
        for agent in AGENTS:
            self.retries.labels(agent)  # a series from the start, so that rate() sees the first retry
        self.down_since_gauge = Gauge(
            "twinmon_redis_unavailable_since_timestamp_seconds",
            "When the current Redis outage began (0 while Redis answers)", registry=registry)

    def status(self) -> str:
        if self.down_since is None:
            return "ok"
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.down_since))
        return f"redis unavailable since {since} ({self.last_error}); retrying"

    def _down(self, exc: BaseException) -> None:
        self.last_error = type(exc).__name__
        if self.down_since is None:
            self.down_since = time.time()
            self.down_since_gauge.set(self.down_since)
            self.up.set(0)

    def _recovered(self, agent: str, attempts: int) -> None:
        if self.down_since is not None:
            log.warning("redis is back after %.1f s; the %s agent resumes after %d retries",
                        time.time() - self.down_since, agent, attempts)
            self.down_since = None
            self.last_error = None
            self.down_since_gauge.set(0)
            self.up.set(1)

    async def run(self, agent: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()`` until it succeeds or fails with something that is not an outage (raised as is).

        The caller must make each attempt safe to repeat (the processor forgets its cache after an error, and
        store writes are conditional on the log position). Logs carry the agent and error class, never data."""
        n = 0
        while True:
            try:
                result = await attempt()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._down(exc)
                self.retries.labels(agent).inc()
                delay = self.backoff.delay(n)
                log.warning("redis unavailable (%s) in the %s agent; retry %d in %.2f s",
                            type(exc).__name__, agent, n + 1, delay)
                n += 1
                await self._sleep(delay)
                continue
            self._recovered(agent, n)
            return result


class KafkaWatch:
    """Whether the worker can reach a Kafka broker: a metadata request every few seconds (``probe``).

    Faust and aiokafka reconnect by themselves and nothing is lost while the broker is away (offsets are committed
    only after a batch is stored); this only makes an outage visible: ``twinmon_kafka_up``, the time it began, and
    the readiness endpoint's text. Read by the health endpoint's thread (plain attribute reads)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.up = Gauge("twinmon_kafka_up", "1 while a Kafka broker answers the worker's metadata probe, 0 while "
                        "none does", registry=registry)
        self.up.set(1)
        self.down_since_gauge = Gauge(
            "twinmon_kafka_unavailable_since_timestamp_seconds",
            "When the current Kafka outage began (0 while a broker answers)", registry=registry)

    def status(self) -> str:
        if self.down_since is None:
            return "ok"
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.down_since))
        return f"kafka unavailable since {since} ({self.last_error}); the client reconnects by itself"

    async def probe(self, fetch_metadata: Callable[[], Awaitable[object]], timeout_s: float) -> bool:
        """One metadata request; True when a broker answered within ``timeout_s``. Any failure is an outage:
        a definitive refusal (credentials, ACLs) was already refused at start-up (``streams.connect_check``)."""
        try:
            await asyncio.wait_for(fetch_metadata(), timeout_s)
        except Exception as exc:  # aiokafka raises KafkaError subclasses, OSError or a timeout here
            self.last_error = type(exc).__name__
            if self.down_since is None:
                self.down_since = time.time()
                self.down_since_gauge.set(self.down_since)
                self.up.set(0)
                log.warning("kafka unavailable (%s); the client keeps reconnecting", self.last_error)
            return False
        if self.down_since is not None:
            log.warning("kafka is back after %.1f s", time.time() - self.down_since)
            self.down_since = None
            self.last_error = None
            self.down_since_gauge.set(0)
            self.up.set(1)
        return True


def combined_status(*statuses: Callable[[], str]) -> Callable[[], str]:
    """The health endpoint's one line: "ok", or every dependency that is not, joined by "; "."""

    def status() -> str:
        problems = [text for s in statuses if (text := s()) != "ok"]
        return "; ".join(problems) if problems else "ok"

    return status
