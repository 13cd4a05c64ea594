"""Throughput of the whole path (Kafka -> worker -> Redis) against the raw consume rate of the same topic.

``python -m tests.bench.pipeline`` (what ``make bench`` runs) does, in one go, on a real single-node Kafka
broker and a real Redis that it starts itself with deploy/local/*.sh in a temporary directory:

1. simulate patients, encode their readings and produce them to a fresh topic (idempotent producer);
2. the ceiling: read that topic back with a bare aiokafka consumer, twice, and keep the better rate;
3. end to end: start ``twinmon worker`` on the backlog and time it through the worker's own Prometheus
   counter ``twinmon_events_consumed_total``, from the first scrape that sees it above zero until it
   reaches N, so start-up and the consumer group join are not counted;
4. print one table (and write it as JSON): the rates, their ratio, the mean batch size, the worker's
   resident memory and Redis memory per twin.

It is a benchmark, not a test: it prints figures and exits 0 however slow the machine is. It exits 1 only
if the pipeline is broken (a service does not start, the worker dies or stops making progress, Redis does
not end up with one twin per patient), and 130 on Ctrl-C. Services are stopped on every way out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from types import FrameType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from streams.schema import encode
from streams.settings import Settings
from streams.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "deploy" / "local"
# The venv's console script, next to the interpreter running us: the code under test, not some other install.
TWINMON = str(Path(sys.executable).parent / "twinmon")

RATE_PER_PATIENT = 1.0  # readings per second per patient (the simulator's default)
SEED = 1
MiB = 1024 * 1024

# Timeouts are generous on purpose: they only decide when to declare the pipeline broken, never the figures.
SERVICE_START_TIMEOUT_S = 300.0  # first start may apt-get redis or fetch the Kafka jars
WORKER_START_TIMEOUT_S = 180.0  # from spawn to the first event counted (Faust start-up, group join)
STALL_TIMEOUT_S = 120.0  # no progress at all for this long = broken, however slow the machine
POLL_S = 0.1  # metric scrape interval; bounds the end-of-run timing error (see the e2e note)

CONSUMED = "twinmon_events_consumed_total"
# Faust's spinner writes cursor hide/show sequences and backspaces even into a file: drop them from what we quote.
TERMINAL_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


class BenchFailure(Exception):
    """The pipeline (or a service it needs) is broken; the figures would be meaningless."""


def say(msg: str) -> None:
    """Progress goes to stderr so that stdout holds only the results table."""
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- services


@dataclass(frozen=True)
class Services:
    bootstrap: str
    redis_url: str


def _script(name: str, verb: str, state: Path) -> subprocess.Popen[str]:
    # A new session: Ctrl-C at the terminal then reaches only this process, which stops the services in
    # order, instead of the broker and Redis dying mid-write alongside us.
    return subprocess.Popen(["bash", str(LOCAL / name), verb, str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while cleaning up: a second Ctrl-C must not leave a broker running.

    Every step inside has its own timeout, so this cannot hang for long.
    """
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def local_services(tmp: Path) -> Iterator[Services]:
    """Kafka and Redis from deploy/local, started side by side (saves the time of the shorter start)."""
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
        # Both stops are idempotent ("no error if not running"), so this is safe after a failed start, and
        # they run side by side because the broker's orderly shutdown takes a few seconds.
        with uninterruptible():
            say("stopping Kafka and Redis")
            stops = [_script("kafka.sh", "stop", kafka_state), _script("redis.sh", "stop", redis_state)]
            for proc in stops:
                try:
                    proc.communicate(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deployment_env(services: Services, partitions: int, tmp: Path) -> dict[str, str]:
    """One isolated twinmon installation, as tests/conftest.py's Deployment builds it."""
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
        "TWINMON_PARTITIONS": str(partitions),
        "TWINMON_LOG_LEVEL": "warning",
        "TWINMON_DATA_DIR": str(tmp / "worker-data"),
    }


# ------------------------------------------------------------------------------------- generate, produce


@dataclass(frozen=True)
class Generated:
    messages: list[tuple[bytes, bytes]]
    patients_seen: int
    simulated_s: float
    seconds: float


