"""Twins in Redis: one hash per patient, written only when the log position is newer, plus a capped history.

Key ``{prefix}:twin:{<patient_id>}`` holds fields ``p`` (partition), ``o`` (offset), ``s`` (the twin,
``codec.pack``) and ``a`` (the patient's alert state, opaque here, written in the same atomic step).
Key ``{prefix}:hist:{<patient_id>}`` is a list of MessagePack history points, newest last, trimmed to
``history_length``. The braces are a Redis Cluster hash tag: both keys of one patient live on one slot. A batch
of twins is written by one Lua script call per ``SAVE_CHUNK`` twins; on a Redis Cluster (a ``RedisCluster``
client) the store splits the batch per hash slot, since one call may only touch keys of one slot. The
newer-than check runs inside Redis, atomic with the write, even when two workers briefly both believe they own
a partition during a rebalance; history points are appended only together with a twin write that passed the
check, so a replayed batch adds none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import msgpack
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.typing import EncodableT

from twin_state import codec, profile_codec
from twin_state.history import HistoryPoint
from twin_state.profile import Profile, Status
from twin_state.twin import Twin

# Many twins in one call (one round trip and one script run instead of one per twin; the per-twin version
# cost the worker about a fifth of its time in the client alone). KEYS are (twin, history) pairs; ARGV[1] is
# the history length, then per twin: partition, offset, twin blob, alert state ('' = unchanged), the number
# of history points, the points. Returns how many twins were written. Offsets stay far below 2^53, where Lua
# numbers are exact.
_SAVE_MANY_IF_NEWER = """
local keep = tonumber(ARGV[1])
local a = 2
local written = 0
for k = 1, #KEYS, 2 do
  local p, o, npoints = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 4])
  local cur = redis.call('HMGET', KEYS[k], 'p', 'o')
  if not (cur[1] == p and cur[2] and tonumber(cur[2]) >= tonumber(o)) then
    redis.call('HSET', KEYS[k], 'p', p, 'o', o, 's', ARGV[a + 2])
    if ARGV[a + 3] ~= '' then
      redis.call('HSET', KEYS[k], 'a', ARGV[a + 3])
    end
    if npoints > 0 then
      redis.call('RPUSH', KEYS[k + 1], unpack(ARGV, a + 5, a + 4 + npoints))
      redis.call('LTRIM', KEYS[k + 1], -keep, -1)
    end
    written = written + 1
  end
  a = a + 5 + npoints
