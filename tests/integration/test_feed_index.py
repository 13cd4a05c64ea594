"""The feed's Redis indexes on the real Redis: re-indexing a record changes nothing, queries are newest first
with paging and time filters, and one patient's alert history is capped."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from feed.index import ALERT_HISTORY_CAP, FeedIndex
from tests.conftest import Services

pytestmark = pytest.mark.integration


async def test_indexing_is_idempotent_paged_and_capped(services: Services) -> None:
    client = Redis.from_url(services.redis_url)
    index = FeedIndex(client, f"t{uuid.uuid4().hex[:8]}")
    try:
        records = [{"id": f"r{i}", "at": 1000 + i, "user": "u", "team": "ward-7", "action": "enrol",
                    "patient_id": f"p-{i}", "alert_id": None, "reason": ""} for i in range(5)]
        assert [await index.add_audit(r) for r in records] == [True] * 5
        assert [await index.add_audit(r) for r in records] == [False] * 5  # a replayed topic changes nothing
        changed = {**records[0], "reason": "tampered"}
        assert await index.add_audit(changed) is False
        page, more = await index.audit("ward-7", None, None, 0, 2)
        assert [r["id"] for r in page] == ["r4", "r3"] and more
        page, more = await index.audit("ward-7", None, None, 4, 2)
        assert [r["id"] for r in page] == ["r0"] and not more and page[0]["reason"] == ""
        page, _ = await index.audit("ward-7", 1001, 1003, 0, 10)
        assert [r["id"] for r in page] == ["r3", "r2", "r1"]
        assert (await index.audit("ward-9", None, None, 0, 10)) == ([], False)

        for i in range(ALERT_HISTORY_CAP + 20):
            await index.add_alert_event({"event_id": f"e{i}", "patient_id": "p-1", "at": i, "kind": "raised"})
        kept, more = await index.alert_history("p-1", None, None, 0, 1000)
        assert len(kept) == ALERT_HISTORY_CAP and not more
        assert kept[0]["event_id"] == f"e{ALERT_HISTORY_CAP + 19}" and kept[-1]["event_id"] == "e20"
    finally:
        await client.aclose()
