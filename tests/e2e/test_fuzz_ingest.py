"""Fuzzing the Kafka ingest: 10,000 generated bad messages interleaved with valid readings, through a real worker.

The worker must never exit; every bad message must reach the dead-letter topic with its original key and bytes
and the reason code ``decode`` gives it (compared byte for byte, matched by the ``twinmon-source`` header, which
names the partition and offset it was produced at); the worker's dead-letter counter must equal the number of
bad messages, per reason; and the valid readings around them must all be applied, exactly as an offline replay
of the valid readings alone applies them.

The generator is seeded random mutation rather than hypothesis: every message must be produced before the
worker reads it, and each needs its expected reason up front. Messages bigger than the broker's maximum
message size (1 MB by default) cannot be produced at all, so the 10 MB case is tested at the decode level
(tests/unit/streams/test_fuzz_schema.py); here the oversized ones are 64 KB to 300 KB, which the broker takes and the
schema refuses.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from simulation.simulator import simulate
from streams.schema import MAX_MESSAGE_BYTES, Rejected, decode, encode
from tests.conftest import Deployment, Services
from tests.support.helpers import consume_all, load_twins, replay_twins, twin_differences

pytestmark = pytest.mark.integration

BAD_MESSAGES = 10_000
T0 = int(time.time() * 1000) - 120_000
Message = tuple[bytes | None, bytes | None]


def produce_with_offsets(bootstrap: str, topic: str, messages: list[Message]) -> list[str]:
    """Produce in order; return each message's ``topic/partition/offset``, as the DLQ's source header names it."""
    async def go() -> list[str]:
        prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                max_request_size=1024 * 1024)
        await prod.start()
        try:
            futures = [await prod.send(topic, value=v, key=k) for k, v in messages]
            metas = await asyncio.gather(*futures)
        finally:
            await prod.stop()
        return [f"{m.topic}/{m.partition}/{m.offset}" for m in metas]

    return asyncio.run(go())


BAD_VALUES: list[Any] = [
    None, True, False, "", "x" * 200, "\u0000", -1, 0, 2**64, -(2**63) - 1, 1.5e308, -0.0, [], {}, [1, 2],
    {"value": 72}, "NaN", "72", "../../etc/passwd", "p-*", "\n", "\u202e", "A" * 65,
]
RAW_LITERALS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 400, b"-" + b"9" * 400,
                b"[" * 300 + b"]" * 300, b'"\\ud800"', b"00", b"+1", b".5", b"0x10", b"true"]
FIELDS = ["v", "patient_id", "device_id", "metric", "value", "unit", "measured_at", "seq", "quality"]


class BadGenerator:
    """Seeded generator of messages ``decode`` rejects, many of them about patients that are really monitored."""

    def __init__(self, seed: int, patients: list[str]) -> None:
        self.rng = random.Random(seed)
        self.patients = patients

    def valid_doc(self) -> dict[str, Any]:
        r = self.rng
        return {"v": 1, "patient_id": r.choice(self.patients), "device_id": f"fz-{r.randrange(5)}",
                "metric": "heart_rate", "value": r.uniform(40, 140), "unit": "/min",
                "measured_at": T0 + r.randrange(60_000), "seq": r.randrange(10**6), "quality": r.random()}

    def one(self) -> Message:
        r = self.rng
        doc = self.valid_doc()
        key: bytes | None = doc["patient_id"].encode()
        kind = r.choices(
            ["mutate", "literal", "truncate", "bytes", "bom", "large", "tombstone", "key", "latin1", "json_any"],
            weights=[40, 12, 12, 8, 2, 1, 1, 8, 4, 12])[0]
        if kind == "mutate":
            for name in r.sample(FIELDS, r.randint(1, 3)):
                if r.random() < 0.2:
                    doc.pop(name, None)
                else:
                    doc[name] = r.choice([
                        *BAD_VALUES, "glucose", "degF", "Hz", "HEART_RATE", T0 + 10 * 86_400_000, T0 // 1000,
                        T0 * 1000, 2**63, r.uniform(-1e6, 1e6), r.randrange(-(10**6), 10**6),
                    ])
            return key, _dumps(doc)
        if kind == "literal":
            name = r.choice(FIELDS)
            marker = "__lit__"
            doc[name] = marker
            return key, orjson.dumps(doc).replace(f'"{marker}"'.encode(), r.choice(RAW_LITERALS))
        if kind == "truncate":
            raw = orjson.dumps(doc)
            return key, raw[: r.randrange(len(raw))]
        if kind == "bytes":
            return r.choice([key, None, b""]), r.randbytes(r.randrange(1, 300))
        if kind == "bom":
            return key, b"\xef\xbb\xbf" + orjson.dumps(doc)
        if kind == "large":
            raw = orjson.dumps(doc)
            return key, raw[:-1] + b"," + b" " * r.randrange(MAX_MESSAGE_BYTES, 300_000) + b"}"
        if kind == "tombstone":
            return key, None
        if kind == "key":
            return r.choice([b"", b"\xff\xfe", b"someone-else", r.choice(self.patients).encode() + b"x"]), orjson.dumps(
                doc)
        if kind == "latin1":
            doc["device_id"] = "caf\u00e9"
            return key, orjson.dumps(doc).replace("é".encode(), b"\xe9")
        value = r.choice([[doc], "heart_rate", 72, None, {"reading": doc}, [1, [2, [3]]]])
        return key, json.dumps(value).encode()

    def rejected(self, n: int, now_ms: int) -> list[tuple[bytes | None, bytes | None, str]]:
        out: list[tuple[bytes | None, bytes | None, str]] = []
        while len(out) < n:
            key, raw = self.one()
            verdict = decode(raw, key, now_ms)
            if isinstance(verdict, Rejected):  # the rare mutation that is still valid is not a bad message
                out.append((key, raw, verdict.reason.value))
        return out


def _dumps(doc: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, which the stdlib writes
        return json.dumps(doc).encode()


def test_ten_thousand_bad_messages_among_valid_readings(services: Services, deployment: Deployment) -> None:
    good = [(r.patient_id.encode(), encode(r)) for _, r in simulate(20, 60, 1.0, 21, T0, 0.2)]
    rng = random.Random(5)
    # Gateways retransmit and reorder: repeat some valid readings later in the stream (the twin counts them).
    good += [good[rng.randrange(len(good))] for _ in range(100)]
    patients = sorted({k.decode() for k, _ in good if k is not None})
    bad = BadGenerator(7, patients).rejected(BAD_MESSAGES, int(time.time() * 1000))
    reasons = Counter(reason for *_, reason in bad)
    print(f"\n{len(good)} valid readings of {len(patients)} patients, {len(bad)} bad messages: {dict(reasons)}")
    assert len(reasons) >= 12  # the generator is not stuck in one corner

    # Interleave: bad and good alternate at random, each list keeping its own order.
    order = [True] * len(good) + [False] * len(bad)
    rng.shuffle(order)
    gi, bi = iter(good), iter(bad)
    stream: list[Message] = []
    is_bad: list[tuple[bytes | None, bytes | None, str] | None] = []
    for take_good in order:
        if take_good:
            stream.append(next(gi))
            is_bad.append(None)
        else:
            b = next(bi)
            stream.append((b[0], b[1]))
            is_bad.append(b)
    sources = produce_with_offsets(services.bootstrap, deployment.topic_vitals, stream)
    expected_dlq = {src: b for src, b in zip(sources, is_bad, strict=True) if b is not None}
    assert len(expected_dlq) == BAD_MESSAGES

    worker = deployment.start_worker()
    try:
        worker.wait_for("twinmon_events_consumed_total", len(stream), timeout=240)

        dlq = consume_all(services.bootstrap, deployment.env["TWINMON_TOPIC_DLQ"], BAD_MESSAGES, timeout_s=120)
        by_source: dict[str, Any] = {}
        for record in dlq:  # at least once: a redelivered batch may dead-letter a message twice
            by_source.setdefault(dict(record.headers)["twinmon-source"].decode(), record)
        assert len(by_source) == BAD_MESSAGES
        assert set(by_source) == set(expected_dlq)
        mismatched = []
        for src, (key, raw, reason) in expected_dlq.items():
            record = by_source[src]
            if (record.key, record.value, dict(record.headers)["twinmon-reason"].decode()) != (key, raw, reason):
                mismatched.append(src)
        assert mismatched == [], f"{len(mismatched)} dead letters differ from what was sent, e.g. {mismatched[:3]}"

        counted = {reason: worker.metric("twinmon_events_dead_lettered_total", {"reason": reason})
                   for reason in reasons}
        assert counted == {reason: float(n) for reason, n in reasons.items()}
        assert worker.metric("twinmon_events_dead_lettered_total") == BAD_MESSAGES

        expected = replay_twins([v for _, v in good if v is not None], int(time.time() * 1000))
        stored = load_twins(services.redis_url, deployment.env["TWINMON_REDIS_PREFIX"], sorted(expected))
        assert len(expected) == len(patients) == 20
        assert twin_differences(stored, expected) == []
        assert sum(t.counts.duplicate for t in stored.values()) > 0  # the repeats were seen and counted
        assert worker.proc.poll() is None
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.log.read_text()[-3000:]
