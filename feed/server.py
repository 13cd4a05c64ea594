"""``twinmon serve``: run the feed under uvicorn, with uvicorn's access log off (it would print query strings;
``feed.middleware.access_log`` logs method, route template, status and duration instead), and with
``streams.logsafety``'s guard: no Kafka payloads and no exception messages in the log at any level."""

from __future__ import annotations

import logging

import uvicorn

from feed.api import create_api
from streams.kafka_io import producer, start_producer
from streams.logsafety import guard_logging, limit_repeats
from streams.security import redis_client
from streams.settings import Settings


async def preflight(settings: Settings) -> None:
    """Reach Kafka and Redis once before serving, so a wrong address is one clear line, not a traceback."""
    prod = producer(settings)
    await start_producer(prod)
    await prod.stop()
    client = redis_client(settings)
    try:
        await client.ping()
    finally:
        await client.aclose()


def serve(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    limit_repeats()
    config = uvicorn.Config(create_api(settings), host=settings.api_host, port=settings.api_port,
                            access_log=False, log_level=settings.log_level.lower(), proxy_headers=False,
                            server_header=False, timeout_graceful_shutdown=5)
    # After uvicorn's own logging setup (in Config): the Kafka client's DEBUG lines carry audit records and
    # readings, and uvicorn would print an exception's message.
    guard_logging(settings.log_level)
    uvicorn.Server(config).run()