def generate(patients: int, events: int) -> Generated:
    """The first ``events`` readings of ``patients`` simulated patients, encoded as the wire format."""
    # Wrist drop-outs lose a few readings, so simulate 5 % more time than events/patients and cut at N.
    simulated_s = events / (patients * RATE_PER_PATIENT) * 1.05
    # Time zero in the past, so that every reading is stamped before now, as live readings are.
    start_ms = int(time.time() * 1000) - int(simulated_s * 1000)
    started = time.perf_counter()
    readings = simulate(patients, simulated_s, RATE_PER_PATIENT, SEED, start_ms)
    messages = [(r.patient_id.encode(), encode(r)) for _, r in islice(readings, events)]
    return Generated(messages, len({k for k, _ in messages}), simulated_s, time.perf_counter() - started)


async def produce(bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> float:
    """Send everything and wait for every acknowledgement; return the seconds that took."""
    prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                            max_batch_size=256 * 1024)
    await prod.start()  # connection and metadata before the clock starts
    try:
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for key, value in messages:
            pending.append(await prod.send(topic, value=value, key=key))
            if len(pending) >= 10_000:  # bounds the futures held, not the pipelining (send() already does)
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return time.perf_counter() - started
    finally:
        await prod.stop()


# ----------------------------------------------------------------------------------------------- ceiling


@dataclass(frozen=True)
class Ceiling:
    rate: float  # from the first record returned to the n-th: the figure the worker is compared with
    rate_from_start: float  # from consumer.start() returning: also counts the offset lookup and first fetch


async def consume_rate(bootstrap: str, topic: str, n: int) -> Ceiling:
    """Events/s of a bare consumer reading ``n`` records.

    No group (so no join or commits), no decoding: the most any consumer in this process model can do on
    this machine, and so the ceiling for the worker. The headline is timed from the first record, like the
    worker's figure; the first fetch can carry up to partitions x 4 MiB, so that is also timed from start.
    """
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                enable_auto_commit=False, max_partition_fetch_bytes=4 * MiB,
                                fetch_max_bytes=64 * MiB)
    await consumer.start()
    try:
        seen = 0
        first: float | None = None
        started = last_progress = time.monotonic()
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            got = sum(len(records) for records in batch.values())
            now = time.monotonic()
            if got:
                first = now if first is None else first
                seen += got
                last_progress = now
            elif now - last_progress > STALL_TIMEOUT_S:
                raise BenchFailure(f"raw consumer stuck at {seen} of {n} records for {STALL_TIMEOUT_S:.0f}s")
        assert first is not None
        done = time.monotonic()
        # The records of the first getmany are counted: "first" is when they were handed over, before any
        # of the per-record work a consumer does in getmany on them.
        return Ceiling(n / max(done - first, 1e-9), n / max(done - started, 1e-9))
    finally:
        await consumer.stop()


# ------------------------------------------------------------------------------------------- end to end


def scrape(url: str) -> dict[str, float] | None:
    """Every sample of the endpoint, summed over labels, by sample name; None while it is not up."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (our own http://127.0.0.1 URL)
            text = resp.read().decode()
    except OSError:
        return None
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def resident_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        pass
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (utime and stime in /proc/PID/stat, in clock ticks)."""
    try:
        # The command name (field 2) may hold spaces, so split after its closing parenthesis.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


@dataclass(frozen=True)
class EndToEnd:
    rate: float | None
    counted_events: float  # events the rate is over: N minus what the first scrape already saw
    seconds: float
    startup_s: float  # spawn to the first scrape with the counter above zero (excluded from the rate)
    metrics: dict[str, float]
    worker_rss: int | None
    worker_exit: int | None
    worker_cpu_share: float  # CPU seconds of the worker per wall second over the timed interval (1.0 = a core)