end
return written
"""
SAVE_CHUNK = 500
"""Twins per script call: bounds how long one call holds Redis (a few milliseconds)."""
CLUSTER_CONCURRENCY = 64
"""On a Redis Cluster, script calls (one per hash slot) in flight at once."""


# Writes the extra (alert) state only if the twin is still at the given position: a state computed from an
# older twin must not land on a newer one.
_SAVE_EXTRA_IF_CURRENT = """
local cur = redis.call('HMGET', KEYS[1], 'p', 'o')
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'a', ARGV[3])
return 1
"""


class RedisTwinStore:
    def __init__(self, client: Redis, prefix: str = "twinmon", history_length: int = 720) -> None:
        self._redis = client
        self._prefix = prefix
        self._history_length = history_length
        self._save = client.register_script(_SAVE_MANY_IF_NEWER)
        self._cluster = isinstance(client, RedisCluster)  # typed as Redis: the commands used are common to both
        self._save_extra = client.register_script(_SAVE_EXTRA_IF_CURRENT)

    def key(self, patient_id: str) -> str:
        return f"{self._prefix}:twin:{{{patient_id}}}"

    def history_key(self, patient_id: str) -> str:
        return f"{self._prefix}:hist:{{{patient_id}}}"

    async def load_many(self, patient_ids: Sequence[str]) -> dict[str, Twin]:
        return {pid: twin for pid, (twin, _) in (await self.load_records(patient_ids)).items()}

    async def load_records(self, patient_ids: Sequence[str]) -> dict[str, tuple[Twin, bytes | None]]:
        """Twins with the opaque extra state saved beside them (absent ids are missing from the result)."""
        if not patient_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in patient_ids:
                pipe.hmget(self.key(pid), ["s", "a"])
            rows = await pipe.execute()
        return {
            pid: (codec.unpack(blob), extra)
            for pid, (blob, extra) in zip(patient_ids, rows, strict=True)
            if blob is not None
        }

    async def save_many(
        self,
        twins: Sequence[Twin],
        history: Mapping[str, Sequence[HistoryPoint]] | None = None,
        extras: Mapping[str, bytes] | None = None,
    ) -> int:
        if not twins:
            return 0
        history = history or {}
        extras = extras or {}
        calls: list[tuple[list[str], list[EncodableT]]] = []
        for group in self._groups(twins):
            for i in range(0, len(group), SAVE_CHUNK):
                keys: list[str] = []
                args: list[EncodableT] = [self._history_length]
                for twin in group[i : i + SAVE_CHUNK]:
                    pid = twin.patient_id
                    points = [msgpack.packb(p) for p in history.get(pid, ())]
                    keys += (self.key(pid), self.history_key(pid))
                    args += (twin.partition, twin.offset, codec.pack(twin), extras.get(pid, b""), len(points),
                             *points)
                calls.append((keys, args))
        if self._cluster:
            # One call per slot; a cluster pipeline does not take scripts, so the calls go out side by side,
            # a bounded number at a time.
            written = 0
            for i in range(0, len(calls), CLUSTER_CONCURRENCY):
                wave = calls[i : i + CLUSTER_CONCURRENCY]
                written += sum(int(r) for r in await asyncio.gather(*(self._save(keys=k, args=a) for k, a in wave)))
            return written
        if len(calls) == 1:
            return int(await self._save(keys=calls[0][0], args=calls[0][1]))
        async with self._redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await self._save(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    def _groups(self, twins: Sequence[Twin]) -> list[Sequence[Twin]]:
        """One group on a single Redis; on a Redis Cluster, one per hash slot (a script's keys share a slot)."""
        if not self._cluster:
            return [twins]
        by_slot: dict[int, list[Twin]] = {}
        for twin in twins:
            by_slot.setdefault(key_slot(self.key(twin.patient_id).encode()), []).append(twin)
        return list(by_slot.values())

    async def save_extras(self, extras: Sequence[tuple[Twin, bytes]]) -> int:
        """Write extra state for twins that are still stored at the same position; return how many."""
        if not extras:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for twin, extra in extras:
                await self._save_extra(keys=[self.key(twin.patient_id)],
                                       args=[twin.partition, twin.offset, extra], client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def get_extra(self, patient_id: str) -> bytes | None:
        blob: bytes | None = await self._redis.hget(self.key(patient_id), "a")  # type: ignore[assignment]
        return blob

    async def get(self, patient_id: str) -> Twin | None:
        blob: bytes | None = await self._redis.hget(self.key(patient_id), "s")  # type: ignore[assignment]  # client returns bytes (no decode_responses)
        return None if blob is None else codec.unpack(blob)

    async def history(self, patient_id: str, last: int | None = None) -> list[HistoryPoint]:
        start = -last if last else 0
        raw = await self._redis.lrange(self.history_key(patient_id), start, -1)
        return [tuple(msgpack.unpackb(r)) for r in raw]

    async def patient_ids(self) -> list[str]:
        prefix = f"{self._prefix}:twin:{{"
        ids = []
        async for key in self._redis.scan_iter(match=f"{prefix}*", count=1000):
            k = key.decode() if isinstance(key, bytes) else key
            ids.append(k[len(prefix) : -1])
        return sorted(ids)


# Returns the care team the profile had before (or '') when written, nil when the change is not newer.
_SAVE_PROFILE_IF_NEWER = """
local cur = redis.call('HMGET', KEYS[1], 'u', 't')
if cur[1] and tonumber(cur[1]) > tonumber(ARGV[1]) then
  return false
end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 't', ARGV[2], 's', ARGV[3])
return cur[2] or ''
"""


class RedisProfileStore:
    """Enrolment profiles, ``{prefix}:profile:{<pid>}``, and each care team's set ``{prefix}:team:<team>``."""

    def __init__(self, client: Redis, prefix: str = "twinmon") -> None:
        self._redis = client
        self._prefix = prefix
        self._save = client.register_script(_SAVE_PROFILE_IF_NEWER)

    def key(self, patient_id: str) -> str:
        return f"{self._prefix}:profile:{{{patient_id}}}"

    def team_key(self, team: str) -> str:
        return f"{self._prefix}:team:{team}"

    async def save(self, profile: Profile) -> bool:
        """Store ``profile`` unless a newer one is stored; keep team membership in step. True if written."""
        team = profile.care_team if profile.status is Status.ENROLLED else ""
        previous = await self._save(
            keys=[self.key(profile.patient_id)], args=[profile.updated_at, team, profile_codec.pack(profile)]
        )
        if previous is None:
            return False
        previous = previous.decode() if isinstance(previous, bytes) else previous
        async with self._redis.pipeline(transaction=True) as pipe:
            if previous and previous != team:
                pipe.srem(self.team_key(previous), profile.patient_id)
            if team:
                pipe.sadd(self.team_key(team), profile.patient_id)
            await pipe.execute()
        return True

    async def get(self, patient_id: str) -> Profile | None:
        blob: bytes | None = await self._redis.hget(self.key(patient_id), "s")  # type: ignore[assignment]  # client returns bytes (no decode_responses)
        return None if blob is None else profile_codec.unpack(blob)

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]:
        if not patient_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in patient_ids:
                pipe.hget(self.key(pid), "s")
            blobs = await pipe.execute()
        return {pid: profile_codec.unpack(b) for pid, b in zip(patient_ids, blobs, strict=True) if b is not None}

    async def team(self, team: str) -> list[str]:
        members = await self._redis.smembers(self.team_key(team))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)
