"""Steps of the fault tests: a real producer process under load, the offline reference, and waiting for recovery."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from alerts.codec import event_to_wire
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from tests.conftest import LOCAL, TWINMON, Deployment, WorkerProcess
from tests.support.helpers import consume_all, load_twins, replay_twins, twin_differences
from twin_state.store import InMemoryTwinStore

CHAOS = os.environ.get("TWINMON_CHAOS", "") not in ("", "0")
"""``make chaos``: longer load, more kills and restarts."""


@dataclass
class Load:
    """``twinmon simulate`` producing to the vitals topic at a set pace: the project's own producer, a real process."""

    proc: subprocess.Popen[bytes]
    messages: list[tuple[bytes, bytes]]
    log: Path

    @classmethod
    def start(cls, dep: Deployment, patients: int, duration_s: float, speed: float, seed: int,
              name: str = "load") -> Load:
        # Event time ends a minute before now: nothing is "in the future", and the wall-clock no-data sweep
        # (15 min) stays quiet, so the worker's alert events depend on the stream only, as the reference's do.
        start_ms = int(time.time() * 1000) - int(duration_s * 1000) - 60_000
        messages = [(r.patient_id.encode(), encode(r))
                    for _, r in simulate(patients, duration_s, 1.0, seed, start_ms, 0.3)]
        log = dep.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [TWINMON, "simulate", "--patients", str(patients), "--duration", str(duration_s), "--rate", "1",
             "--deteriorating", "0.3", "--seed", str(seed), "--start-ms", str(start_ms), "--speed", str(speed)],
            env=dep.env, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
        return cls(proc, messages, log)

    def wait(self, timeout: float = 240) -> None:
        code = self.proc.wait(timeout)
        text = self.log.read_text()
        assert code == 0, f"twinmon simulate exited {code}:\n{text[-3000:]}"
        assert f"sent {len(self.messages)} readings" in text, text[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def local(script: str, verb: str, state: Path, timeout: float = 300) -> str:
    """deploy/local/<script> <verb> <state>; its one line of stdout."""
    out = subprocess.run(["bash", str(LOCAL / script), verb, str(state)], capture_output=True, text=True,
                         timeout=timeout, check=False)
    assert out.returncode == 0, f"{script} {verb} failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip()


def health(worker: WorkerProcess, path: str) -> tuple[int, str]:
    url = worker.metrics_url.rsplit("/", 1)[0] + path
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own http URL
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


def rss_mb(worker: WorkerProcess) -> float:
    for line in Path(f"/proc/{worker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def wait_until_twins_equal_replay(dep: Deployment, redis_url: str, load: Load, workers: list[WorkerProcess],
                                  timeout: float = 150) -> float:
    """Seconds until the stored twins equal a clean offline replay of everything produced, to 1e-9 (twins'
    counters included, so an event applied twice or lost shows). Fails if a worker exits meanwhile."""
    expected = replay_twins([v for _, v in load.messages], int(time.time() * 1000))
    prefix = dep.env["TWINMON_REDIS_PREFIX"]
    started = time.monotonic()
    problems = ["not checked"]
    while problems and time.monotonic() - started < timeout:
        for w in workers:
            assert w.proc.poll() is None, f"worker exited {w.proc.returncode}:\n{w.log.read_text()[-3000:]}"
        time.sleep(0.5)
        problems = twin_differences(load_twins(redis_url, prefix, sorted(expected)), expected)
    assert problems == [], problems[:10]
    return time.monotonic() - started


def check_alert_events(dep: Deployment, bootstrap: str, load: Load) -> tuple[int, int]:
    """Every alert event the reference produces appears on the alerts topic, none that it does not, and the copies
    a redelivery republished are identical. Returns (distinct events, duplicate copies).

    The reference is the worker's own processing run offline (``BatchProcessor`` on an in-memory store, as
    ``twinmon evaluate`` does) over the records in the vitals topic, positions included: alert ids depend on the
    stream's event time only, so however the worker was killed and redelivered, the ids must be the same."""
    vitals = consume_all(bootstrap, dep.topic_vitals, len(load.messages))
    assert sorted((r.key, r.value) for r in vitals) == sorted(load.messages), "the topic lost or gained events"
    reference: list[Any] = []

    async def publish(events: Any) -> None:
        reference.extend(events)

    batch = [RawMessage(r.partition, r.offset, r.key, r.value) for r in vitals]
    processor = BatchProcessor(InMemoryTwinStore(), publish=publish)
    asyncio.run(processor.process(batch, int(time.time() * 1000)))
    expected = {e.event_id: _canonical({**event_to_wire(e, processor.policy_id), "care_team": None})
                for e in reference}
    assert expected, "the load raised no alert at all: the check could not fail"

    alerts = consume_all(bootstrap, dep.env["TWINMON_TOPIC_ALERTS"], len(expected))
    seen: dict[str, bytes] = {}
    duplicates = 0
    for record in alerts:
        doc = orjson.loads(record.value)
        body = _canonical(doc)
        event_id = doc["event_id"]
        if event_id in seen:
            duplicates += 1
            assert seen[event_id] == body, f"two different events share the id {event_id}"
        seen[event_id] = body
    assert sorted(set(seen) - set(expected)) == [], "alert events the reference does not produce"
    assert sorted(set(expected) - set(seen)) == [], "alert events missing"
    assert seen == expected, "alert events differ from the reference's"
    return len(expected), duplicates


def _canonical(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
