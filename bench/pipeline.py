"""``twinmon bench`` (and ``make bench``): throughput, latency, memory, recovery and scale-out on real services.

Against a real Kafka broker and a real Redis (started from deploy/local in a temporary directory when run
from a checkout, or the ones given with ``--bootstrap`` and ``--redis-url``), each stage on fresh topics,
consumer groups and key prefixes:

throughput  10,000 simulated patients' readings produced beforehand; the ceiling is a bare aiokafka consumer
            reading them back with the worker's fetch settings (best of two; and once with 4 MiB fetches), and
            decoding them in-process (orjson alone, and the wire schema's ``decode``); then Faust alone
            (``bench.faust_noop``: the same app settings and ``take_events`` batches, no work: Faust's per-event
            cost); then ``twinmon worker`` with risk and alerts on, timed through its own
            ``twinmon_events_consumed_total`` from the first scrape above zero to N (start-up and group join
            excluded). Worker CPU per event is reported too: it holds steadier than events/s when other programs
            share the machine.
latency     the steady state of ``bench.steady``: every patient enrolled and holding an hour-old twin in Redis,
            one reading a second each, 1% invalid, 1% sent twice, nurses' entries, one patient in 50 unwell (alerts
            raised and open). Every latency counts from the message's scheduled send time (no coordinated
            omission) and no sample is dropped: one never seen counts with what it waited, as unfinished.
            Reading to twin: for a sample of readings (about 50 a second, after a 10 s warm-up) the bench notes
            the partition/offset the broker gave it, then polls the patient's twin hash in Redis every 2 ms until
            its stored log position reaches that offset. Reading to alert: a consumer on the alerts topic matches
            each alert event (patient, event time) to the reading that triggered it. Also the worker's longest
            event-loop stall and its full garbage collections (``streams.loop_health``).
memory      100,000 realistic twins (1,000 simulated patients' twins after ten minutes of data, 100 copies each
            under new ids) written to Redis as an hour of running leaves them: each on its patient's partition and
            in that partition's index, each patient enrolled; Redis ``used_memory`` before/after per twin, and one
            patient's twin hash and history list after an hour of data; then a backlog of one reading per
            patient, and ``twinmon worker`` started on it: its resident memory holding every twin, and its growth
            per resident twin above its RSS before it held any.
recovery    the same run: from spawning that worker (with 100,000 twins in Redis and the backlog waiting) to the
            backlog consumed and written (caught up and serving).
scale-out   two workers in one consumer group on an 8-partition topic: their combined rate, the partitions
            each got, and every twin in Redis compared with a replay of the log in-process (positions, counts,
            every filter value bit for bit), which fails if any event was applied twice or lost.

Prints a table, writes JSON. Exits 1 only when the pipeline is broken (not when it is slow), 130 on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bench import steady
from bench.options import BenchOptions
from simulation.simulator import simulate
from streams.schema import decode, encode
from twin_state import codec
from twin_state.catalogue import Metric
from twin_state.errors import TwinmonError
from twin_state.history import history_point
from twin_state.packed import from_twin
from twin_state.redis_store import RedisProfileStore, RedisTwinStore
from twin_state.twin import Position, Reading, Twin, new_twin, step

# deploy/local next to the package in a checkout; an installed package has none and needs --bootstrap/--redis-url.
LOCAL = Path(__file__).resolve().parents[1] / "deploy" / "local"
# The console script next to the interpreter running us: the code under test, not some other install.
TWINMON = str(Path(sys.executable).parent / "twinmon")
SEED = 1
MiB = 1024 * 1024
_PARTITIONER = DefaultPartitioner()
SERVICE_START_TIMEOUT_S = 300.0
WORKER_START_TIMEOUT_S = 180.0
STALL_TIMEOUT_S = 120.0
POLL_S = 0.1
LATENCY_POLL_S = 0.002
LATENCY_SAMPLES_PER_S = 50
LATENCY_DRAIN_S = 30.0
"""After the last send, how long unseen samples are waited for before they count as unfinished."""
LATENCY_WARMUP_S = 10.0
PLAN_START_MS = 1_000_000_000_000
CONSUMED = "twinmon_events_consumed_total"


class BenchFailure(TwinmonError):
    """The pipeline (or a service it needs) is broken; the figures would be meaningless."""


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- services


@dataclass(frozen=True)
class Services:
    bootstrap: str
    redis_url: str


def _script(name: str, verb: str, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", str(LOCAL / name), verb, str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while cleaning up: a second Ctrl-C must not leave a broker running."""
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def local_services(tmp: Path) -> Iterator[Services]:
    """Kafka and Redis from deploy/local, started side by side, stopped on every way out."""
    kafka_state, redis_state = tmp / "kafka", tmp / "redis"
    try:
        procs = {"kafka.sh": _script("kafka.sh", "start", kafka_state),
                 "redis.sh": _script("redis.sh", "start", redis_state)}
        out: dict[str, str] = {}
        for name, proc in procs.items():
            try:
                stdout, stderr = proc.communicate(timeout=SERVICE_START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            if proc.returncode != 0 or not stdout.strip():
                raise BenchFailure(f"{name} start failed (exit {proc.returncode}):\n{stderr[-3000:]}")
            out[name] = stdout.strip().splitlines()[-1]
        yield Services(bootstrap=out["kafka.sh"], redis_url=out["redis.sh"])
    finally:
        with uninterruptible():
            say("stopping Kafka and Redis")
            for proc in [_script("kafka.sh", "stop", kafka_state), _script("redis.sh", "stop", redis_state)]:
                try:
                    proc.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()


@contextmanager
def given_services(bootstrap: str, redis_url: str) -> Iterator[Services]:
    yield Services(bootstrap, redis_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deployment_env(services: Services, partitions: int, tmp: Path) -> dict[str, str]:
    """One isolated twinmon installation: its own topics, consumer group and Redis key prefix."""
    tag = uuid.uuid4().hex[:8]
    return {
        **os.environ,
        "TWINMON_KAFKA_BOOTSTRAP": services.bootstrap,
        "TWINMON_REDIS_URL": services.redis_url,
        "TWINMON_REDIS_PREFIX": f"b{tag}",
        "TWINMON_APP_ID": f"twinmon-bench-{tag}",
        "TWINMON_TOPIC_VITALS": f"vitals-{tag}",
        "TWINMON_TOPIC_DLQ": f"vitals-{tag}.dlq",
        "TWINMON_TOPIC_ALERTS": f"alerts-{tag}",
        "TWINMON_TOPIC_ENROLMENTS": f"enrolments-{tag}",
        "TWINMON_TOPIC_ALERT_ACTIONS": f"alert-actions-{tag}",
        "TWINMON_PARTITIONS": str(partitions),
        "TWINMON_LOG_LEVEL": "warning",
        "TWINMON_DATA_DIR": str(tmp / f"worker-{tag}"),
    }


def create_topics(env: dict[str, str]) -> None:
    created = subprocess.run([TWINMON, "topics", "create"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    if created.returncode != 0:
        raise BenchFailure(f"twinmon topics create exited {created.returncode}: {created.stderr.strip()}")


# ------------------------------------------------------------------------------------- generate, produce


def readings(patients: int, events: int, start_ms: int, rate: float = 1.0) -> list[tuple[float, Reading]]:
    """The first ``events`` readings of ``patients`` simulated patients (5 % spare time for drop-outs)."""
    simulated_s = events / (patients * rate) * 1.05
    return list(islice(simulate(patients, simulated_s, rate, SEED, start_ms), events))


def wire(rs: Sequence[tuple[float, Reading]]) -> list[tuple[bytes, bytes]]:
    return [(r.patient_id.encode(), encode(r)) for _, r in rs]


def producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                            max_batch_size=256 * 1024)


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]]
                  ) -> tuple[float, list[tuple[int, int]]]:
    """Send everything, wait for every acknowledgement; the seconds it took and each message's position."""
    prod = producer(bootstrap)
    await prod.start()
    try:
        started = time.perf_counter()
        positions: list[tuple[int, int]] = []
        pending: list[asyncio.Future[Any]] = []
        for key, value in messages:
            pending.append(await prod.send(topic, value=value, key=key))
            if len(pending) >= 10_000:
                positions += [(m.partition, m.offset) for m in await asyncio.gather(*pending)]
                pending.clear()
        positions += [(m.partition, m.offset) for m in await asyncio.gather(*pending)]
        return time.perf_counter() - started, positions
    finally:
        await prod.stop()


