"""Kafka with SASL/SCRAM over TLS and Redis with a least-privilege ACL user over TLS, end to end.

A dedicated broker (``kafka.sh start-secure``: SASL_SSL only, SCRAM-SHA-512, StandardAuthorizer with ACLs) and
Redis (``redis.sh start-secure``: TLS port only, default user off, an ACL user limited to its key prefix and
twinmon's commands), with certificates made by ``certs.sh`` for this module. Every twinmon client goes through
them: ``topics create``, ``enrol``, ``simulate``, the worker, ``alert list``/``ack``, ``twin show``. The plaintext
session services of the other tests are not touched.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError

from simulation.simulator import simulate
from streams.kafka_io import produce_all
from streams.schema import encode
from streams.security import aiokafka_kwargs, redis_client
from streams.settings import Settings
from tests.conftest import LOCAL, Deployment
from tests.e2e.test_alerts import offline_event_ids
from tests.support.helpers import consume_all, replay_twins, twin_differences
from twin_state.redis_store import RedisTwinStore

pytestmark = pytest.mark.integration

TAG = "sec" + secrets.token_hex(3)
PATIENTS, HOURS, RATE, SEED = 4, 3, 0.25, 31


@dataclass(frozen=True)
class Secure:
    env: dict[str, str]  # a twinmon deployment on the secure services, as the ACL users
    passwords: dict[str, str]  # every password in play: none may appear in any output
    state: tuple[Path, Path]  # kafka, redis state dirs (their logs)
    redis_port: int


def _script(script: str, *args: str, env: dict[str, str]) -> str:
    out = subprocess.run(["bash", str(LOCAL / script), *args], env=env, capture_output=True, text=True,
                         timeout=300, check=False)
    if out.returncode != 0:
        pytest.fail(f"{script} {args[0]} failed:\n{out.stderr[-4000:]}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    root = tmp_path_factory.mktemp("secure")
    certs, kafka_state, redis_state = root / "certs", root / "kafka", root / "redis"
    passwords = {name: secrets.token_urlsafe(18) for name in ("kafka_admin", "kafka_client", "kafka_worker",
                                                               "kafka_feed", "redis_admin", "redis_client",
                                                               "redis_feed")}
    env = {
        **os.environ,
        "KAFKA_ADMIN_PASSWORD": passwords["kafka_admin"],
        "KAFKA_CLIENT_PASSWORD": passwords["kafka_client"],
        "KAFKA_ACL_TOPIC_PREFIXES": f"{TAG}-",
        "KAFKA_ACL_GROUP_PREFIX": TAG,
        # The worker's and the feed's own principals (deploy/kafka-acls.toml) for this module's topics and group.
        "KAFKA_WORKER_PASSWORD": passwords["kafka_worker"],
        "KAFKA_FEED_PASSWORD": passwords["kafka_feed"],
        "KAFKA_ACL_TOPIC_PREFIX": f"{TAG}-",
        "KAFKA_ACL_APP_ID": f"{TAG}-app",
        "REDIS_ADMIN_PASSWORD": passwords["redis_admin"],
        "REDIS_CLIENT_PASSWORD": passwords["redis_client"],
        "REDIS_FEED_PASSWORD": passwords["redis_feed"],  # the care-team feed's own user (twinmon-feed)
        "REDIS_KEY_PREFIX": TAG,
    }
    _script("certs.sh", str(certs), env=env)
    try:
        bootstrap = _script("kafka.sh", "start-secure", str(kafka_state), str(certs), env=env)
        redis_url = _script("redis.sh", "start-secure", str(redis_state), str(certs), env=env)
        assert redis_url.startswith("rediss://127.0.0.1:") and passwords["redis_client"] not in redis_url
        twinmon_env = {
            **os.environ,
            "TWINMON_KAFKA_BOOTSTRAP": bootstrap,
            "TWINMON_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TWINMON_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TWINMON_KAFKA_SASL_USERNAME": "twinmon",
            "TWINMON_KAFKA_SASL_PASSWORD": passwords["kafka_client"],
            "TWINMON_KAFKA_SSL_CAFILE": str(certs / "ca.pem"),
            "TWINMON_REDIS_URL": redis_url.replace("rediss://", f"rediss://twinmon:{passwords['redis_client']}@"),
            "TWINMON_REDIS_SSL_CAFILE": str(certs / "ca.pem"),
            "TWINMON_REDIS_PREFIX": TAG,
            "TWINMON_APP_ID": f"{TAG}-app",
            "TWINMON_TOPIC_VITALS": f"{TAG}-vitals",
            "TWINMON_TOPIC_DLQ": f"{TAG}-vitals.dlq",
            "TWINMON_TOPIC_ALERTS": f"{TAG}-alerts",
            "TWINMON_TOPIC_ENROLMENTS": f"{TAG}-enrolments",
            "TWINMON_TOPIC_ALERT_ACTIONS": f"{TAG}-alert-actions",
            "TWINMON_TOPIC_AUDIT": f"{TAG}-audit",
            "TWINMON_PARTITIONS": "2",
            "TWINMON_LOG_LEVEL": "info",  # chattier logs: more places a secret could leak into
            "TWINMON_AUDIT_KEY": secrets.token_hex(32),
        }
        yield Secure(twinmon_env, passwords, (kafka_state, redis_state),
                     int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    finally:
        _script("kafka.sh", "stop", str(kafka_state), env=env)
        _script("redis.sh", "stop", str(redis_state), env=env)


@pytest.fixture
def deployment(secure: Secure, tmp_path: Path) -> Deployment:
    """The project's Deployment helper (runs ``twinmon``, starts workers), pointed at the secure services."""
    return Deployment(dict(secure.env), tmp_path)


