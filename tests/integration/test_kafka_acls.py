"""deploy/kafka-acls.toml against a real broker (``kafka.sh start-secure``, StandardAuthorizer, deny by default):
each principal can do what its part of twinmon needs and is refused everything else.

What each principal may do is written out here, not read from the file, so a file that grants too much fails.
kafka.sh applies the file for this module's topic names; ``twinmon topics acls`` (what deploy/k8s/topics-job.yaml
runs) applies it for a second installation's names, as the topics principal.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, KafkaError, TopicAuthorizationFailedError
from pydantic import SecretStr

from streams.kafka_io import create_topics, topic_names
from streams.security import aiokafka_kwargs
from streams.settings import Settings
from tests.conftest import TWINMON
from tests.support.helpers import local_script

pytestmark = pytest.mark.integration

TAG = "kacl" + secrets.token_hex(3)
ROLES = ("worker", "feed", "gateway", "topics")
USERS = {role: f"twinmon-{role}" for role in ROLES}
TOPICS = ("vitals", "dlq", "alerts", "enrolments", "alert_actions", "audit")

# The specification: what each principal reads and writes (everything else is refused).
READS = {"worker": {"vitals", "enrolments", "alert_actions"}, "feed": {"alerts", "audit"}, "gateway": set(),
         "topics": set()}
WRITES = {"worker": {"alerts", "dlq"}, "feed": {"audit", "enrolments", "alert_actions"}, "gateway": {"vitals"},
          "topics": set()}


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    ca: Path
    passwords: dict[str, str]

    def settings(self, role: str, installation: str = TAG) -> Settings:
        user = "admin" if role == "admin" else USERS[role]
        return Settings(
            kafka_bootstrap=self.bootstrap, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=user, kafka_sasl_password=SecretStr(self.passwords[role]),
            kafka_ssl_cafile=str(self.ca), app_id=f"{installation}-app", partitions=1,
            topic_vitals=f"{installation}-vitals", topic_dlq=f"{installation}-vitals.dlq",
            topic_alerts=f"{installation}-alerts", topic_enrolments=f"{installation}-enrolments",
            topic_alert_actions=f"{installation}-alert-actions", topic_audit=f"{installation}-audit")

    def env(self, role: str, installation: str = TAG) -> dict[str, str]:
        s = self.settings(role, installation)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWINMON_")}
        for name in Settings.model_fields:
            value = getattr(s, name)
            if value is None or not (name.startswith(("kafka_", "topic_")) or name in ("app_id", "partitions")):
                continue
            env[f"TWINMON_{name.upper()}"] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    root = tmp_path_factory.mktemp("kafka-acls")
    passwords = {role: secrets.token_urlsafe(18) for role in ("admin", "client", *ROLES)}
    env = {**os.environ, "KAFKA_ADMIN_PASSWORD": passwords["admin"], "KAFKA_CLIENT_PASSWORD": passwords["client"],
           "KAFKA_ACL_TOPIC_PREFIXES": f"{TAG}-legacy-", "KAFKA_ACL_GROUP_PREFIX": f"{TAG}-legacy",
           "KAFKA_ACL_TOPIC_PREFIX": f"{TAG}-", "KAFKA_ACL_APP_ID": f"{TAG}-app",
           **{f"KAFKA_{role.upper()}_PASSWORD": passwords[role] for role in ROLES}}


    local_script(env, "certs.sh", str(root / "certs"))
    try:
        bootstrap = local_script(env, "kafka.sh", "start-secure", str(root / "kafka"), str(root / "certs"))
        yield Broker(bootstrap, root / "certs" / "ca.pem", passwords)
    finally:
        local_script(env, "kafka.sh", "stop", str(root / "kafka"))


async def can_produce(settings: Settings, topic: str) -> bool:
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"probe", key=b"probe")  # enrolments is compacted: keyed
        return True
    except TopicAuthorizationFailedError:
        return False
    finally:
        await producer.stop()


async def can_consume(settings: Settings, topic: str, group: str | None = None) -> bool:
    consumer = AIOKafkaConsumer(topic, **aiokafka_kwargs(settings), group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    try:
        await consumer.start()
        for _ in range(20):
            if (await consumer.getmany(timeout_ms=500)) and group is None:
                return True
            if group is not None and consumer.assignment():
                await consumer.commit({TopicPartition(topic, 0): 0})
                return True
        raise AssertionError(f"no answer consuming {topic} (group {group})")
    except (TopicAuthorizationFailedError, GroupAuthorizationFailedError):
        return False
    finally:
        await consumer.stop()


def test_each_principal_reads_and_writes_only_its_topics(broker: Broker) -> None:
    async def go() -> dict[str, dict[str, tuple[bool, bool]]]:
        await create_topics(broker.settings("topics"))  # as the topics principal
        names = topic_names(broker.settings("admin"))
        for topic in names.values():  # something to read on every topic
            assert await can_produce(broker.settings("admin"), topic)
        return {role: {t: (await can_consume(broker.settings(role), names[t]),
                           await can_produce(broker.settings(role), names[t])) for t in TOPICS} for role in ROLES}

    seen = asyncio.run(go())
    expected = {role: {t: (t in READS[role], t in WRITES[role]) for t in TOPICS} for role in ROLES}
    assert seen == expected  # e.g. the feed cannot write alerts, the worker cannot write audit


def test_each_principal_joins_only_its_consumer_groups(broker: Broker) -> None:
    async def go() -> None:
        worker, feed = broker.settings("worker"), broker.settings("feed")
        app = worker.app_id
        assert await can_consume(worker, worker.topic_vitals, app)
        assert not await can_consume(worker, worker.topic_vitals, f"{app}-feed-audit")
        assert await can_consume(feed, feed.topic_audit, f"{app}-feed-audit")
        assert not await can_consume(feed, feed.topic_alerts, app)  # the workers' group: offsets it must not move
        assert not await can_consume(broker.settings("gateway"), worker.topic_vitals, app)

    asyncio.run(go())


def test_only_the_topics_principal_creates_topics_and_only_twinmons(broker: Broker) -> None:
    async def go() -> None:
        outside = broker.settings("topics").model_copy(update={"topic_vitals": f"outside-{TAG}"})
        with pytest.raises(KafkaError, match="outside"):
            await create_topics(outside)
        for role in ("worker", "feed", "gateway"):
            other = broker.settings(role, f"{TAG}-{role}")
            with pytest.raises(TopicAuthorizationFailedError):
                await create_topics(other)

    asyncio.run(go())


def test_twinmon_topics_acls_applies_the_file_for_another_installation(broker: Broker) -> None:
    other = f"{TAG}-b"

    def twinmon(*args: str) -> str:
        out = subprocess.run([TWINMON, *args], env=broker.env("topics", other), capture_output=True, text=True,
                             timeout=120, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert broker.passwords["topics"] not in out.stdout + out.stderr
        return out.stdout

    acl_file = str(Path(__file__).resolve().parents[2] / "deploy" / "kafka-acls.toml")
    assert "ACLs in place for 4 principals" in twinmon("topics", "acls", "--file", acl_file)
    assert "created:" in twinmon("topics", "create")  # its own Create ACLs on these names came with the file
    twinmon("topics", "acls", "--file", acl_file)  # again: nothing changes

    async def go() -> None:
        feed, worker = broker.settings("feed", other), broker.settings("worker", other)
        assert await can_produce(feed, feed.topic_audit) and not await can_produce(feed, feed.topic_alerts)
        assert await can_produce(worker, worker.topic_alerts) and not await can_produce(worker, worker.topic_audit)
        assert await can_consume(worker, worker.topic_vitals, worker.app_id)

    asyncio.run(go())