# ----------------------------------------------------------------------------------------------- ceiling


WORKER_FETCH: dict[str, Any] = {"max_partition_fetch_bytes": 1 * MiB, "fetch_max_wait_ms": 25, "check_crcs": True}
"""The fetch settings Faust gives the worker's consumer (``faust_app``'s conf: consumer_max_fetch_size,
broker_check_crcs, no max_poll_records; and ``TWINMON_KAFKA_FETCH_MAX_WAIT_MS``), checked against it by
tests/unit/bench."""
BIG_FETCH: dict[str, Any] = {"max_partition_fetch_bytes": 4 * MiB, "fetch_max_bytes": 64 * MiB}


async def consume_rate(bootstrap: str, topic: str, n: int, fetch: dict[str, Any] | None = None,
                       max_records: int | None = None) -> float:
    """Events/s of a bare aiokafka consumer (no group, no decoding) reading ``n`` records, from the first, with
    ``fetch`` settings (the worker's by default) and at most ``max_records`` a ``getmany`` (none, as the worker)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, **(WORKER_FETCH if fetch is None else fetch))
    await consumer.start()
    try:
        seen, first = 0, None
        last_progress = time.monotonic()
        while seen < n:
            asked = time.monotonic()
            batch = await consumer.getmany(timeout_ms=1000, max_records=max_records)
            got = sum(len(records) for records in batch.values())
            now = time.monotonic()
            if got:
                # Timed from asking for the first records that came: a topic read in one fetch still takes its time.
                first = asked if first is None else first
                seen += got
                last_progress = now
            elif now - last_progress > STALL_TIMEOUT_S:
                raise BenchFailure(f"raw consumer stuck at {seen} of {n} records for {STALL_TIMEOUT_S:.0f}s")
        assert first is not None
        return n / max(time.monotonic() - first, 1e-9)
    finally:
        await consumer.stop()


def decode_rates(messages: Sequence[tuple[bytes, bytes]]) -> tuple[float, float]:
    """In this process, events/s of ``orjson.loads`` alone over the values, and of the wire schema's ``decode``."""
    values = [v for _, v in messages]
    loads = orjson.loads
    started = time.perf_counter()
    for v in values:
        loads(v)
    orjson_s = time.perf_counter() - started
    now_ms = int(time.time() * 1000)
    started = time.perf_counter()
    for k, v in messages:
        decode(v, k, now_ms)
    return len(values) / orjson_s, len(values) / (time.perf_counter() - started)