def as_principal(secure: Secure, role: str) -> dict[str, str]:
    """Environment changes that make a twinmon process use the Kafka principal of ``role`` (worker, feed)."""
    return {"TWINMON_KAFKA_SASL_USERNAME": f"twinmon-{role}",
            "TWINMON_KAFKA_SASL_PASSWORD": secure.passwords[f"kafka_{role}"]}


def _settings(env: dict[str, str]) -> Settings:
    return Settings(**{k[len("TWINMON_"):].lower(): v for k, v in env.items()  # type: ignore[arg-type]
                       if k.startswith("TWINMON_")})


def _consume(settings: Settings, topic: str, expected: int, timeout_s: float = 30) -> list[Any]:
    return consume_all(settings.kafka_bootstrap, topic, expected, timeout_s, **aiokafka_kwargs(settings))


def test_pipeline_over_sasl_ssl_and_redis_tls_with_acl_users(secure: Secure, deployment: Deployment) -> None:
    settings = _settings(secure.env)
    captured: list[str] = []

    def run(*args: str) -> str:
        out = deployment.run(*args)
        captured.extend([out.stdout, out.stderr])
        return out.stdout + out.stderr

    assert "created:" in run("topics", "create")
    start = int(time.time() * 1000) - HOURS * 3_600_000
    readings = [(r.patient_id.encode(), encode(r))
                for _, r in simulate(PATIENTS, HOURS * 3600.0, RATE, SEED, start, 1.0)]
    for i in range(PATIENTS):
        run("enrol", f"sim-{i:06d}", "--team", "ward-7")
    sent = run("simulate", "--patients", str(PATIENTS), "--rate", str(RATE), "--duration", str(HOURS * 3600),
               "--deteriorating", "1", "--seed", str(SEED), "--start-ms", str(start), "--speed", "0")
    assert f"sent {len(readings)} readings" in sent
    bad = [(b"sim-000000", b"{\"truncated", "not_json"), (b"sim-000001", b"\xff\xfe not utf-8", "not_json"),
           (b"sim-000002", orjson.dumps({"v": 1, "patient_id": "sim-000002"}), "missing_field")]
    asyncio.run(produce_all(settings, settings.topic_vitals, [(k, v) for k, v, _ in bad]))

    worker = deployment.start_worker(**as_principal(secure, "worker"))
    try:
        worker.wait_for("twinmon_events_consumed_total", len(readings) + len(bad) + PATIENTS, timeout=120)

        # Twins, read back as the ACL user over TLS, equal a clean offline replay.
        async def load() -> dict[str, Any]:
            client = redis_client(settings)
            try:
                return await RedisTwinStore(client, settings.redis_prefix).load_many(
                    [f"sim-{i:06d}" for i in range(PATIENTS)])
            finally:
                await client.aclose()

        expected = replay_twins([v for _, v in readings], int(time.time() * 1000))
        assert len(expected) == PATIENTS
        assert twin_differences(asyncio.run(load()), expected) == []

        # Alerts reached the alerts topic, each offline event once by id, scoped to the enrolled team.
        wanted = offline_event_ids(readings)
        assert wanted, "the simulated cohort should raise alerts"
        events = {e["event_id"]: e for e in (orjson.loads(r.value) for r in
                                              _consume(settings, settings.topic_alerts, len(wanted), 60))}
        assert set(events) == wanted
        assert {e["care_team"] for e in events.values()} == {"ward-7"}

        # Bad input went to the dead-letter topic with its bytes and reason.
        dlq = _consume(settings, settings.topic_dlq, len(bad))
        assert sorted((r.value, dict(r.headers)["twinmon-reason"].decode()) for r in dlq) == sorted(
            (v, reason) for _, v, reason in bad)

        # An alert acknowledged from the CLI (Kafka and Redis, both as the ACL users) lands on the stored alert.
        open_alert = next(((pid, line.split()[0]) for pid in (f"sim-{i:06d}" for i in range(PATIENTS))
                           for line in run("alert", "list", pid).splitlines() if "NOT acknowledged" in line), None)
        assert open_alert is not None, "no open, unacknowledged alert to act on"
        run("alert", "ack", *open_alert, "--user", "nurse-17")
        deadline = time.monotonic() + 30
        while "acknowledged by nurse-17" not in run("alert", "list", open_alert[0]):
            assert time.monotonic() < deadline, "acknowledgement never reached the stored alert"
            time.sleep(0.3)
        assert "sim-000000" in run("twin", "show", "sim-000000")
    finally:
        worker.stop()

    # No password in anything twinmon printed or logged, nor in the servers' own logs.
    logs = [worker.log.read_text(errors="replace")]
    for state in secure.state:
        logs += [p.read_text(errors="replace") for p in state.glob("*.log")]
    everything = "\n".join([*captured, *logs])
    # The search covers real output: the worker's log, the brokers' logs and every command's words.
    assert "metrics: http://" in logs[0] and "Kafka Server started" in everything and "Ready to accept" in everything
    for secret in secure.passwords.values():
        assert secret not in everything


