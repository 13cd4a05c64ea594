"""The worker's consumer asks the broker to hold a fetch with no data for ``kafka_fetch_max_wait_ms``, not Faust's
fixed 1,500 ms (which paused every ``vitals`` fetch for 1.5 s whenever a fetch asked only for idle topics), with the
fast-drain consumer and with the stock one."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams import fastdrain
from streams.app import faust_app
from streams.settings import Settings


def _built_consumer_wait(settings: Settings) -> tuple[Any, int]:
    async def scenario() -> tuple[Any, int]:
        app = faust_app(settings)
        consumer = app.consumer
        aiokafka_consumer = consumer._thread._create_worker_consumer(app.transport)
        wait = aiokafka_consumer._fetch_max_wait_ms
        await aiokafka_consumer._client.close()
        return consumer, wait

    return asyncio.run(scenario())


@pytest.mark.parametrize("fast_drain", [True, False])
def test_the_worker_consumer_fetches_with_the_configured_wait(fast_drain: bool) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9", fast_drain=fast_drain,
                        kafka_fetch_max_wait_ms=33)
    consumer, wait = _built_consumer_wait(settings)
    assert isinstance(consumer._thread, fastdrain.FetchWaitThread)
    assert isinstance(consumer, fastdrain.FastDrainConsumer) is fast_drain
    assert wait == 33


def test_the_default_wait_is_far_below_fausts() -> None:
    _, wait = _built_consumer_wait(Settings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9"))
    assert wait == Settings.model_fields["kafka_fetch_max_wait_ms"].default <= 50


def test_without_a_wait_the_app_keeps_fausts_transport() -> None:
    async def scenario() -> Any:
        return fastdrain.App("t", fast_drain=False, broker="kafka://127.0.0.1:9", store="memory://",
                             web_enabled=False, autodiscover=False).transport

    assert type(asyncio.run(scenario())) is fastdrain.faust_aiokafka.Transport
