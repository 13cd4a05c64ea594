"""Every write is audited first and the trail is tamper-evident, on the real broker: changes made through the feed
(`twinmon serve`) and through the CLI (`enrol`, `discharge`, `alert ack`, `alert resolve`, `fhir ingest`) each
leave a signed, chained audit record before the change; `twinmon audit verify` passes on that trail, and then
fails, naming the count, for a record forged with only the Kafka credentials, an altered copy, a record missing
from a writer's chain, a replay, and a partition whose first record was deleted."""

from __future__ import annotations

import asyncio
import getpass
import time
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from redis.asyncio import Redis

from feed.audit_chain import Chain
from tests.conftest import Deployment, Services
from tests.support.feed_helpers import ApiProcess, wait_until
from tests.support.helpers import consume_all, produce
from twin_state.profile import Profile
from twin_state.redis_store import RedisProfileStore

pytestmark = pytest.mark.integration

TEAM = "ward-audit"
ALERT = "a" * 24


def _save_profile(services: Services, prefix: str, pid: str) -> None:
    async def go() -> None:
        client = Redis.from_url(services.redis_url)
        try:
            assert await RedisProfileStore(client, prefix).save(Profile(pid, TEAM, int(time.time() * 1000)))
        finally:
            await client.aclose()

    asyncio.run(go())


def _heart_rate(pid: str) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": at,
            "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}


def _verify(deployment: Deployment) -> tuple[int, dict[str, int], str]:
    out = deployment.run("audit", "verify", check=False)
    counts = {}
    for line in out.stdout.splitlines():
        name, _, value = line.partition(": ")
        counts[name] = int(value)
    return out.returncode, counts, out.stdout + out.stderr


def _audit_page(api: ApiProcess, token: str) -> list[dict[str, Any]]:
    return list(api.call("GET", "/api/audit", token, expect=200).json()["items"])