def _fails(deployment: Deployment, *args: str, timeout: float = 90, **env: str) -> str:
    """Run twinmon with ``env`` changes; it must fail, and say why without printing a password."""
    dep = Deployment({**deployment.env, **env}, deployment.tmp)
    out = dep.run(*args, check=False, timeout=timeout)
    assert out.returncode != 0, f"twinmon {' '.join(args)} succeeded with {sorted(env)}:\n{out.stdout}"
    return out.stdout + out.stderr


def test_wrong_credentials_plaintext_and_untrusted_certificates_are_refused_clearly(
    secure: Secure, deployment: Deployment
) -> None:
    env = secure.env
    wrong = "not-the-password-" + secrets.token_hex(4)
    redis_with = env["TWINMON_REDIS_URL"]
    for args in (("topics", "check"), ("worker",)):
        said = _fails(deployment, *args, TWINMON_KAFKA_SASL_PASSWORD=wrong, TWINMON_METRICS_PORT="0")
        assert "Kafka refused the SASL credentials of user 'twinmon'" in said, said
        assert wrong not in said
    said = _fails(deployment, "worker", TWINMON_REDIS_URL=redis_with.replace(secure.passwords["redis_client"], wrong),
                  TWINMON_METRICS_PORT="0")
    assert "Redis refused the user name or password" in said and wrong not in said
    said = _fails(deployment, "twin", "show", "sim-000000",
                  TWINMON_REDIS_URL=redis_with.replace(secure.passwords["redis_client"], wrong))
    assert "Redis refused the user name or password" in said and wrong not in said

    # Plaintext to the TLS ports: refused, and the message points at the protocol setting.
    said = _fails(deployment, "topics", "check", TWINMON_KAFKA_SECURITY_PROTOCOL="PLAINTEXT")
    assert "Kafka closed the connection" in said and "TWINMON_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in said
    said = _fails(deployment, "twin", "show", "sim-000000",
                  TWINMON_REDIS_URL=redis_with.replace("rediss://", "redis://"))
    assert "rediss://" in said and secure.passwords["redis_client"] not in said

    # TLS without trusting our CA: the certificate is refused (the system store does not hold it).
    said = _fails(deployment, "topics", "check", TWINMON_KAFKA_SSL_CAFILE="")
    assert "Kafka's TLS certificate is not trusted" in said
    said = _fails(deployment, "twin", "show", "sim-000000", TWINMON_REDIS_SSL_CAFILE="")
    assert "Redis's TLS certificate is not trusted" in said

    # The Kafka ACL: the twinmon user cannot create (nor use) topics outside its prefix, nor another group; a
    # worker told to is refused at start instead of waiting silently for partitions that never come.
    said = _fails(deployment, "topics", "create", TWINMON_TOPIC_VITALS="outside-vitals")
    assert "TopicAuthorizationFailed" in said and "outside-vitals" in said
    said = _fails(deployment, "worker", TWINMON_APP_ID="outside-app", TWINMON_METRICS_PORT="0")
    assert "Kafka denies user 'twinmon' the consumer group 'outside-app'" in said
    said = _fails(deployment, "worker", TWINMON_TOPIC_DLQ="outside.dlq", TWINMON_METRICS_PORT="0")
    assert "Kafka denies user 'twinmon' the topics outside.dlq" in said
    for secret in secure.passwords.values():
        assert secret not in said


