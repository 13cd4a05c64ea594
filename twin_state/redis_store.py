"""Twins in Redis: one hash per patient, written only when the log position is newer, plus a capped history.

Key ``{prefix}:twin:{<patient_id>}`` holds fields ``p`` (partition), ``o`` (offset), ``s`` (the twin,
``twin_state.packed.encode``: packed, or ``codec.pack`` as older code wrote it; ``get`` and the loads read both) and
``a`` (the patient's alert state, opaque here, written in the same atomic step).
Key ``{prefix}:hist:{<patient_id>}`` is a list of MessagePack history points, newest last, trimmed to
``history_length``. The braces are a Redis Cluster hash tag: both keys of one patient live on one slot. A batch
of twins is written by one Lua script call per ``SAVE_CHUNK`` twins; on a Redis Cluster (a ``RedisCluster``
client) the store splits the batch per hash slot, since one call may only touch keys of one slot, and sends alert
states one script call per patient (a cluster pipeline takes no scripts). The
newer-than check runs inside Redis, atomic with the write, even when two workers briefly both believe they own
a partition during a rebalance; history points are appended only together with a twin write that passed the
check, so a replayed batch adds none.

Key ``{prefix}:part:{<n>}`` is the set of patients whose twins belong to ``vitals`` partition ``n``, so that a
worker given the partition can load its patients' twins before their next readings arrive. It is written after
the twins (a patient missing from it is loaded at its first reading instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import msgpack
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot
from redis.typing import EncodableT

from twin_state import packed, profile_codec
from twin_state.history import HistoryPoint
from twin_state.packed import PackedTwin
from twin_state.profile import Profile, Status
from twin_state.store import AnyTwin
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


# Writes the alert_state (alert) state only if the twin is still at the given position: a state computed from an
# older twin must not land on a newer one.
_SAVE_ALERT_STATE_IF_CURRENT = """
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
        self._save_alert_state = client.register_script(_SAVE_ALERT_STATE_IF_CURRENT)

    def key(self, patient_id: str) -> str:
        return f"{self._prefix}:twin:{{{patient_id}}}"

    def history_key(self, patient_id: str) -> str:
        return f"{self._prefix}:hist:{{{patient_id}}}"

    def partition_key(self, partition: int) -> str:
        """The set of patients whose twins live on ``vitals`` partition ``partition`` (its own hash slot)."""
        return f"{self._prefix}:part:{{{partition}}}"

    async def index_partitions(self, members: Mapping[int, Iterable[str]]) -> None:
        """Record which patients' twins belong to which partition (idempotent; one SADD per partition)."""
        items = [(partition, sorted(set(ids))) for partition, ids in members.items()]
        items = [(partition, ids) for partition, ids in items if ids and partition >= 0]
        if not items:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for partition, ids in items:
                pipe.sadd(self.partition_key(partition), *ids)
            await pipe.execute()

    async def partition_members(self, partition: int) -> list[str]:
        """The patients ``index_partitions`` recorded on ``partition``, sorted."""
        members = await self._redis.smembers(self.partition_key(partition))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def load_many(self, patient_ids: Sequence[str]) -> dict[str, Twin]:
        return {pid: twin for pid, (twin, _) in (await self.load_records(patient_ids)).items()}

    async def load_records(self, patient_ids: Sequence[str]) -> dict[str, tuple[Twin, bytes | None]]:
        """Twins with the opaque alert_state state saved beside them (absent ids are missing from the result)."""
        return {pid: (packed.decode_twin(blob), alert_state) for pid, (blob, alert_state) in
                (await self._records(patient_ids)).items()}

    async def load_packed(self, patient_ids: Sequence[str]) -> dict[str, tuple[PackedTwin, bytes | None]]:
        """``load_records`` with each twin packed: a twin stored packed is read as it is."""
        return {pid: (packed.decode_packed(blob), alert_state) for pid, (blob, alert_state) in
                (await self._records(patient_ids)).items()}

    async def _records(self, patient_ids: Sequence[str]) -> dict[str, tuple[bytes, bytes | None]]:
        if not patient_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in patient_ids:
                pipe.hmget(self.key(pid), ["s", "a"])
            rows = await pipe.execute()
        return {pid: (blob, alert_state) for pid, (blob, alert_state) in zip(patient_ids, rows, strict=True)
                if blob is not None}

    async def save_many(
        self,
        twins: Sequence[AnyTwin],
        history: Mapping[str, Sequence[HistoryPoint]] | None = None,
        alert_states: Mapping[str, bytes] | None = None,
    ) -> int:
        if not twins:
            return 0
        history = history or {}
        alert_states = alert_states or {}
        calls: list[tuple[list[str], list[EncodableT]]] = []
        for group in self._groups(twins):
            for i in range(0, len(group), SAVE_CHUNK):
                keys: list[str] = []
                args: list[EncodableT] = [self._history_length]
                for twin in group[i : i + SAVE_CHUNK]:
                    pid = twin.patient_id
                    points = [msgpack.packb(p) for p in history.get(pid, ())]
                    keys += (self.key(pid), self.history_key(pid))
                    args += (twin.partition, twin.offset, packed.encode(twin), alert_states.get(pid, b""), len(points),
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

    def _groups(self, twins: Sequence[AnyTwin]) -> list[Sequence[AnyTwin]]:
        """One group on a single Redis; on a Redis Cluster, one per hash slot (a script's keys share a slot)."""
        if not self._cluster:
            return [twins]
        by_slot: dict[int, list[AnyTwin]] = {}
        for twin in twins:
            by_slot.setdefault(key_slot(self.key(twin.patient_id).encode()), []).append(twin)
        return list(by_slot.values())

    async def save_alert_states(self, alert_states: Sequence[tuple[AnyTwin, bytes]]) -> int:
        """Write alert_state state for twins that are still stored at the same position; return how many."""
        if not alert_states:
            return 0
        if self._cluster:
            # A cluster pipeline does not take scripts: one call per twin (each one key), side by side.
            written = 0
            for i in range(0, len(alert_states), CLUSTER_CONCURRENCY):
                wave = alert_states[i : i + CLUSTER_CONCURRENCY]
                written += sum(int(r) for r in await asyncio.gather(*(
                    self._save_alert_state(keys=[self.key(twin.patient_id)], args=[twin.partition, twin.offset, state])
                    for twin, state in wave)))
            return written
        async with self._redis.pipeline(transaction=False) as pipe:
            for twin, alert_state in alert_states:
                await self._save_alert_state(keys=[self.key(twin.patient_id)],
                                       args=[twin.partition, twin.offset, alert_state], client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def get_alert_state(self, patient_id: str) -> bytes | None:
        blob: bytes | None = await self._redis.hget(self.key(patient_id), "a")  # type: ignore[assignment]
        return blob

    async def get(self, patient_id: str) -> Twin | None:
        blob: bytes | None = await self._redis.hget(self.key(patient_id), "s")  # type: ignore[assignment]  # client returns bytes (no decode_responses)
        return None if blob is None else packed.decode_twin(blob)

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


# KEYS[1] the profile hash; ARGV: updated_at, team ('' when discharged), packed profile.
# Stores the profile unless a newer one is stored (equal: stored again, so a retry is a no-op) and returns what
# the team sets must be made to match, for this change or, when it is refused, for the stored one:
# {written, current team ('' if discharged), every team the patient was ever in, time of the last discharge}.
# 'h' keeps the teams so that any later save, retry or reconciliation removes the patient from all of them.
_SAVE_PROFILE_IF_NEWER = """
local cur = redis.call('HMGET', KEYS[1], 'u', 't', 'h', 'e')
local team, teams, discharged = cur[2] or '', cur[3] or '', cur[4] or '0'
local function remember(t)
  if t ~= '' and not string.find('\\n' .. teams .. '\\n', '\\n' .. t .. '\\n', 1, true) then
    teams = (teams == '') and t or (teams .. '\\n' .. t)
  end
end
remember(team)
if cur[1] and tonumber(cur[1]) > tonumber(ARGV[1]) then
  return {0, team, teams, discharged}
end
if ARGV[2] == '' and team ~= '' then
  discharged = ARGV[1]
end
team = ARGV[2]
remember(team)
redis.call('HSET', KEYS[1], 'u', ARGV[1], 't', team, 's', ARGV[3], 'h', teams, 'e', discharged)
return {1, team, teams, discharged}
"""


def _text(v: bytes | str | None) -> str:
    return "" if v is None else v.decode() if isinstance(v, bytes) else v


class RedisProfileStore:
    """Enrolment profiles, ``{prefix}:profile:{<pid>}``, and each care team's set ``{prefix}:team:<team>``.

    The profile hash is the truth (fields ``s`` the packed profile, ``u`` its time, ``t`` the team while enrolled,
    ``h`` every team it was ever in, ``e`` the time of the last discharge). The team sets are an index of it for
    listing, kept in step by every save and repaired by ``reconcile``; access decisions read the profile."""

    def __init__(self, client: Redis, prefix: str = "twinmon") -> None:
        self._redis = client
        self._prefix = prefix
        self._save = client.register_script(_SAVE_PROFILE_IF_NEWER)
        # On a cluster the team sets live on other slots than the profile, so no transaction spans them; the
        # update is idempotent and access reads the profile, so a half-done one grants nothing.
        self._atomic = not isinstance(client, RedisCluster)

    def key(self, patient_id: str) -> str:
        return f"{self._prefix}:profile:{{{patient_id}}}"

    def team_key(self, team: str) -> str:
        return f"{self._prefix}:team:{team}"

    async def save(self, profile: Profile) -> bool:
        """Store ``profile`` unless a newer one is stored; True if written. Either way the team sets are then made
        to match the stored profile, so a retry after a dropped connection or a crash repairs them."""
        team = profile.care_team if profile.status is Status.ENROLLED else ""
        written, current, teams, _ = await self._save(
            keys=[self.key(profile.patient_id)], args=[profile.updated_at, team, profile_codec.pack(profile)]
        )
        await self._place(profile.patient_id, _text(current), _text(teams).split("\n"))
        return bool(written)

    async def _place(self, patient_id: str, team: str, teams: Sequence[str]) -> None:
        async with self._redis.pipeline(transaction=self._atomic) as pipe:
            for t in teams:
                if t and t != team:
                    pipe.srem(self.team_key(t), patient_id)
            if team:
                pipe.sadd(self.team_key(team), patient_id)
            await pipe.execute()

    @staticmethod
    def _profile(blob: bytes | str | None, discharged: bytes | str | None) -> Profile | None:
        if blob is None:
            return None
        p = profile_codec.unpack(blob if isinstance(blob, bytes) else blob.encode())
        at = int(discharged or 0)
        return dataclasses.replace(p, last_discharged_at=at) if at else p

    async def get(self, patient_id: str) -> Profile | None:
        blob, discharged = await self._redis.hmget(self.key(patient_id), ["s", "e"])
        return self._profile(blob, discharged)

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]:
        if not patient_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for pid in patient_ids:
                pipe.hmget(self.key(pid), ["s", "e"])
            rows = await pipe.execute()
        found = {pid: self._profile(*row) for pid, row in zip(patient_ids, rows, strict=True)}
        return {pid: p for pid, p in found.items() if p is not None}

    async def team(self, team: str) -> list[str]:
        """The patients of ``team``'s set (an index: a caller deciding access checks their profiles)."""
        members = await self._redis.smembers(self.team_key(team))
        return sorted(m.decode() if isinstance(m, bytes) else m for m in members)

    async def enrolled_in(self, team: str, patient_ids: Sequence[str]) -> dict[str, Profile]:
        """The profiles of those of ``patient_ids`` whose stored profile is enrolled in ``team``."""
        found = await self.get_many(patient_ids)
        return {pid: p for pid, p in found.items() if p.status is Status.ENROLLED and p.care_team == team}

    async def reconcile(self, dry_run: bool = False) -> tuple[int, int]:
        """Make every team set match the stored profiles: a member whose profile is not enrolled in that team
        leaves it, an enrolled patient missing from its team's set joins it. Returns (added, removed)."""
        profile_prefix, team_prefix = self.key(""), self.team_key("")
        want: dict[str, set[str]] = {}
        async for key in self._redis.scan_iter(match=f"{profile_prefix[:-2]}*", count=1000):
            k = _text(key)
            if not (k.startswith(profile_prefix[:-1]) and k.endswith("}")):
                continue
            team = _text(await self._redis.hget(k, "t"))
            if team:
                want.setdefault(team, set()).add(k[len(profile_prefix) - 1 : -1])
        have: dict[str, set[str]] = {}
        async for key in self._redis.scan_iter(match=f"{team_prefix}*", count=1000):
            k = _text(key)
            have[k[len(team_prefix):]] = {_text(m) for m in await self._redis.smembers(k)}
        added = removed = 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for team in sorted(set(want) | set(have)):
                missing = want.get(team, set()) - have.get(team, set())
                alert_state = have.get(team, set()) - want.get(team, set())
                added, removed = added + len(missing), removed + len(alert_state)
                if missing:
                    pipe.sadd(self.team_key(team), *sorted(missing))
                if alert_state:
                    pipe.srem(self.team_key(team), *sorted(alert_state))
            if not dry_run:
                await pipe.execute()
        return added, removed