def test_every_write_is_audited_and_verify_catches_forgery_alteration_and_drops(
        services: Services, deployment: Deployment) -> None:
    env = deployment.env
    prefix, topic = env["TWINMON_REDIS_PREFIX"], env["TWINMON_TOPIC_AUDIT"]
    _save_profile(services, prefix, "aud-1")
    nurse = deployment.token("nurse-audit", TEAM)
    api = deployment.start_api()
    try:
        # --- through the feed: enrol, update, discharge, readings ---
        api.call("POST", "/api/patients", nurse, json={"patient_id": "aud-2"}, expect=202)
        api.call("PUT", "/api/patients/{patient_id}", nurse, path={"patient_id": "aud-1"}, json={}, expect=202)
        api.call("DELETE", "/api/patients/{patient_id}", nurse, path={"patient_id": "aud-1"}, expect=202)
        # --- through the CLI: user as asserted, and the OS account ---
        said = deployment.run("enrol", "aud-3", "--team", TEAM, "--user", "dr-cli").stdout
        assert "audit record" in said
        deployment.run("discharge", "aud-3", "--team", TEAM)  # no --user: the OS account
        deployment.run("alert", "ack", "aud-1", ALERT, "--user", "nurse-cli")
        deployment.run("alert", "resolve", "aud-1", ALERT, "--user", "nurse-cli", "--reason", "seen at bedside")
        deployment.run("alert", "ack", "never-enrolled-9", ALERT, "--user", "nurse-cli")  # no team on file
        obs = deployment.tmp / "obs.json"
        obs.write_bytes(orjson.dumps(_heart_rate("aud-1")))
        assert "1 audit records" in deployment.run("fhir", "ingest", str(obs), "--user", "nurse-cli").stdout

        records = consume_all(services.bootstrap, topic, 9)
        docs = [orjson.loads(r.value) for r in records]
        assert sorted((d["source"], d["action"], d["team"]) for d in docs) == [
            ("cli", "acknowledge", ""), ("cli", "acknowledge", TEAM), ("cli", "discharge", TEAM),
            ("cli", "enrol", TEAM), ("cli", "observe", TEAM), ("cli", "resolve", TEAM),
            ("feed", "discharge", TEAM), ("feed", "enrol", TEAM), ("feed", "update", TEAM)]
        me = getpass.getuser()
        users = {(d["action"], d["user"], d["os_user"]) for d in docs if d["source"] == "cli"}
        assert users == {("enrol", "dr-cli", me), ("discharge", me, me), ("acknowledge", "nurse-cli", me),
                         ("resolve", "nurse-cli", me), ("observe", "nurse-cli", me)}
        assert all(d["user"] == "nurse-audit" and d["os_user"] is None for d in docs if d["source"] == "feed")
        assert len({d["writer"] for d in docs}) == 7  # the feed's chain and one per CLI command
        # The audit record was on the broker before the change was sent.
        audited_at = {(d["patient_id"], d["action"]): r.timestamp for d, r in zip(docs, records, strict=True)}
        for change_topic, action_of in ((env["TWINMON_TOPIC_ENROLMENTS"], lambda m: "enrol" if m["status"] ==
                                         "enrolled" else "discharge"),
                                        (env["TWINMON_TOPIC_ALERT_ACTIONS"], lambda m: str(m["action"])),
                                        (env["TWINMON_TOPIC_VITALS"], lambda m: "observe")):
            for change in consume_all(services.bootstrap, change_topic, 1):
                msg = orjson.loads(change.value)
                key = (msg["patient_id"], action_of(msg))
                if key in audited_at:  # the feed's update of aud-1 is an "enrolled" profile too
                    assert audited_at[key] <= change.timestamp, key

        code, counts, text = _verify(deployment)
        assert code == 0, text
        assert counts["records"] == 9 and counts["intact"] == 9 and counts["writers"] == 7
        assert "aud-" not in text and "nurse" not in text  # counts only
        # The CLI's records reach the team's trail in the feed.
        wait_until("the CLI's records indexed", lambda: len(_audit_page(api, nurse)) == 8)  # the team's 8

        # --- a record forged with only the Kafka credentials (no key): a bad MAC, never indexed ---
        template = next(d for d in docs if d["source"] == "cli" and d["action"] == "acknowledge" and d["team"])
        forged = {**template, "id": "f" * 32, "reason": "forged", "seq": 2, "prev": template["mac"],
                  "mac": "0" * 64}
        produce(services.bootstrap, topic, [(TEAM.encode(), orjson.dumps(forged))])
        code, counts, text = _verify(deployment)
        assert code == 1 and counts["bad mac"] == 1 and counts["intact"] == 9, text
        deployment.run("alert", "ack", "aud-1", ALERT, "--user", "nurse-cli")  # after it, same partition
        wait_until("the next record indexed", lambda: len(_audit_page(api, nurse)) == 9)
        assert all(i["id"] != forged["id"] for i in _audit_page(api, nurse))

        # --- an altered copy of a real record ---
        altered = {**template, "user": "someone-else"}
        produce(services.bootstrap, topic, [(TEAM.encode(), orjson.dumps(altered))])
        code, counts, text = _verify(deployment)
        assert code == 1 and counts["bad mac"] == 2, text

        # --- a record missing from a writer's chain (signed with the key: only its absence is wrong) ---
        key = env["TWINMON_AUDIT_KEY"].encode()
        chain, signed = Chain("feed-gap"), []
        for i in range(3):
            doc = chain.seal({**template, "id": f"gap{i}"}, key)
            chain.advance(doc)
            signed.append(doc)
        produce(services.bootstrap, topic, [(TEAM.encode(), orjson.dumps(d)) for d in (signed[0], signed[2])])
        code, counts, text = _verify(deployment)
        assert code == 1 and counts["missing"] == 1 and counts["bad mac"] == 2, text
        produce(services.bootstrap, topic, [(TEAM.encode(), orjson.dumps(signed[1]))])  # it turns up
        code, counts, text = _verify(deployment)
        assert counts["missing"] == 0 and counts["bad mac"] == 2, text
        # A replayed copy of a genuine record.
        produce(services.bootstrap, topic, [(TEAM.encode(), orjson.dumps(signed[1]))])
        assert _verify(deployment)[1]["duplicates"] == 1
    finally:
        api.stop()

    # --- the first record of a partition deleted ---
    async def truncate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=services.bootstrap)
        await admin.start()
        try:
            await admin.delete_records({TopicPartition(topic, records[0].partition): RecordsToDelete(1)})
        finally:
            await admin.close()

    asyncio.run(truncate())
    code, counts, text = _verify(deployment)
    assert code == 1 and counts["truncated partitions"] == 1, text