def run_worker(env: dict[str, str], n: int, log_path: Path) -> EndToEnd:
    """Start a worker on the backlog, time it through its own counter, then stop it with SIGTERM."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with log_path.open("ab") as log:
        # Own session, like the services: on Ctrl-C it is stopped by us, with SIGTERM, after the table.
        proc = subprocess.Popen([TWINMON, "worker"], env={**env, "TWINMON_METRICS_PORT": str(port)},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    spawned = time.monotonic()

    def broken(why: str) -> BenchFailure:
        return BenchFailure(f"{why}\n--- worker log (tail) ---\n{log_path.read_text(errors='replace')[-3000:]}")

    try:
        first: tuple[float, float] | None = None  # (time, count) at the first scrape that sees count > 0
        progress_at, progress_count = spawned, 0.0
        while True:
            if proc.poll() is not None:
                raise broken(f"worker exited with {proc.returncode} before consuming {n} events")
            metrics = scrape(url)
            now = time.monotonic()  # after the response: the counter was read at most a loopback RTT before
            count = (metrics or {}).get(CONSUMED, 0.0)
            if count > 0 and first is None:
                first = (now, count)
                cpu_first = cpu_seconds(proc.pid)
            if count >= n:
                break
            if count > progress_count:
                progress_at, progress_count = now, count
            limit = WORKER_START_TIMEOUT_S if first is None else STALL_TIMEOUT_S
            if now - progress_at > limit:
                raise broken(f"{CONSUMED} stuck at {count:.0f} of {n} for {limit:.0f}s")
            time.sleep(POLL_S)
        assert first is not None and metrics is not None
        # Both ends are observed values of the counter, so whatever the worker had already done at the first
        # scrape is not credited to the timed interval. A run that fits in one scrape interval has no rate.
        elapsed, counted = now - first[0], count - first[1]
        rate = counted / elapsed if elapsed > 0 and counted > 0 else None
        # Near 1.0 means the worker's one Python thread was the bottleneck; well below, it waited on others.
        cpu_share = (cpu_seconds(proc.pid) - cpu_first) / elapsed if elapsed > 0 else float("nan")
        rss = resident_bytes(proc.pid)  # while it still holds every twin of the run
    finally:
        with uninterruptible():
            exit_code = stop_worker(proc)
    if exit_code != 0:
        say(f"note: the worker exited with {exit_code} on SIGTERM (log: {log_path})")
    return EndToEnd(rate, counted, elapsed, first[0] - spawned, metrics, rss, exit_code, cpu_share)


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            say("worker still running 30s after SIGTERM; killing it")
            proc.kill()
    return proc.wait(10)


@dataclass(frozen=True)
class RedisFacts:
    twin_keys: int
    used_memory: int


def redis_facts(url: str, prefix: str) -> RedisFacts:
    client = Redis.from_url(url)
    try:
        # SCAN, not KEYS: the same server may be shared, and {prefix} keeps other runs' twins out of the count.
        # The glob's * also matches past the closing brace, so a per-patient side key (say "...:twin:{p}:x")
        # is left out explicitly: only "{prefix}:twin:{<patient_id>}" is a twin.
        keys = sum(1 for key in client.scan_iter(match=f"{prefix}:twin:{{*}}", count=1000) if key.endswith(b"}"))
        return RedisFacts(keys, int(client.info("memory")["used_memory"]))
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------- report


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} events/s"


def fmt_mib(x: int | float | None) -> str:
    return "n/a" if x is None else f"{x / MiB:,.1f} MiB"


def print_table(rows: list[tuple[str, str]], title: str) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    print("-" * len(title))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000, help="simulated patients (default 10000)")
    parser.add_argument("--events", type=int, default=300_000, help="events to produce (default 300000)")
    parser.add_argument("--partitions", type=int, default=8, help="partitions of the vitals topic (default 8)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"), metavar="PATH",
                        help="where to write the results (default bench-results.json)")
    args = parser.parse_args(argv)
    for name in ("patients", "events", "partitions"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def bench(args: argparse.Namespace, services: Services, tmp: Path, load_at_start: float) -> dict[str, Any]:
    env = deployment_env(services, args.partitions, tmp)
    topic, prefix = env["TWINMON_TOPIC_VITALS"], env["TWINMON_REDIS_PREFIX"]

    say(f"simulating {args.patients:,} patients for {args.events:,} events")
    gen = generate(args.patients, args.events)
    n = len(gen.messages)
    if n < args.events:  # only with odd arguments; the figures stay valid for the n produced
        say(f"note: the simulator gave {n:,} events, not {args.events:,}")
    say(f"generated {n:,} events of {gen.patients_seen:,} patients in {gen.seconds:.1f}s")

    created = subprocess.run([TWINMON, "topics", "create"], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    if created.returncode != 0:
        raise BenchFailure(f"twinmon topics create exited {created.returncode}: {created.stderr.strip()}")

    say(f"producing to {topic} ({args.partitions} partitions)")
    produce_s = asyncio.run(produce(services.bootstrap, topic, gen.messages))
    produce_rate = n / produce_s
    say(f"produced in {produce_s:.1f}s: {fmt_rate(produce_rate)}")

    ceilings: list[Ceiling] = []
    for attempt in (1, 2):  # the better of two: the first one also warms the broker's page cache
        ceilings.append(asyncio.run(consume_rate(services.bootstrap, topic, n)))
        say(f"raw consume run {attempt}: {fmt_rate(ceilings[-1].rate)} "
            f"({fmt_rate(ceilings[-1].rate_from_start)} counting from consumer start)")
    ceiling = max(c.rate for c in ceilings)

    redis_before = redis_facts(services.redis_url, prefix)  # the server's own footprint, without our twins
    say("starting twinmon worker on the backlog")
    e2e = run_worker(env, n, tmp / "worker.log")
    say(f"worker: {fmt_rate(e2e.rate)} after {e2e.startup_s:.1f}s of start-up")
    # It logs at warning level, so anything it said (beyond where its metrics are) deserves a look; the
    # temporary directory, and with it the log, is gone once the run succeeds.
    said = [line for line in TERMINAL_CONTROL.sub("", (tmp / "worker.log").read_text(errors="replace")).splitlines()
            if line.strip() and not line.startswith("metrics: http")]
    if said:
        say(f"the worker logged {len(said)} line(s); the last ones:\n  " + "\n  ".join(said[-10:]))
    redis_after = redis_facts(services.redis_url, prefix)
    if redis_after.twin_keys != gen.patients_seen:
        raise BenchFailure(f"Redis holds {redis_after.twin_keys} twins under {prefix}, "
                           f"expected one per patient: {gen.patients_seen}")

    m = e2e.metrics
    batches = m.get("twinmon_batch_size_count", 0.0)
    mean_batch = m.get("twinmon_batch_size_sum", 0.0) / batches if batches else None
    dead = m.get("twinmon_events_dead_lettered_total", 0.0)
    if dead:
        # Simulated readings are all valid, so any dead letter means the simulator and the schema disagree.
        say(f"WARNING: {dead:.0f} simulated events were dead-lettered; the rates include them")
    used = redis_after.used_memory
    return {
        "cores": os.cpu_count(),
        # Anything else running skews every figure here; the load before we started shows if it did.
        "load_1min_at_start": load_at_start,
        "events": n,
        "patients": gen.patients_seen,
        "partitions": args.partitions,
        "batch_max": int(env.get("TWINMON_BATCH_MAX", Settings.model_fields["batch_max"].default)),
        "batch_within_ms": int(env.get("TWINMON_BATCH_WITHIN_MS",
                                       Settings.model_fields["batch_within_ms"].default)),
        "event_bytes_mean": sum(len(v) for _, v in gen.messages) / n,
        "generate_s": gen.seconds,
        "produce_s": produce_s,
        "produce_events_per_s": produce_rate,
        "consume_raw_events_per_s_runs": [c.rate for c in ceilings],
        "consume_raw_from_start_events_per_s": max(c.rate_from_start for c in ceilings),
        "consume_raw_events_per_s": ceiling,
        "e2e_events_per_s": e2e.rate,
        "e2e_timed_events": e2e.counted_events,
        "e2e_timed_s": e2e.seconds,
        "e2e_over_ceiling": e2e.rate / ceiling if e2e.rate is not None else None,
        "worker_startup_s": e2e.startup_s,
        "worker_cpu_share": e2e.worker_cpu_share,
        "mean_batch_size": mean_batch,
        "batches": batches,
        "twins_persisted": m.get("twinmon_twins_persisted_total"),
        "events_dead_lettered": dead,
        "redis_twin_keys": redis_after.twin_keys,
        "worker_rss_bytes": e2e.worker_rss,
        "worker_exit_code_on_sigterm": e2e.worker_exit,
        "worker_log_lines": len(said),
        "redis_used_memory_bytes": used,
        "redis_used_memory_per_patient_bytes": used / gen.patients_seen,
        "redis_used_memory_empty_bytes": redis_before.used_memory,
        "redis_twin_bytes_per_patient": (used - redis_before.used_memory) / gen.patients_seen,
    }


def report(r: dict[str, Any]) -> None:
    ratio = r["e2e_over_ceiling"]
    persisted = r["twins_persisted"]
    rows = [
        ("cores", f"{r['cores']} (broker, Redis, producer/consumer and worker all share them; "
                  f"1-min load {r['load_1min_at_start']:.2f} before the run)"),
        ("events", f"{r['events']:,} ({r['event_bytes_mean']:.0f} B mean)"),
        ("patients", f"{r['patients']:,}"),
        ("partitions", f"{r['partitions']}"),
        ("produce rate", f"{fmt_rate(r['produce_events_per_s'])} (acks=all, idempotent)"),
        ("raw consume (ceiling)",
         f"{fmt_rate(r['consume_raw_events_per_s'])} (best of "
         + ", ".join(f"{x:,.0f}" for x in r["consume_raw_events_per_s_runs"])
         + f"; best {r['consume_raw_from_start_events_per_s']:,.0f} if timed from consumer start)"),
        ("end-to-end", f"{fmt_rate(r['e2e_events_per_s'])} (over {r['e2e_timed_events']:,.0f} events, "
                       f"{r['e2e_timed_s']:.1f}s; excludes {r['worker_startup_s']:.1f}s start-up + group join)"),
        ("worker CPU while timed", f"{r['worker_cpu_share']:.0%} of one core"),
        ("e2e / ceiling", "n/a" if ratio is None else f"{ratio:.1%}"),
        ("mean batch size", "n/a" if r["mean_batch_size"] is None
         else f"{r['mean_batch_size']:,.0f} ({r['batches']:,.0f} batches; max {r['batch_max']}, "
              f"within {r['batch_within_ms']} ms)"),
        ("twins persisted", "n/a" if persisted is None
         else f"{persisted:,.0f} writes ({persisted / r['events']:.2f} per event)"),
        ("dead-lettered", f"{r['events_dead_lettered']:,.0f}"),
    ]
    print()
    print_table(rows, "twinmon pipeline benchmark")
    print()
    memory = [
        ("worker resident (VmRSS)", fmt_mib(r["worker_rss_bytes"])),
        ("Redis used_memory", f"{fmt_mib(r['redis_used_memory_bytes'])} = "
                              f"{r['redis_used_memory_per_patient_bytes']:,.0f} B per patient "
                              f"({r['redis_twin_bytes_per_patient']:,.0f} B per twin above the empty server's "
                              f"{fmt_mib(r['redis_used_memory_empty_bytes'])})"),
        ("Redis twin keys", f"{r['redis_twin_keys']:,} (one per patient: checked)"),
    ]
    print_table(memory, "memory at the end")
    print()
    print(f"End-to-end is catch-up throughput on a backlog produced beforehand, timed by scraping "
          f"{CONSUMED} every {POLL_S:.1f}s\n(so its end may be up to {POLL_S:.1f}s late: a slight underestimate "
          f"on short runs). The ceiling is a bare aiokafka consumer\nin one process: no group, no decoding, "
          f"no Redis.")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that SIGTERM, like Ctrl-C, unwinds through every finally and stops services


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()[0]
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="twinmon-bench-"))
    ok = False
    try:
        say(f"starting Kafka and Redis in {tmp}")
        with local_services(tmp) as services:
            say(f"Kafka {services.bootstrap}, Redis {services.redis_url}")
            results = bench(args, services, tmp, load_at_start)
        results["total_wall_s"] = time.monotonic() - started
        report(results)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {args.json}; whole run {results['total_wall_s']:.0f}s "
              f"(including service start/stop and generating the events)")
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


if __name__ == "__main__":
    sys.exit(main())