def faust_noop_rate(env: dict[str, str], n: int, log_path: Path) -> dict[str, Any]:
    env = {**env, "TWINMON_APP_ID": env["TWINMON_APP_ID"] + "-noop", "TWINMON_DATA_DIR": str(log_path) + ".d"}
    out = log_path.with_suffix(".json")
    with log_path.open("ab") as log:
        done = subprocess.run([sys.executable, "-m", "bench.faust_noop", str(n), str(out)], env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=WORKER_START_TIMEOUT_S + STALL_TIMEOUT_S, check=False)
    if done.returncode != 0 or not out.exists():
        raise BenchFailure(f"the Faust no-op worker exited {done.returncode}:\n{log_path.read_text()[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# ------------------------------------------------------------------------------------------------ worker


def scrape(url: str) -> list[tuple[str, dict[str, str], float]] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (our own http://127.0.0.1 URL)
            text = resp.read().decode()
    except OSError:
        return None
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: list[tuple[str, dict[str, str], float]] | None, name: str, **labels: str) -> float:
    return sum(v for n, lab, v in samples or () if n == name and all(lab.get(k) == x for k, x in labels.items()))


def resident_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    spawned: float

    @classmethod
    def start(cls, env: dict[str, str], log: Path) -> Worker:
        port = free_port()
        with log.open("ab") as out:
            proc = subprocess.Popen([TWINMON, "worker"], env={**env, "TWINMON_METRICS_PORT": str(port)},
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return cls(proc, f"http://127.0.0.1:{port}/metrics", log, time.monotonic())

    def scrape(self) -> list[tuple[str, dict[str, str], float]] | None:
        if self.proc.poll() is not None:
            raise self.broken(f"worker exited with {self.proc.returncode}")
        return scrape(self.url)

    def broken(self, why: str) -> BenchFailure:
        return BenchFailure(f"{why}\n--- worker log (tail) ---\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> int:
        with uninterruptible():
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    return self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    say("worker still running 30s after SIGTERM; killing it")
                    self.proc.kill()
            return self.proc.wait(10)


@dataclass
class Timed:
    """A run of workers until ``done`` events counted: rate from the first scrape above zero."""

    rate: float | None
    seconds: float
    counted: float
    spawn_to_first_s: float
    spawn_to_done_s: float
    cpu_s: float
    samples: list[list[tuple[str, dict[str, str], float]]] = field(default_factory=list)
    rss: list[int | None] = field(default_factory=list)
    rss_at_first: list[int | None] = field(default_factory=list)
    rss_empty: list[int | None] = field(default_factory=list)
    """Each worker's RSS at its last scrape holding no twin (started, not yet loading): the base of growth."""


def run_until(workers: Sequence[Worker], n: int, name: str = CONSUMED, **labels: str) -> Timed:
    """Poll the workers' metrics until the sum of ``name`` reaches ``n``; time it from the first event."""
    first: tuple[float, float] | None = None
    cpu_first = 0.0
    rss_first: list[int | None] = []
    rss_empty: list[int | None] = [None] * len(workers)
    progress_at, progress = workers[0].spawned, 0.0
    while True:
        scraped = [w.scrape() for w in workers]
        now = time.monotonic()
        for i, (w, s) in enumerate(zip(workers, scraped, strict=True)):
            if s is not None and total(s, "twinmon_twins_resident") == 0:
                rss_empty[i] = resident_bytes(w.proc.pid)
        count = sum(total(s, name, **labels) for s in scraped)
        if count > 0 and first is None:
            first = (now, count)
            cpu_first = sum(cpu_seconds(w.proc.pid) for w in workers)
            rss_first = [resident_bytes(w.proc.pid) for w in workers]
        if count >= n:
            break
        if count > progress:
            progress_at, progress = now, count
        limit = WORKER_START_TIMEOUT_S if first is None else STALL_TIMEOUT_S
        if now - progress_at > limit:
            raise workers[0].broken(f"{name} stuck at {count:.0f} of {n} for {limit:.0f}s")
        time.sleep(POLL_S)
    assert first is not None
    elapsed, counted = now - first[0], count - first[1]
    return Timed(counted / elapsed if elapsed > 0 and counted > 0 else None, elapsed, counted,
                 first[0] - workers[0].spawned, now - workers[0].spawned,
                 sum(cpu_seconds(w.proc.pid) for w in workers) - cpu_first,
                 [s or [] for s in scraped], [resident_bytes(w.proc.pid) for w in workers], rss_first, rss_empty)


def redis_used(url: str) -> int:
    client = SyncRedis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def count_twins(url: str, prefix: str) -> int:
    client = SyncRedis.from_url(url)
    try:
        return sum(1 for k in client.scan_iter(match=f"{prefix}:twin:{{*}}", count=1000) if k.endswith(b"}"))
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ stages


def stage_throughput(options: BenchOptions, services: Services, tmp: Path) -> dict[str, Any]:
    env = deployment_env(services, options.partitions, tmp)
    say(f"throughput: simulating {options.patients:,} patients for {options.events:,} events")
    start_ms = int(time.time() * 1000) - int(options.events / options.patients * 1.05 * 1000)
    messages = wire(readings(options.patients, options.events, start_ms))
    n = len(messages)
    patients = len({k for k, _ in messages})
    create_topics(env)
    produce_s, _ = asyncio.run(produce(services.bootstrap, env["TWINMON_TOPIC_VITALS"], messages))
    say(f"produced {n:,} events in {produce_s:.1f}s")
    ceilings = [asyncio.run(consume_rate(services.bootstrap, env["TWINMON_TOPIC_VITALS"], n)) for _ in (1, 2)]
    say("raw consume (the worker's fetch settings): " + ", ".join(f"{c:,.0f}" for c in ceilings) + " events/s")
    big = asyncio.run(consume_rate(services.bootstrap, env["TWINMON_TOPIC_VITALS"], n, BIG_FETCH, 5000))
    decode_only, schema_decode = decode_rates(messages)
    say(f"raw consume (4 MiB fetches): {big:,.0f} events/s; orjson alone {decode_only:,.0f}/s, "
        f"the wire schema's decode {schema_decode:,.0f}/s")
    noop = faust_noop_rate(env, n, tmp / "noop.log")
    say(f"Faust no-op: {noop['events_per_s']:,.0f} events/s")
    before = redis_used(services.redis_url)
    worker = Worker.start(env, tmp / "worker-throughput.log")
    try:
        timed = run_until([worker], n, CONSUMED, topic=env["TWINMON_TOPIC_VITALS"])
    finally:
        exit_code = worker.stop()
    say(f"worker: {timed.rate or 0:,.0f} events/s")
    twins = count_twins(services.redis_url, env["TWINMON_REDIS_PREFIX"])
    if twins != patients:
        raise BenchFailure(f"Redis holds {twins} twins, expected one per patient: {patients}")
    m = timed.samples[0]
    batches = total(m, "twinmon_batch_size_count")
    ceiling = max(ceilings)
    return {
        "events": n, "patients": patients, "partitions": options.partitions,
        "event_bytes_mean": sum(len(v) for _, v in messages) / n,
        "produce_events_per_s": n / produce_s,
        "raw_consume_events_per_s_runs": ceilings,
        "raw_consume_events_per_s": ceiling,
        "raw_consume_big_fetch_events_per_s": big,
        "decode_only_events_per_s": decode_only,
        "schema_decode_events_per_s": schema_decode,
        "faust_noop_events_per_s": noop["events_per_s"],
        "faust_noop_cpu_us_per_event": noop["cpu_s"] / noop["events"] * 1e6,
        "faust_noop_over_raw": noop["events_per_s"] / ceiling,
        "e2e_events_per_s": timed.rate,
        "e2e_over_raw": (timed.rate or 0) / ceiling,
        "e2e_timed_s": timed.seconds,
        "worker_startup_s": timed.spawn_to_first_s,
        "worker_cpu_us_per_event": timed.cpu_s / max(timed.counted, 1) * 1e6,
        "worker_cpu_share": timed.cpu_s / timed.seconds if timed.seconds else None,
        "mean_batch_size": total(m, "twinmon_batch_size_sum") / batches if batches else None,
        "twins_persisted": total(m, "twinmon_twins_persisted_total"),
        "alerts_published": total(m, "twinmon_alerts_total"),
        "events_dead_lettered": total(m, "twinmon_events_dead_lettered_total"),
        "worker_rss_bytes": timed.rss[0],
        "redis_bytes_per_patient": (redis_used(services.redis_url) - before) / patients,
        "worker_exit_code_on_sigterm": exit_code,
    }


def percentiles(xs: Sequence[float]) -> dict[str, float | int | None]:
    if not xs:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    s = sorted(xs)

    def pct(q: float) -> float:
        return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))] * 1000.0

    return {"n": len(s), "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99), "max_ms": s[-1] * 1000.0}


class _TwinWatch:
    """Reading to twin: every ``LATENCY_POLL_S``, one pipeline of HMGETs for every sampled reading not yet seen
    persisted (its log position written to the twin's hash). No sample is given up: one still unseen when the run
    ends (``finish``) counts with the time it has waited so far, a lower bound, and is counted as unfinished."""

    def __init__(self, client: Redis, store: RedisTwinStore) -> None:
        self.client, self.store = client, store
        self.pending: list[tuple[str, asyncio.Future[Any], float]] = []
        self.seconds: list[float] = []
        self.unfinished = 0
        self.sending = True
        self.deadline = float("inf")

    async def run(self) -> None:
        while self.sending or self.pending:
            ready = [(pid, fut.result(), t) for pid, fut, t in self.pending if fut.done()]
            if ready:
                async with self.client.pipeline(transaction=False) as pipe:
                    for pid, _, _ in ready:
                        pipe.hmget(self.store.key(pid), ["p", "o"])
                    rows = await pipe.execute()
                now = time.monotonic()
                done: set[int] = set()
                for (_, meta, t), (p, o) in zip(ready, rows, strict=True):
                    if p is not None and int(p) == meta.partition and int(o) >= meta.offset:
                        self.seconds.append(now - t)
                        done.add(id(meta))
                self.pending[:] = [x for x in self.pending if not (x[1].done() and id(x[1].result()) in done)]
            if time.monotonic() > self.deadline:
                self.finish()
            await asyncio.sleep(LATENCY_POLL_S)

    def finish(self) -> None:
        now = time.monotonic()
        self.seconds.extend(now - t for _, _, t in self.pending)
        self.unfinished += len(self.pending)
        self.pending.clear()


class _AlertWatch:
    """Reading to alert event: each alert event matched to the reading (patient, measured-at) that raised it."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.sent_at: dict[tuple[str, int], float] = {}
        self.seconds: list[float] = []
        self.unmatched = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            got = await self.consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in got.values():
                for rec in records:
                    event = orjson.loads(rec.value)
                    t = self.sent_at.get((event["patient_id"], event["at"]))
                    if t is None:
                        self.unmatched += 1
                    else:
                        self.seconds.append(now - t)


async def paced(services: Services, env: dict[str, str], planned: Sequence[steady.Planned], seconds: float,
                warmup_s: float) -> dict[str, Any]:
    """Send ``planned`` on its schedule (``bench.steady``), measure.

    Every latency is timed from the message's scheduled send time, not from when the bench got round to sending
    it, so a stalled worker or producer cannot hide its own delay (coordinated omission). Readings to twin are
    sampled only after ``warmup_s``: in the first seconds every patient is loaded from Redis and evaluated on its
    first reading, which is start-up, not the steady state."""
    topic, alerts_topic = env["TWINMON_TOPIC_VITALS"], env["TWINMON_TOPIC_ALERTS"]
    store = RedisTwinStore(Redis.from_url(services.redis_url), env["TWINMON_REDIS_PREFIX"])
    prod = producer(services.bootstrap)
    twins = _TwinWatch(Redis.from_url(services.redis_url), store)
    alerts = _AlertWatch(AIOKafkaConsumer(alerts_topic, bootstrap_servers=services.bootstrap, group_id=None,
                                          auto_offset_reset="latest"))
    await prod.start()
    await alerts.consumer.start()
    await alerts.consumer.seek_to_end()
    reader = asyncio.create_task(alerts.run())
    poller = asyncio.create_task(twins.run())
    sampled = [p for p in planned if p.sample and p.at_s >= warmup_s]
    every = max(1, round(len(sampled) / max((seconds - warmup_s) * LATENCY_SAMPLES_PER_S, 1)))
    late = 0
    t0 = time.monotonic()
    shift = int(time.time() * 1000) - PLAN_START_MS
    try:
        for i, p in enumerate(planned):
            scheduled = t0 + p.at_s
            wait = scheduled - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -0.05:
                late += 1
            value = p.value
            if p.reading is not None:
                r = replace(p.reading, measured_at=p.reading.measured_at + shift)
                value = encode(r)
                alerts.sent_at.setdefault((r.patient_id, r.measured_at), scheduled)
            fut = await prod.send(topic, value=value, key=p.key)
            if p.sample and p.at_s >= warmup_s and i % every == 0:
                twins.pending.append((p.key.decode(), fut, scheduled))
        offered_s = time.monotonic() - t0
        await prod.flush()
        twins.sending = False
        twins.deadline = time.monotonic() + LATENCY_DRAIN_S
        await poller
        await asyncio.sleep(1.0)  # alerts of the last readings
    finally:
        alerts.stop.set()
        await reader
        await prod.stop()
        await alerts.consumer.stop()
        await twins.client.aclose()
    return {"offered_events_per_s": round(len(planned) / seconds), "achieved_events_per_s": len(planned) / offered_s,
            "events": len(planned), "warmup_s": warmup_s, "sent_late_over_50ms": late,
            "reading_to_twin": percentiles(twins.seconds), "reading_to_twin_unfinished": twins.unfinished,
            "reading_to_alert": percentiles(alerts.seconds), "alert_events_unmatched": alerts.unmatched}


def stage_latency(options: BenchOptions, services: Services, tmp: Path) -> list[dict[str, Any]]:
    out = []
    for rate in options.rates:
        env = deployment_env(services, options.partitions, tmp)
        create_topics(env)
        planned = steady.plan(rate, options.latency_seconds, PLAN_START_MS)
        ids = steady.patient_ids(planned)
        say(f"latency: {len(ids):,} patients enrolled, their twins {steady.AGED_MINUTES:.0f} min old in Redis")
        asyncio.run(seed(services, env["TWINMON_REDIS_PREFIX"], steady.aged_twins(ids), options.partitions))
        worker = Worker.start(env, tmp / f"worker-latency-{rate}.log")
        try:
            # One probe reading: the worker has joined its group and is consuming before the clock starts.
            probe = new_reading("bench-probe")
            asyncio.run(produce(services.bootstrap, env["TWINMON_TOPIC_VITALS"],
                                [(b"bench-probe", encode(probe))]))
            run_until([worker], 1, CONSUMED, topic=env["TWINMON_TOPIC_VITALS"])
            say(f"latency: offering {len(planned) / options.latency_seconds:,.0f} events/s for "
                f"{options.latency_seconds:.0f}s")
            result = asyncio.run(paced(services, env, planned, options.latency_seconds, LATENCY_WARMUP_S))
            result.update(patients=len(ids), **loop_figures(worker.scrape()))
        finally:
            worker.stop()
        say(f"latency at {rate:,}/s: reading->twin p99 {result['reading_to_twin']['p99_ms'] or 0:.0f} ms "
            f"(max {result['reading_to_twin']['max_ms'] or 0:.0f}), reading->alert p99 "
            f"{result['reading_to_alert']['p99_ms'] or 0:.0f} ms ({result['reading_to_alert']['n']} alerts); "
            f"longest event-loop stall {result['event_loop_stall_max_ms'] or 0:.0f} ms")
        out.append(result)
    return out


def loop_figures(samples: list[tuple[str, dict[str, str], float]] | None) -> dict[str, Any]:
    """The worker's longest event-loop stall and its full garbage collections, from one scrape."""
    stall = [v for n, _, v in samples or () if n == "twinmon_event_loop_stall_max_seconds"]
    full = total(samples, "twinmon_gc_pause_seconds_count", generation="2")
    return {"event_loop_stall_max_ms": stall[0] * 1000.0 if stall else None, "gc_full_collections": full,
            "gc_full_collection_mean_ms": total(samples, "twinmon_gc_pause_seconds_sum", generation="2") / full * 1000
            if full else None}


def kafka_partition(patient_id: str, partitions: int) -> int:
    """The partition the producer's default partitioner (murmur2 of the key) sends ``patient_id`` to."""
    every = list(range(partitions))
    return int(_PARTITIONER(patient_id.encode(), every, every))


async def seed(services: Services, prefix: str, twins: Sequence[Twin], partitions: int, enrol: bool = True) -> None:
    """What Redis holds for these patients an hour into a shift: each twin on its patient's partition (as its last
    reading left it, packed as the worker stores it) and in that partition's index, and with ``enrol`` each
    patient's profile (in ``CARE_TEAMS`` care teams), so that a worker preloads them when it is assigned the
    partitions."""
    client = Redis.from_url(services.redis_url)
    store, profiles = RedisTwinStore(client, prefix), RedisProfileStore(client, prefix)
    now_ms = int(time.time() * 1000)
    try:
        placed = [replace(t, partition=kafka_partition(t.patient_id, partitions), offset=-1) for t in twins]
        for i in range(0, len(placed), 2000):
            chunk = placed[i:i + 2000]
            await store.save_many([from_twin(t) for t in chunk])  # in the format the worker writes
            members: dict[int, list[str]] = {}
            for t in chunk:
                members.setdefault(t.partition, []).append(t.patient_id)
            await store.index_partitions(members)
            if enrol:
                for k in range(0, len(chunk), 100):  # 100 at a time: within the client's connection pool
                    await asyncio.gather(*(profiles.save(steady.profile(t.patient_id, i + k + j, now_ms))
                                           for j, t in enumerate(chunk[k:k + 100])))
    finally:
        await client.aclose()


def new_reading(pid: str) -> Reading:
    return Reading(pid, "bench-device", Metric.HEART_RATE, 72.0, int(time.time() * 1000), 1, 0.9)


def template_twins(templates: int, minutes: float) -> tuple[dict[str, Twin], list[Reading]]:
    """Twins of ``templates`` simulated patients after ``minutes`` of data, and each one's next reading."""
    seconds = minutes * 60.0
    start_ms = int(time.time() * 1000) - int(seconds * 1000) - 30_000
    twins: dict[str, Twin] = {}
    following: dict[str, Reading] = {}
    for i, (delivered_s, r) in enumerate(simulate(templates, seconds + 5.0, 1.0, SEED, start_ms)):
        if delivered_s < seconds:
            twin = twins.get(r.patient_id) or new_twin(r.patient_id)
            twins[r.patient_id], _ = step(twin, r, Position(-1, i))
        elif r.patient_id not in following:
            following[r.patient_id] = r
    return twins, [following[pid] for pid in twins if pid in following]


def key_sizes(url: str, prefix: str, pid: str) -> dict[str, int]:
    client = SyncRedis.from_url(url)
    try:
        twin_key, hist_key = f"{prefix}:twin:{{{pid}}}", f"{prefix}:hist:{{{pid}}}"
        return {"twin_hash_bytes": int(client.memory_usage(twin_key) or 0),
                "history_list_bytes": int(client.memory_usage(hist_key) or 0),
                "twin_blob_bytes": int(client.hstrlen(twin_key, "s"))}
    finally:
        client.close()


async def patient_hour(services: Services, prefix: str, pid: str = "bench-hour-0") -> dict[str, int]:
    """Redis bytes of one simulated patient after an hour of data written as the worker writes it: the twin hash
    and the history list (one point per vital per minute) beside it."""
    start_ms = int(time.time() * 1000) - 3_600_000
    twin, points = new_twin(pid), []
    for i, (_, r) in enumerate(simulate(1, 3600.0, 1.0, SEED, start_ms)):
        r = replace(r, patient_id=pid)
        before = twin
        twin, outcome = step(twin, r, Position(0, i))
        point = history_point(before, twin, r, outcome)
        if point is not None:
            points.append(point)
    client = Redis.from_url(services.redis_url)
    try:
        await RedisTwinStore(client, prefix).save_many([twin], {pid: points})
    finally:
        await client.aclose()
    sizes = key_sizes(services.redis_url, prefix, pid)
    return {"patient_hour_twin_hash_bytes": sizes["twin_hash_bytes"],
            "patient_hour_history_bytes": sizes["history_list_bytes"],
            "patient_hour_history_points": len(points),
            "patient_hour_redis_bytes": sizes["twin_hash_bytes"] + sizes["history_list_bytes"]}


def stage_memory_recovery(options: BenchOptions, services: Services, tmp: Path) -> dict[str, Any]:
    env = deployment_env(services, options.partitions, tmp)
    prefix = env["TWINMON_REDIS_PREFIX"]
    templates_n = min(1000, options.twins)
    copies = max(1, options.twins // templates_n)
    say(f"memory: {templates_n:,} template twins after 10 min of data (every wearable vital), {copies} copies each")
    templates, following = template_twins(templates_n, 10.0)
    before = redis_used(services.redis_url)
    ids = [f"{pid}-c{c:03d}" for c in range(copies) for pid in templates]
    asyncio.run(seed(services, prefix, [replace(templates[i.rsplit("-c", 1)[0]], patient_id=i) for i in ids],
                     options.partitions))
    after = redis_used(services.redis_url)
    n_twins = len(ids)
    by_template = {r.patient_id: r for r in following}
    backlog = []
    for new_id in ids:
        r = by_template.get(new_id.rsplit("-c", 1)[0])
        if r is not None:
            backlog.append((new_id.encode(), encode(replace(r, patient_id=new_id))))
    create_topics(env)
    asyncio.run(produce(services.bootstrap, env["TWINMON_TOPIC_VITALS"], backlog))
    say(f"recovery: {n_twins:,} twins in Redis, a backlog of {len(backlog):,} readings; starting a worker")
    worker = Worker.start(env, tmp / "worker-recovery.log")
    try:
        timed = run_until([worker], len(backlog), CONSUMED, topic=env["TWINMON_TOPIC_VITALS"])
        resident = total(timed.samples[0], "twinmon_twins_resident")
    finally:
        worker.stop()
    rss, rss_first = timed.rss[0], timed.rss_at_first[0]
    say(f"recovery: caught up {timed.spawn_to_done_s:.1f}s after spawn; worker RSS {(rss or 0) / MiB:.0f} MiB")
    return {
        "twins": n_twins, "backlog_events": len(backlog),
        "redis_used_memory_delta_bytes": after - before,
        "redis_bytes_per_twin": (after - before) / n_twins,
        **key_sizes(services.redis_url, prefix, ids[0]),
        **asyncio.run(patient_hour(services, prefix)),
        "worker_twins_resident": resident,
        "worker_rss_bytes": rss,
        "worker_rss_per_twin_bytes": (rss or 0) / n_twins,
        "worker_rss_at_first_event_bytes": rss_first,
        "worker_rss_at_no_twin_bytes": timed.rss_empty[0],
        "worker_rss_growth_per_twin_bytes": ((rss or 0) - (timed.rss_empty[0] or rss_first or 0))
        / max(resident, 1),
        "recovery_spawn_to_first_event_s": timed.spawn_to_first_s,
        "recovery_spawn_to_caught_up_s": timed.spawn_to_done_s,
        "recovery_backlog_events_per_s": timed.rate,
    }


def expected_twins(messages: Sequence[tuple[bytes, bytes]], positions: Sequence[tuple[int, int]]
                   ) -> dict[str, Twin]:
    """Replay of the log in-process: each patient's readings in offset order, as the worker must apply them."""
    now_ms = int(time.time() * 1000)
    twins: dict[str, Twin] = {}
    for (key, value), (p, o) in sorted(zip(messages, positions, strict=True), key=lambda m: m[1]):
        r = decode(value, key, now_ms)
        if isinstance(r, Reading):
            twin = twins.get(r.patient_id) or new_twin(r.patient_id)
            twins[r.patient_id], _ = step(twin, r, Position(p, o))
    return twins


async def stored_twins(url: str, prefix: str, ids: Sequence[str]) -> dict[str, Twin]:
    client = Redis.from_url(url)
    try:
        return await RedisTwinStore(client, prefix).load_many(ids)
    finally:
        await client.aclose()


def stage_scale(options: BenchOptions, services: Services, tmp: Path) -> dict[str, Any]:
    env = deployment_env(services, options.partitions, tmp)
    topic = env["TWINMON_TOPIC_VITALS"]
    say(f"scale-out: {options.scale_events:,} events of {options.patients:,} patients, two workers, one group")
    start_ms = int(time.time() * 1000) - int(options.scale_events / options.patients * 1.05 * 1000)
    messages = wire(readings(options.patients, options.scale_events, start_ms))
    create_topics(env)
    _, positions = asyncio.run(produce(services.bootstrap, topic, messages))
    ceiling = asyncio.run(consume_rate(services.bootstrap, topic, len(messages)))
    workers = [Worker.start(env, tmp / f"worker-scale-{i}.log") for i in (1, 2)]
    try:
        timed = run_until(workers, len(messages), CONSUMED, topic=topic)
        time.sleep(2.5)  # one more lag report, for the partitions each worker holds
        final = [w.scrape() or [] for w in workers]
    finally:
        for w in workers:
            w.stop()
    held = [sorted(int(lab["partition"]) for n, lab, _ in s
                   if n == "twinmon_consumer_lag" and lab.get("topic") == topic) for s in final]
    expected = expected_twins(messages, positions)
    stored = asyncio.run(stored_twins(services.redis_url, env["TWINMON_REDIS_PREFIX"], sorted(expected)))
    differ = sorted(pid for pid, twin in expected.items()
                    if pid not in stored or codec.pack(stored[pid]) != codec.pack(twin))
    if differ:
        raise BenchFailure(f"{len(differ)} of {len(expected)} twins differ from the replay of the log "
                           f"(an event applied twice or lost), e.g. {differ[:3]}")
    per_worker = [total(s, CONSUMED, topic=topic) for s in final]
    return {
        "events": len(messages), "patients": len(expected), "partitions": options.partitions,
        "raw_consume_events_per_s": ceiling,
        "combined_events_per_s": timed.rate,
        "combined_over_raw": (timed.rate or 0) / ceiling,
        "events_consumed_per_worker": per_worker,
        "redelivered_skipped": sum(total(s, "twinmon_readings_total", outcome="redelivered") for s in final),
        "partitions_per_worker": held,
        "twins_equal_to_replay": len(expected) - len(differ),
        "twins_checked": len(expected),
    }


# ---------------------------------------------------------------------------------------------- report


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} events/s"


def fmt_ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def table(r: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("cores", f"{r['cores']} (Kafka broker, Redis, the bench's producer/consumers and the worker all "
                      f"share them; 1-min load {r['load_1min_at_start']:.2f} at start)")]
    t = r.get("throughput")
    if t:
        rows += [
            ("throughput: events", f"{t['events']:,} of {t['patients']:,} patients, {t['partitions']} partitions"),
            ("raw aiokafka consume", f"{fmt_rate(t['raw_consume_events_per_s'])} (best of "
                                     + ", ".join(f"{x:,.0f}" for x in t["raw_consume_events_per_s_runs"]) + ")"),
            ("Faust no-op agent", f"{fmt_rate(t['faust_noop_events_per_s'])} = {t['faust_noop_over_raw']:.1%} of raw; "
                                  f"{t['faust_noop_cpu_us_per_event']:.1f} us CPU/event"),
            ("twinmon end to end", f"{fmt_rate(t['e2e_events_per_s'])} = {t['e2e_over_raw']:.1%} of raw; "
                                   f"{t['worker_cpu_us_per_event']:.1f} us worker CPU/event, "
                                   f"{t['worker_cpu_share']:.0%} of a core; mean batch "
                                   f"{t['mean_batch_size'] or 0:,.0f}; {t['alerts_published']:,.0f} alert events"),
        ]
    for lat in r.get("latency", []):
        tw, al = lat["reading_to_twin"], lat["reading_to_alert"]
        rows += [
            (f"latency @ {lat['offered_events_per_s']:,}/s",
             f"achieved {lat['achieved_events_per_s']:,.0f}/s; reading->twin p50/p95/p99 "
             f"{fmt_ms(tw['p50_ms'])}/{fmt_ms(tw['p95_ms'])}/{fmt_ms(tw['p99_ms'])}, max {fmt_ms(tw['max_ms'])} ms "
             f"(n={tw['n']}, {lat['reading_to_twin_unfinished']} unfinished); reading->alert "
             f"{fmt_ms(al['p50_ms'])}/{fmt_ms(al['p95_ms'])}/{fmt_ms(al['p99_ms'])}, max {fmt_ms(al['max_ms'])} ms "
             f"(n={al['n']}); longest loop stall {fmt_ms(lat['event_loop_stall_max_ms'])} ms, "
             f"{lat['gc_full_collections']:,.0f} full GCs"),
        ]
    m = r.get("memory_recovery")
    if m:
        rows += [
            ("memory: twins", f"{m['twins']:,} (resident in the worker: {m['worker_twins_resident']:,.0f})"),
            ("worker RSS", f"{(m['worker_rss_bytes'] or 0) / MiB:,.0f} MiB = {m['worker_rss_per_twin_bytes']:,.0f} "
                           f"B/twin ({m['worker_rss_growth_per_twin_bytes']:,.0f} B per resident twin above its RSS "
                           f"holding none)"),
            ("Redis used_memory", f"+{m['redis_used_memory_delta_bytes'] / MiB:,.1f} MiB = "
                                  f"{m['redis_bytes_per_twin']:,.0f} B/twin (one: hash {m['twin_hash_bytes']} B "
                                  f"with a {m['twin_blob_bytes']} B twin, no history)"),
            ("Redis per patient-hour", f"{m['patient_hour_redis_bytes']:,} B: twin hash "
                                       f"{m['patient_hour_twin_hash_bytes']:,} B + history "
                                       f"{m['patient_hour_history_bytes']:,} B ({m['patient_hour_history_points']} "
                                       f"points)"),
            ("recovery", f"caught up {m['recovery_spawn_to_caught_up_s']:.1f}s after spawn "
                         f"({m['recovery_spawn_to_first_event_s']:.1f}s to the first event; backlog "
                         f"{m['backlog_events']:,} at {fmt_rate(m['recovery_backlog_events_per_s'])})"),
        ]
    s = r.get("scale_out")
    if s:
        rows += [
            ("scale-out: 2 workers", f"{fmt_rate(s['combined_events_per_s'])} combined = {s['combined_over_raw']:.1%} "
                                     f"of raw ({fmt_rate(s['raw_consume_events_per_s'])}); partitions "
                                     f"{s['partitions_per_worker'][0]} + {s['partitions_per_worker'][1]}; consumed "
                                     + " + ".join(f"{x:,.0f}" for x in s["events_consumed_per_worker"])),
            ("scale-out: applied once", f"{s['twins_equal_to_replay']:,} of {s['twins_checked']:,} twins equal "
                                        f"to the replay of the log ({s['redelivered_skipped']:,.0f} redeliveries "
                                        f"skipped)"),
        ]
    return rows


def print_table(rows: list[tuple[str, str]], title: str) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    print("-" * len(title))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


# ------------------------------------------------------------------------------------------------ main

def local_services_available() -> bool:
    """Whether the bench can start Kafka and Redis itself (a checkout), or needs ``--bootstrap``/``--redis-url``."""
    return (LOCAL / "kafka.sh").exists()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(options: BenchOptions) -> int:
    """Run the stages of ``options``; print the table, write the JSON. 0, 1 if the pipeline is broken, 130 on
    Ctrl-C or SIGTERM."""
    if options.bootstrap is None and not local_services_available():
        raise ValueError(f"no {LOCAL}/kafka.sh to start services from (an installed package): "
                         "give --bootstrap HOST:PORT and --redis-url redis://...")
    results: dict[str, Any] = {"cores": os.cpu_count(), "load_1min_at_start": os.getloadavg()[0],
                               "stages": list(options.stages)}
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="twinmon-bench-"))
    ok = False
    try:
        services_cm = (given_services(options.bootstrap, options.redis_url)
                       if options.bootstrap is not None and options.redis_url is not None else local_services(tmp))
        with services_cm as services:
            say(f"Kafka {services.bootstrap}, Redis {services.redis_url.split('@')[-1]}")
            if "throughput" in options.stages:
                results["throughput"] = stage_throughput(options, services, tmp)
            if "latency" in options.stages:
                results["latency"] = stage_latency(options, services, tmp)
            if "memory" in options.stages:
                results["memory_recovery"] = stage_memory_recovery(options, services, tmp)
            if "scale" in options.stages:
                results["scale_out"] = stage_scale(options, services, tmp)
        results["total_wall_s"] = time.monotonic() - started
        print()
        print_table(table(results), "twinmon benchmark")
        options.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {options.json}; whole run {results['total_wall_s']:.0f}s")
        ok = True
        return 0
    except BenchFailure as exc:
        print(f"bench: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; services stopped", file=sys.stderr)
        return 130
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bench: logs kept in {tmp}", file=sys.stderr)
