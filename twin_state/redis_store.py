"""Twins in Redis: one hash per patient, written only when the log position is newer.

Key ``{prefix}:twin:{<patient_id>}`` holds fields ``p`` (partition), ``o`` (offset) and ``s`` (the twin as
JSON). The braces are a Redis Cluster hash tag, so everything of one patient stays on one slot when the
deployment grows to a cluster. The newer-than check runs inside Redis (a Lua script) so it is atomic with
the write even when two workers briefly both believe they own a partition during a rebalance.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from redis.asyncio import Redis

from twin_state import codec
from twin_state.twin import Twin

# Returns 1 when written. Offsets stay far below 2^53, where Lua numbers are exact.
_SAVE_IF_NEWER = """
local cur = redis.call('HMGET', KEYS[1], 'p', 'o')
if cur[1] == ARGV[1] and cur[2] and tonumber(cur[2]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'o', ARGV[2], 's', ARGV[3])
return 1
"""


class RedisTwinStore:
    def __init__(self, client: Redis, prefix: str = "twinmon") -> None:
        self._redis = client
        self._prefix = prefix
        self._save = client.register_script(_SAVE_IF_NEWER)

    def key(self, patient_id: str) -> str:
        return f"{self._prefix}:twin:{{{patient_id}}}"

    async def load_many(self, patient_ids: Sequence[str]) -> dict[str, Twin]:
        if not patient_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in patient_ids:
                pipe.hget(self.key(pid), "s")
            blobs = await pipe.execute()
        return {
            pid: codec.from_dict(orjson.loads(blob))
            for pid, blob in zip(patient_ids, blobs, strict=True)
            if blob is not None
        }

    async def save_many(self, twins: Sequence[Twin]) -> int:
        if not twins:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for twin in twins:
                await self._save(
                    keys=[self.key(twin.patient_id)],
                    args=[twin.partition, twin.offset, orjson.dumps(codec.to_dict(twin))],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def get(self, patient_id: str) -> Twin | None:
        blob = await self._redis.hget(self.key(patient_id), "s")
        return None if blob is None else codec.from_dict(orjson.loads(blob))

    async def patient_ids(self) -> list[str]:
        prefix = f"{self._prefix}:twin:{{"
        ids = []
        async for key in self._redis.scan_iter(match=f"{prefix}*", count=1000):
            k = key.decode() if isinstance(key, bytes) else key
            ids.append(k[len(prefix) : -1])
        return sorted(ids)
