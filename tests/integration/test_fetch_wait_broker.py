"""On the real broker: the worker's consumer, idle on an empty partition, gets the broker's empty answer after
``kafka_fetch_max_wait_ms`` (so it asks again many times a second), where Faust's fixed 1,500 ms would hold each
fetch for 1.5 s. That hold is what left every ``vitals`` fetch waiting behind an idle-topic fetch."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

from streams.app import faust_app
from streams.settings import Settings
from tests.conftest import Services


async def _fetches_in(services: Services, wait_ms: int, seconds: float) -> int:
    topic = f"fetch-wait-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    app = faust_app(Settings(kafka_bootstrap=services.bootstrap, redis_url="redis://127.0.0.1:9",
                             kafka_fetch_max_wait_ms=wait_ms))
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.start()
    try:
        sent: list[Any] = []
        real_send = consumer._client.send

        async def counting_send(node_id: int, request: Any, **kw: Any) -> Any:
            if type(request).__name__.startswith("FetchRequest"):
                sent.append(request)
            return await real_send(node_id, request, **kw)

        consumer._client.send = counting_send
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await asyncio.sleep(seconds)
        return len(sent)
    finally:
        await consumer.stop()


def test_an_idle_fetch_returns_after_the_configured_wait_not_fausts(services: Services) -> None:
    fast = asyncio.run(_fetches_in(services, 25, 3.0))
    faust_default = asyncio.run(_fetches_in(services, 1500, 3.0))
    # 25 ms: about 100 round trips in 3 s (at least 20 even on a loaded machine); 1,500 ms: at most 3.
    print(f"fetches in 3 s: {fast} at 25 ms, {faust_default} at 1,500 ms")
    assert fast >= 20, (fast, faust_default)
    assert faust_default <= 3, (fast, faust_default)