def test_redis_acl_user_is_least_privilege(secure: Secure) -> None:
    settings = _settings(secure.env)

    async def go() -> None:
        client = redis_client(settings)
        try:
            assert await client.ping()
            await client.hset(f"{TAG}:twin:{{probe}}", "f", "1")  # its own keys: allowed
            assert await client.hget(f"{TAG}:twin:{{probe}}", "f") == b"1"
            for denied in (
                lambda: client.hset("other:probe", "f", "1"),  # a key outside its prefix
                lambda: client.hset(f"{TAG}:probe", "f", "1"),  # nor outside its key families
                lambda: client.hget("twinmon:twin:{x}", "s"),
                lambda: client.flushall(),
                lambda: client.flushdb(),
                lambda: client.config_get("*"),
                lambda: client.keys("*"),
                lambda: client.execute_command("SCRIPT", "FLUSH"),
                lambda: client.execute_command("ACL", "LIST"),
                lambda: client.execute_command("CLIENT", "LIST"),
                lambda: client.set(f"{TAG}:plain", "1"),  # a command twinmon does not use, even on its keys
            ):
                with pytest.raises(NoPermissionError):
                    await denied()
        finally:
            await client.aclose()
        # The passwordless default user is off.
        scheme, rest = settings.redis_url.get_secret_value().split("//", 1)
        no_user = SecretStr(f"{scheme}//{rest.split('@')[1]}")
        anonymous = redis_client(settings.model_copy(update={"redis_url": no_user}))
        try:
            with pytest.raises(AuthenticationError):
                await anonymous.ping()
        finally:
            await anonymous.aclose()

    asyncio.run(go())


def test_the_feeds_redis_user_reads_but_cannot_write_twins_profiles_or_history(secure: Secure) -> None:
    worker_url = secure.env["TWINMON_REDIS_URL"]
    feed_url = worker_url.replace(f"twinmon:{secure.passwords['redis_client']}@",
                                  f"twinmon-feed:{secure.passwords['redis_feed']}@")
    settings = _settings({**secure.env, "TWINMON_REDIS_URL": feed_url})

    async def go() -> None:
        client = redis_client(settings)
        try:
            assert await client.ping()
            assert await client.hget(f"{TAG}:twin:{{nobody}}", "s") is None  # reads its prefix
            for denied in (
                lambda: client.hset(f"{TAG}:twin:{{x}}", "s", "1"),  # twins, profiles: the worker's to write
                lambda: client.rpush(f"{TAG}:hist:{{x}}", "1"),
                lambda: client.sadd(f"{TAG}:team:ward-9", "x"),
                lambda: client.hget("other:probe", "f"),
                # Its Lua permission does not widen it: a script's commands are checked against the same ACL.
                lambda: client.eval("return redis.call('HSET', KEYS[1], 's', '1')", 1, f"{TAG}:twin:{{x}}"),
                lambda: client.flushall(),
            ):
                with pytest.raises((NoPermissionError, ResponseError)) as refused:
                    await denied()
                assert any(w in str(refused.value).lower() for w in ("permission", "can't run this command"))
        finally:
            await client.aclose()

    asyncio.run(go())


