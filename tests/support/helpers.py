"""Shared steps of the integration tests: produce, read back twins and dead letters, compare with replay."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis, RedisCluster

from simulation.replay import replay
from twin_state import codec
from twin_state.redis_store import RedisTwinStore
from twin_state.twin import Twin


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    async def go() -> None:
        prod = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        await prod.start()
        try:
            futures = [await prod.send(topic, value=v, key=k) for k, v in messages]
            await asyncio.gather(*futures)
        finally:
            await prod.stop()

    asyncio.run(go())


def consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 30, **client: Any) -> list[Any]:
    """``client``: more connection arguments, e.g. ``streams.security.aiokafka_kwargs`` for a secured broker."""

    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(topic, **{"bootstrap_servers": bootstrap, **client}, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        records: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            while len(records) < expected and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for recs in batch.values():
                    records.extend(recs)
            # Anything beyond the expected count would be a duplicate or a stray: give it a moment to show.
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                records.extend(recs)
        finally:
            await consumer.stop()
        return records

    return asyncio.run(go())


def load_twins(redis_url: str, prefix: str, patient_ids: list[str], *, cluster: bool = False) -> dict[str, Twin]:
    """The stored twins, read with a plain client or (``cluster``) a Redis Cluster client."""

    async def go() -> dict[str, Twin]:
        client = RedisCluster.from_url(redis_url) if cluster else Redis.from_url(redis_url)
        try:
            return await RedisTwinStore(client, prefix).load_many(patient_ids)  # type: ignore[arg-type]
        finally:
            await client.aclose()

    return asyncio.run(go())


def replay_twins(lines: list[bytes], now_ms: int) -> dict[str, Twin]:
    return replay(lines, now_ms).twins


def _close(a: Any, b: Any, path: str, tol: float, problems: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            problems.append(f"{path}: keys {sorted(a)} != {sorted(b)}")
            return
        for k in a:
            _close(a[k], b[k], f"{path}.{k}", tol, problems)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _close(x, y, f"{path}[{i}]", tol, problems)
    elif isinstance(a, float) or isinstance(b, float):
        if not math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=tol):
            problems.append(f"{path}: {a!r} != {b!r}")
    elif a != b:
        problems.append(f"{path}: {a!r} != {b!r}")


def twin_differences(stored: dict[str, Twin], expected: dict[str, Twin], tol: float = 1e-9) -> list[str]:
    """Differences beyond ``tol``, ignoring log positions (Kafka offsets versus replay's line numbers)."""
    problems: list[str] = []
    if stored.keys() != expected.keys():
        problems.append(f"patients differ: {sorted(set(stored) ^ set(expected))[:5]}")
    for pid in sorted(set(stored) & set(expected)):
        a = {k: v for k, v in codec.to_dict(stored[pid]).items() if k not in ("partition", "offset")}
        b = {k: v for k, v in codec.to_dict(expected[pid]).items() if k not in ("partition", "offset")}
        _close(a, b, pid, tol, problems)
    return problems


def local_script(env: dict[str, str], script: str, *args: str) -> str:
    """Run a deploy/local script (certs.sh, kafka.sh, redis.sh...) with ``env``; its stdout, or the test fails."""
    import subprocess

    import pytest

    from tests.conftest import LOCAL

    out = subprocess.run(["bash", str(LOCAL / script), *args], env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    if out.returncode != 0:
        pytest.fail(f"{script} {' '.join(args[:1])} failed:\n{out.stderr[-4000:]}")
    return out.stdout.strip()
