"""Kafka over TLS and SASL, and Redis over TLS: one place that turns settings into client arguments."""

from __future__ import annotations

import ssl
from typing import Any, cast

import faust
from redis.asyncio import Redis, RedisCluster

from streams.settings import Settings


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if "SSL" not in settings.kafka_security_protocol:
        return None
    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    return context


def aiokafka_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection arguments for aiokafka producers, consumers and admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = kafka_ssl_context(settings)
    if context is not None:
        kwargs["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        kwargs.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return kwargs


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the configured protocol (None for plaintext)."""
    context = kafka_ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def redis_client(settings: Settings) -> Redis:
    """Redis from ``TWINMON_REDIS_URL`` (``rediss://`` for TLS, ``user:password@`` for an ACL user).

    With ``TWINMON_REDIS_CLUSTER`` a ``RedisCluster``: the URL names one node (any), the client learns the others
    from it (``CLUSTER SLOTS``) and reaches each with the URL's user, password and TLS, and the same CA and
    timeouts. Typed as ``Redis``: twinmon sends only commands both clients have, and the stores check for a
    ``RedisCluster`` where a cluster needs something else (one script call per hash slot)."""
    url = settings.redis_url.get_secret_value()
    kwargs: dict[str, Any] = {"socket_timeout": settings.redis_socket_timeout_s,
                              "socket_connect_timeout": settings.redis_socket_timeout_s}
    # Only a TLS connection takes a CA; redis-py rejects ssl_* arguments for a redis:// URL.
    if settings.redis_ssl_cafile and url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = settings.redis_ssl_cafile
    if settings.redis_cluster:
        return cast(Redis, RedisCluster.from_url(url, **kwargs))
    return Redis.from_url(url, **kwargs)