def test_kafka_acls_keep_the_client_user_to_its_topics_and_groups(secure: Secure) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

    client = _settings(secure.env)
    admin = client.model_copy(update={"kafka_sasl_username": "admin",
                                      "kafka_sasl_password": SecretStr(secure.passwords["kafka_admin"])})
    outside = f"outside-{TAG}"

    async def create(settings: Settings, topic: str) -> None:
        admin_client = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
        await admin_client.start()
        try:
            response = await admin_client.create_topics([NewTopic(topic, 1, 1)])
            assert [code for _, code, *_ in response.topic_errors] == [0]
        finally:
            await admin_client.close()

    async def go() -> None:
        await create(admin, outside)  # the super user may create any topic
        await create(client, f"{TAG}-probe")  # the client user, one under its prefix

        producer = AIOKafkaProducer(**aiokafka_kwargs(client))
        await producer.start()
        try:
            with pytest.raises(TopicAuthorizationFailedError):
                await producer.send_and_wait(outside, b"x")
            await producer.send_and_wait(f"{TAG}-probe", b"x")  # its own topic: allowed
        finally:
            await producer.stop()

        for topic, group, denied in ((outside, None, TopicAuthorizationFailedError),
                                     (client.topic_vitals, f"outside-{TAG}", GroupAuthorizationFailedError)):
            consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(client), group_id=group,
                                        auto_offset_reset="earliest")
            try:
                with pytest.raises(denied):
                    await consumer.start()
                    await consumer.getmany(timeout_ms=10_000)
            finally:
                await consumer.stop()

    asyncio.run(go())


def test_feed_over_sasl_ssl_and_redis_tls_with_acl_users(secure: Secure, deployment: Deployment) -> None:
    """``twinmon serve`` (API, audit and alert indexers, live alert consumer) as least-privilege users (Kafka:
    the application's; Redis: the feed's own ``twinmon-feed``, which cannot write twins):
    enrolment through the audit and enrolment topics, alerts listed from Redis, an acknowledgement through the
    audit and alert-actions topics back to the stored alert, the audit trail read back."""
    from tests.support.feed_helpers import wait_until

    settings = _settings(secure.env)
    deployment.run("topics", "create")
    nurse = deployment.token("nurse-5", "ward-9")
    worker = deployment.start_worker("feed-worker", **as_principal(secure, "worker"))
    # The feed as its own, narrower ACL user (redis.sh's DEFAULT_FEED_ACL_COMMANDS, docs/configuration.md).
    feed_url = secure.env["TWINMON_REDIS_URL"].replace(f"twinmon:{secure.passwords['redis_client']}@",
                                                       f"twinmon-feed:{secure.passwords['redis_feed']}@")
    assert feed_url != secure.env["TWINMON_REDIS_URL"]
    api = deployment.start_api(TWINMON_REDIS_URL=feed_url, **as_principal(secure, "feed"))
    pid = "feed-000001"  # enrolled through the API; not one of the other tests' patients
    try:
        call = api.call
        assert call("GET", "/readyz", None, expect=200).json()["checks"] == {"redis": True, "kafka": True,
                                                                             "live_alerts": True}
        call("POST", "/api/patients", nurse, json={"patient_id": pid}, expect=202)
        wait_until("the enrolment applied", lambda: [p["patient_id"] for p in call(
            "GET", "/api/patients", nurse, expect=200).json()] == [pid], timeout=60)
        start = int(time.time() * 1000) - 3 * 3_600_000
        readings = [(pid.encode(), encode(replace(r, patient_id=pid)))
                    for _, r in simulate(2, 3 * 3600.0, 0.25, 41, start, 1.0) if r.patient_id == "sim-000001"]
        asyncio.run(produce_all(settings, settings.topic_vitals, readings))
        alerts = wait_until("an open alert", lambda: call("GET", "/api/alerts", nurse, expect=200).json(),
                            timeout=120)
        aid = {"alert_id": alerts[0]["alert_id"]}
        call("POST", "/api/alerts/{alert_id}/acknowledge", nurse, path=aid, expect=202)
        wait_until("the acknowledgement stored", lambda: any(
            a["alert_id"] == aid["alert_id"] and a["acknowledged_by"] == "nurse-5"
            for a in call("GET", "/api/alerts", nurse, expect=200).json()), timeout=60)
        detail = call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": pid}, expect=200).json()
        assert {v["metric"] for v in detail["vitals"]} >= {"heart_rate", "spo2"}
        audit = wait_until("both changes in the audit trail", lambda: [
            e for e in call("GET", "/api/audit", nurse, expect=200).json()["items"]
            if e["action"] in ("enrol", "acknowledge")], timeout=60)
        assert {e["action"] for e in audit} == {"enrol", "acknowledge"}
        assert all(e["user"] == "nurse-5" for e in audit)
    finally:
        api.stop()
        worker.stop()
    everything = api.log.read_text(errors="replace") + worker.log.read_text(errors="replace")
    assert "NOPERM" not in everything and "NoPermission" not in everything, everything[-3000:]
    for secret in [*secure.passwords.values(), nurse]:
        assert secret not in everything
