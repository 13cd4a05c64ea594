"""Connection failures become sentences a person can act on; refusals are told from outages; no secret shows."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, TopicAuthorizationFailedError
from redis.exceptions import AuthenticationError, NoPermissionError
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.connect_check import definitive_refusals, denied_topics, explain_kafka, explain_redis
from streams.kafka_io import refused_topics
from streams.security import redis_client
from streams.settings import Settings

SASL = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="twinmon",
                kafka_sasl_password="pw-never-shown")  # type: ignore[arg-type]


def test_wrong_kafka_password_is_a_definitive_refusal_naming_the_user_not_the_password() -> None:
    refusal = explain_kafka(SaslAuthenticationFailed("invalid credentials"), SASL)
    assert refusal is not None and refusal.definitive
    assert "SASL credentials of user 'twinmon'" in refusal.message and "pw-never-shown" not in refusal.message


def test_untrusted_kafka_certificate_says_which_setting_to_check() -> None:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate in certificate chain"
    refusal = explain_kafka(exc, SASL)
    assert refusal is not None and refusal.definitive
    assert "self-signed" in refusal.message and "TWINMON_KAFKA_SSL_CAFILE" in refusal.message


def test_plaintext_to_a_tls_listener_hints_at_the_protocol_but_may_be_an_outage() -> None:
    plain = Settings()
    refusal = explain_kafka(KafkaConnectionError("Connection at 127.0.0.1:9093 closed"), plain)
    assert refusal is not None and not refusal.definitive and "PLAINTEXT" in refusal.message
    # Over TLS a closed connection says nothing about the protocol; a refused connect is an outage.
    assert explain_kafka(KafkaConnectionError("Connection at 127.0.0.1:9093 closed"), SASL) is None
    assert explain_kafka(ConnectionRefusedError(111, "Connect call failed"), SASL) is None


@pytest.mark.parametrize(
    "exc,fragment,definitive",
    [
        (AuthenticationError("invalid username-password pair or user is disabled."), "user name or password", True),
        (NoPermissionError("NOPERM this user has no permissions to run the 'set' command"), "'set' command", True),
        (RedisConnectionError("Error 1 connecting: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
         "TWINMON_REDIS_SSL_CAFILE", True),
        (RedisConnectionError("Error while reading from 127.0.0.1:6380 : (104, 'Connection reset by peer')"),
         "rediss://", False),
    ],
)
def test_redis_failures_are_explained(exc: Exception, fragment: str, definitive: bool) -> None:
    refusal = explain_redis(exc)
    assert refusal is not None and fragment in refusal.message and refusal.definitive is definitive


def test_redis_outage_is_not_a_refusal() -> None:
    assert explain_redis(RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")) is None


def test_create_topics_response_errors_are_raised_except_already_exists() -> None:
    assert refused_topics([("vitals", 0, None), ("alerts", 36, "Topic 'alerts' already exists.")]) is None
    assert refused_topics([("vitals", 0)]) is None  # v0 responses carry no message
    refused = refused_topics([("vitals", 0, None), ("other", 29, "Authorization failed.")])
    assert isinstance(refused, TopicAuthorizationFailedError) and "topic other: Authorization failed." in str(refused)


def test_a_ca_file_is_used_for_rediss() -> None:
    tls = Settings(redis_url="rediss://u:p@127.0.0.1:6380/0", redis_ssl_cafile="/ca.pem")  # type: ignore[arg-type]
    assert redis_client(tls).connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"


def test_a_server_that_never_answers_is_an_outage_and_does_not_hold_the_start() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}",
                            redis_url=f"redis://127.0.0.1:{port}/0")  # type: ignore[arg-type]
        started = time.monotonic()
        assert asyncio.run(definitive_refusals(settings, timeout_s=1.0)) == []
        assert time.monotonic() - started < 20  # bounded by the timeout, not by the clients' own (40 s and more)


def test_topics_the_metadata_response_refuses_are_named() -> None:
    # (error code, name, is_internal, partitions): 29 = not authorized, 3 = does not exist (yet): only 29 counts.
    response = [(0, "vitals", False, []), (29, "vitals.dlq", False, []), (3, "alerts", False, []),
                (29, "enrolments", False, [])]
    assert denied_topics(response) == ["enrolments", "vitals.dlq"]


def test_tls_cut_mid_handshake_is_an_outage_but_a_wrong_protocol_is_not() -> None:
    cut = explain_kafka(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), SASL)
    assert cut is not None and not cut.definitive
    mismatch = ssl.SSLError(1, "wrong version number")
    mismatch.reason = "WRONG_VERSION_NUMBER"
    refusal = explain_kafka(mismatch, SASL)
    assert refusal is not None and refusal.definitive and "WRONG_VERSION_NUMBER" in refusal.message
