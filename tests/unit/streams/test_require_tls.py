"""TWINMON_REQUIRE_TLS: plaintext Kafka, SASL over plaintext and redis:// are refused at start, for the worker and
the feed alike; a Redis CA file with a plaintext URL is refused always."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from cli.main import main
from streams.settings import Settings

SECURE = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u", "kafka_sasl_password": "p-secret-1",
          "redis_url": "rediss://u:r-secret-1@redis:6380/0"}


def refusal(**fields: object) -> str:
    with pytest.raises(ValidationError) as refused:
        Settings(**fields)  # type: ignore[arg-type]
    return str(refused.value)


def test_tls_everywhere_is_accepted_when_required() -> None:
    assert Settings(**SECURE, require_tls=True).require_tls  # type: ignore[arg-type]
    assert Settings(**{**SECURE, "kafka_security_protocol": "SSL"}, require_tls=True)  # type: ignore[arg-type]
    assert Settings(**SECURE, redis_ssl_cafile="/ca.pem", require_tls=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_plaintext_kafka_is_refused_when_tls_is_required(protocol: str) -> None:
    said = refusal(**{**SECURE, "kafka_security_protocol": protocol}, require_tls=True)
    assert f"TWINMON_REQUIRE_TLS is on but TWINMON_KAFKA_SECURITY_PROTOCOL is {protocol}" in said
    assert "use SASL_SSL or SSL" in said


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_sasl_over_plaintext_is_refused_when_tls_is_required(mechanism: str) -> None:
    said = refusal(**{**SECURE, "kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": mechanism},
                   require_tls=True)
    assert "SASL over plaintext" in said and "p-secret-1" not in said


@pytest.mark.parametrize("url", ["redis://u:r-secret-1@redis:6379/0", "unix:///run/redis.sock"])
def test_plaintext_redis_is_refused_when_tls_is_required(url: str) -> None:
    said = refusal(**{**SECURE, "redis_url": url}, require_tls=True)
    assert "TWINMON_REQUIRE_TLS is on but TWINMON_REDIS_URL does not start with rediss://" in said
    assert "r-secret-1" not in said


@pytest.mark.parametrize("require_tls", [False, True])
def test_a_redis_ca_file_with_a_plaintext_url_is_an_error_always(require_tls: bool) -> None:
    said = refusal(**{**SECURE, "redis_url": "redis://u:r-secret-1@redis:6379/0"}, redis_ssl_cafile="/ca.pem",
                   require_tls=require_tls)
    assert "TWINMON_REDIS_SSL_CAFILE is set but TWINMON_REDIS_URL does not start with rediss://" in said
    assert "r-secret-1" not in said


def test_plaintext_stays_allowed_when_tls_is_not_required() -> None:
    assert not Settings().require_tls  # the local development default
    assert Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u",  # type: ignore[arg-type]
                    kafka_sasl_password="p-secret-1").kafka_security_protocol == "SASL_PLAINTEXT"


@pytest.mark.parametrize("command", [["worker"], ["serve"], ["topics", "create"], ["twin", "show", "x"]])
@pytest.mark.parametrize(("env", "message"), [
    ({"TWINMON_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}, "TWINMON_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
    ({"TWINMON_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "TWINMON_KAFKA_SASL_MECHANISM": "PLAIN"},
     "SASL over plaintext"),
    ({"TWINMON_REDIS_URL": "redis://u:r-secret-1@redis:6379/0"}, "TWINMON_REDIS_URL does not start with rediss://"),
])
def test_every_command_refuses_to_start_with_one_clear_line(command: list[str], env: dict[str, str],
                                                            message: str) -> None:
    secure = {"TWINMON_REQUIRE_TLS": "true", "TWINMON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
              "TWINMON_KAFKA_SASL_USERNAME": "u", "TWINMON_KAFKA_SASL_PASSWORD": "p-secret-1",
              "TWINMON_REDIS_URL": "rediss://u:r-secret-1@redis:6380/0"}
    out = CliRunner(env={**{k: None for k in os.environ if k.startswith("TWINMON_")}, **secure, **env}).invoke(
        main, command)
    assert out.exit_code == 2, out.output
    assert "Error: bad configuration: TWINMON_REQUIRE_TLS is on but" in out.output and message in out.output
    assert "p-secret-1" not in out.output and "r-secret-1" not in out.output
