"""Redis indexes the feed reads: the audit trail per care team and each patient's alert history.

Both are written by consumers of Kafka topics (``audit``, ``alerts``) and are idempotent: a record is keyed by
its unique id (``HSETNX``), so re-indexing the same record after a restart or rebalance changes nothing.

* ``{prefix}:feed:audit:{<team>}`` sorted set (score = time, member = record id) and
  ``{prefix}:feed:auditrec:{<team>}`` hash (id -> the record's JSON).
* ``{prefix}:feed:ahist:{<pid>}`` sorted set and ``{prefix}:feed:aev:{<pid>}`` hash of alert events, capped.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

_INDEX = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local cap = tonumber(ARGV[4])
if cap > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n > cap then
    local old = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
    redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
    redis.call('HDEL', KEYS[2], unpack(old))
  end
end
return 1
"""

ALERT_HISTORY_CAP = 500


class FeedIndex:
    def __init__(self, client: Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._index = client.register_script(_INDEX)

    def _audit_keys(self, team: str) -> list[str]:
        return [f"{self._prefix}:feed:audit:{{{team}}}", f"{self._prefix}:feed:auditrec:{{{team}}}"]

    def _history_keys(self, patient_id: str) -> list[str]:
        return [f"{self._prefix}:feed:ahist:{{{patient_id}}}", f"{self._prefix}:feed:aev:{{{patient_id}}}"]

    async def add_audit(self, record: dict[str, Any]) -> bool:
        """Index one audit record; False when it was already there."""
        done = await self._index(keys=self._audit_keys(str(record["team"])),
                                 args=[record["id"], int(record["at"]), orjson.dumps(record), 0])
        return bool(done)

    async def add_alert_event(self, event: dict[str, Any]) -> bool:
        done = await self._index(keys=self._history_keys(str(event["patient_id"])),
                                 args=[event["event_id"], int(event["at"]), orjson.dumps(event), ALERT_HISTORY_CAP])
        return bool(done)

    async def _query(self, keys: list[str], since: int | None, until: int | None, offset: int,
                     limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; returns the page and whether more follow."""
        hi = "+inf" if until is None else str(until)
        lo = "-inf" if since is None else str(since)
        found: Any = await self._redis.zrevrangebyscore(keys[0], hi, lo, start=offset, num=limit + 1)
        ids: list[bytes] = list(found)
        more = len(ids) > limit
        ids = ids[:limit]
        if not ids:
            return [], False
        blobs = await self._redis.hmget(keys[1], ids)
        return [orjson.loads(b) for b in blobs if b is not None], more

    async def audit(self, team: str, since: int | None, until: int | None, offset: int,
                    limit: int) -> tuple[list[dict[str, Any]], bool]:
        return await self._query(self._audit_keys(team), since, until, offset, limit)

    async def alert_history(self, patient_id: str, since: int | None, until: int | None, offset: int,
                            limit: int) -> tuple[list[dict[str, Any]], bool]:
        return await self._query(self._history_keys(patient_id), since, until, offset, limit)
