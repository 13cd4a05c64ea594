"""Why a connection to Kafka or Redis failed, in words a person can act on, and never with a secret in them.

Kafka clients (aiokafka, Faust) log the real cause of a failed bootstrap and then raise a generic "unable to
bootstrap"; Redis reports a wrong password as a kind of connection error. ``probe_kafka``/``probe_redis`` make
one connection with the configured security and return the explained cause, so the CLI can say "wrong
password" instead of "cannot reach". ``definitive`` tells refusals that retrying cannot fix (credentials, TLS
trust, permissions) from outages that it can (broker down, restarting).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from streams.settings import Settings


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str
    definitive: bool  # True: retrying with the same settings cannot help


def explain_kafka(exc: BaseException, settings: Settings) -> Refusal | None:
    """The cause of a failed Kafka connection, or None when it is a plain outage (refused, unreachable)."""
    from aiokafka.errors import (
        IllegalSaslStateError,
        KafkaConnectionError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    protocol = settings.kafka_security_protocol
    if isinstance(exc, SaslAuthenticationFailed):
        return Refusal(f"Kafka refused the SASL credentials of user {settings.kafka_sasl_username!r} "
                       "(check TWINMON_KAFKA_SASL_USERNAME and TWINMON_KAFKA_SASL_PASSWORD)", True)
    if isinstance(exc, UnsupportedSaslMechanismError | IllegalSaslStateError):
        return Refusal(f"Kafka does not accept SASL mechanism {settings.kafka_sasl_mechanism} on this listener "
                       "(check TWINMON_KAFKA_SASL_MECHANISM and TWINMON_KAFKA_SECURITY_PROTOCOL)", True)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Refusal(f"Kafka's TLS certificate is not trusted: {getattr(exc, 'verify_message', None) or exc} "
                       "(check TWINMON_KAFKA_SSL_CAFILE and the host name in TWINMON_KAFKA_BOOTSTRAP)", True)
    if isinstance(exc, ssl.SSLError):
        # A connection cut mid-handshake (a broker going down) is an outage; any other TLS failure is a mismatch.
        reason = getattr(exc, "reason", None) or type(exc).__name__
        return Refusal(f"TLS handshake with Kafka failed ({reason}): does the port speak "
                       f"TLS? (TWINMON_KAFKA_SECURITY_PROTOCOL is {protocol})",
                       not isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError))
    if isinstance(exc, KafkaConnectionError) and "SSL" not in protocol and "closed" in str(exc).lower():
        return Refusal("Kafka closed the connection at the first request: the listener may expect TLS or SASL "
                       f"(TWINMON_KAFKA_SECURITY_PROTOCOL is {protocol})", False)
    return None


def explain_redis(exc: BaseException) -> Refusal | None:
    """The cause of a failed Redis call, or None when it is a plain outage."""
    from redis.exceptions import (
        AskError,
        AuthenticationError,
        ClusterCrossSlotError,
        NoPermissionError,
        RedisClusterException,
        ResponseError,
    )
    from redis.exceptions import ConnectionError as RedisConnectionError

    from streams.outage import is_outage, redis_cause

    exc = redis_cause(exc)  # a Redis Cluster client's "cannot be connected" names the node's error as its cause
    text = str(exc)
    if isinstance(exc, ResponseError) and "cluster support disabled" in text:
        return Refusal("TWINMON_REDIS_CLUSTER is on but the Redis at TWINMON_REDIS_URL is not a cluster node "
                       "(cluster support disabled): unset TWINMON_REDIS_CLUSTER", True)
    if isinstance(exc, AskError | ClusterCrossSlotError):  # MOVED is an AskError; only a plain client sees them
        return Refusal("the Redis at TWINMON_REDIS_URL is a Redis Cluster node (it answered MOVED or CROSSSLOT): "
                       "set TWINMON_REDIS_CLUSTER=true", True)
    if isinstance(exc, RedisClusterException) and not is_outage(exc):
        # Its text may quote the command's arguments (keys, values): only the class is said.
        return Refusal(f"the Redis Cluster client could not use the cluster at TWINMON_REDIS_URL "
                       f"({type(exc).__name__})", False)
    if isinstance(exc, AuthenticationError) or (isinstance(exc, ResponseError) and text.startswith("WRONGPASS")):
        return Refusal("Redis refused the user name or password in TWINMON_REDIS_URL", True)
    if isinstance(exc, NoPermissionError) or text.startswith("NOPERM"):
        # Redis's NOPERM text names the command, never a key or a value.
        return Refusal(f"Redis denied this ACL user: {text} (the user's ACL must allow twinmon's commands on "
                       "keys TWINMON_REDIS_PREFIX:*)", True)
    if isinstance(exc, RedisConnectionError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return Refusal("Redis's TLS certificate is not trusted (check TWINMON_REDIS_SSL_CAFILE and the host "
                           "in TWINMON_REDIS_URL)", True)
        if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text or "record layer" in text:
            return Refusal("TLS handshake with Redis failed: the port does not speak TLS (use redis:// there, or "
                           "the server's TLS port)", True)
        if "reset by peer" in text or "closed by server" in text:
            return Refusal("Redis closed the connection: if the server takes TLS only, TWINMON_REDIS_URL must "
                           "start with rediss://", False)
    return None


async def probe_kafka(settings: Settings, timeout_s: float = 15.0) -> Refusal | None:
    """Connect to the first reachable bootstrap server with the configured security; explain a failure."""
    from aiokafka.conn import create_conn

    from streams.security import aiokafka_kwargs

    kwargs = aiokafka_kwargs(settings)
    kwargs.pop("bootstrap_servers")
    found: Refusal | None = None
    for hostport in settings.kafka_bootstrap.split(","):
        host, _, port = hostport.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(create_conn(host, int(port), **kwargs), timeout_s)
        except Exception as exc:  # every failure is explained or treated as an outage
            found = found or explain_kafka(exc, settings)
            continue
        conn.close()
        return None
    return found


def partition_counts(topics: list[tuple[Any, ...]]) -> dict[str, int]:
    """Partitions per topic in a Metadata response (every version: error code, name, ..., the partition array)."""
    counts = {}
    for code, name, *rest in topics:
        if code == 0:
            counts[name] = next((len(field) for field in rest if isinstance(field, list)), 0)
    return counts


def denied_topics(topics: list[tuple[Any, ...]]) -> list[str]:
    """Topics a Metadata response (every version: error code, name, ...) says the user may not describe."""
    from aiokafka.errors import TopicAuthorizationFailedError

    return sorted(name for code, name, *_ in topics if code == TopicAuthorizationFailedError.errno)


async def probe_kafka_access(settings: Settings) -> Refusal | None:
    """Whether the authenticated user may use the worker's topics and consumer group (Kafka ACLs), and whether
    the topics keyed by patient have the same partition count.

    Without this a worker denied its group waits silently for an assignment that never comes, and a worker on
    mismatched topics applies a patient's profile and alert actions on another worker than their readings.
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.errors import GroupAuthorizationFailedError, KafkaError
    from aiokafka.protocol.metadata import MetadataRequest

    from streams.kafka_io import co_partitioned, partition_mismatch
    from streams.security import aiokafka_kwargs

    user = settings.kafka_sasl_username
    client = AIOKafkaClient(**aiokafka_kwargs(settings))
    try:
        await client.bootstrap()
        topics = [settings.topic_vitals, settings.topic_enrolments, settings.topic_alert_actions,
                  settings.topic_alerts, settings.topic_dlq]
        response = await client.send(client.get_random_node(), MetadataRequest(topics, False))
        if denied := denied_topics(response.topics):
            return Refusal(f"Kafka denies user {user!r} the topics {', '.join(denied)} (the ACLs must allow "
                           "Describe, Read and Write on them)", True)
        if mismatch := partition_mismatch(partition_counts(response.topics), co_partitioned(settings)):
            return Refusal(f"refusing to start: {mismatch}", True)
        try:
            await client.coordinator_lookup(0, settings.app_id)  # 0: a consumer group
        except GroupAuthorizationFailedError:
            return Refusal(f"Kafka denies user {user!r} the consumer group {settings.app_id!r} (the ACLs must "
                           "allow Read and Describe on it; TWINMON_APP_ID names it)", True)
    except (KafkaError, OSError):
        return None  # an outage, or a refusal probe_kafka explains
    finally:
        await client.close()
    return None


async def probe_redis(settings: Settings) -> Refusal | None:
    from redis.exceptions import RedisClusterException, RedisError

    from streams.security import redis_client

    client = redis_client(settings)
    try:
        await client.ping()  # on a cluster: first the map of the cluster from the URL's node, then every node
    except (RedisError, RedisClusterException) as exc:
        return explain_redis(exc)
    finally:
        await client.aclose()
    return None


async def definitive_refusals(settings: Settings, timeout_s: float = 20.0) -> list[str]:
    """What makes starting pointless: refusals (credentials, trust, ACL) that a retry cannot fix.

    A server that does not answer in ``timeout_s`` is an outage, left to the worker's own retries.
    """

    async def bounded(probe: Any) -> Refusal | None:
        try:
            return await asyncio.wait_for(probe, timeout_s)
        except TimeoutError:
            return None

    async def kafka() -> Refusal | None:
        return await probe_kafka(settings) or await probe_kafka_access(settings)

    found = await asyncio.gather(bounded(kafka()), bounded(probe_redis(settings)))
    return [r.message for r in found if r is not None and r.definitive]
