"""Settings for Kafka over TLS and SASL and Redis over TLS become the right client arguments; secrets stay secret."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.security import aiokafka_kwargs, faust_credentials
from streams.settings import Settings


def test_plaintext_by_default() -> None:
    s = Settings()
    assert aiokafka_kwargs(s) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(s) is None


def test_sasl_over_tls_uses_scram_and_verifies_the_broker() -> None:
    s = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                 kafka_sasl_username="twinmon-worker", kafka_sasl_password="s3cr3t-pw")  # type: ignore[arg-type]
    kwargs = aiokafka_kwargs(s)
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "twinmon-worker" and kwargs["sasl_plain_password"] == "s3cr3t-pw"
    assert kwargs["ssl_context"].verify_mode.name == "CERT_REQUIRED"
    creds = faust_credentials(s)
    assert creds.username == "twinmon-worker" and creds.mechanism.value == "SCRAM-SHA-512"


def test_secrets_never_print() -> None:
    s = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",
                 kafka_sasl_password="s3cr3t-pw", redis_url="redis://app:hunter2@redis:6379/0")  # type: ignore[arg-type]
    shown = repr(s) + str(s) + s.model_dump_json()
    assert "s3cr3t-pw" not in shown and "hunter2" not in shown


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "SASL needs"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "/c.pem"}, "mutual TLS"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_incomplete_security_settings_are_refused(kwargs: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Settings(**kwargs)  # type: ignore[arg-type]
