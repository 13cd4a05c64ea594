"""Helpers every ``twinmon`` subcommand shares: settings, Kafka and Redis calls with errors for people."""

from __future__ import annotations

import asyncio
from typing import Any

import click
from pydantic import ValidationError

from streams.settings import Settings
from twin_state.errors import TwinmonError


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # A check across settings (the model validator) has no field: its message names the variables itself.
        problems = "; ".join(
            f"TWINMON_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" if e["loc"]
            else e["msg"].removeprefix("Value error, ") for e in exc.errors()
        )
        raise click.UsageError(f"bad configuration: {problems}") from None


def require_audit_key(settings: Settings) -> None:
    """A command that writes a change refuses to start without the audit trail's signing key."""
    from feed.audit import AuditKeyMissing, audit_key

    try:
        audit_key(settings)
    except AuditKeyMissing as exc:
        raise click.UsageError(str(exc)) from None


def run_kafka(coro: Any, settings: Settings) -> Any:
    """Run ``coro``, which talks to Kafka, with errors a person can act on."""
    from streams.kafka_io import run_with_kafka

    try:
        return run_with_kafka(coro, settings)
    except TwinmonError as exc:  # Kafka unreachable or refusing; no audit key: said before anything is sent
        raise click.ClickException(str(exc)) from None


def redis_call(settings: Settings, fn: Any) -> Any:
    """Run ``fn(client)`` against Redis with errors a person can act on."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisClusterException, RedisError

    from streams.connect_check import explain_redis
    from streams.outage import redis_cause
    from streams.security import redis_client

    async def go() -> Any:
        client = redis_client(settings)
        try:
            return await fn(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(go())
    except (RedisError, RedisClusterException) as exc:  # a cluster client's own errors are not RedisErrors
        refusal = explain_redis(exc)
        if refusal is not None:
            raise click.ClickException(refusal.message) from None
        if isinstance(redis_cause(exc), RedisConnectionError):
            raise click.ClickException("cannot reach Redis (check TWINMON_REDIS_URL)") from None
        raise click.ClickException(f"Redis refused: {type(exc).__name__}") from None
    except TwinmonError as exc:
        raise click.ClickException(str(exc)) from None
