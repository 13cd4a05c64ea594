"""The port through which twins are persisted, and an in-memory implementation for unit tests.

Every implementation honours one rule, checked by a contract test run against each of them: a twin is
written only if its log position is newer than the stored one. Kafka redelivers after a crash or a
rebalance and Redis is outside Kafka's transactions, so this rule is what makes a replayed batch harmless
and keeps a zombie worker from overwriting a newer twin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from twin_state.history import HistoryPoint
from twin_state.packed import PackedTwin, from_twin, to_twin
from twin_state.twin import Twin

AnyTwin = Twin | PackedTwin
"""What a store saves: the readable twin or the packed one (``twin_state.packed``); either reads back as both."""


class TwinStore(Protocol):
    async def load_many(self, patient_ids: Sequence[str]) -> dict[str, Twin]:
        """Twins that exist among ``patient_ids`` (absent ids are simply missing from the result)."""
        ...

    async def load_records(self, patient_ids: Sequence[str]) -> dict[str, tuple[Twin, bytes | None]]:
        """Twins with the opaque alert_state state (the alert state) saved beside them."""
        ...

    async def load_packed(self, patient_ids: Sequence[str]) -> dict[str, tuple[PackedTwin, bytes | None]]:
        """``load_records`` with each twin packed (``twin_state.packed``), without the readable model between."""
        ...

    async def save_many(
        self,
        twins: Sequence[AnyTwin],
        history: Mapping[str, Sequence[HistoryPoint]] | None = None,
        alert_states: Mapping[str, bytes] | None = None,
    ) -> int:
        """Write each twin whose position is newer than the stored one, with its new history points and its
        alert_state state (only if the twin was written); return how many twins were written."""
        ...

    async def history(self, patient_id: str, last: int | None = None) -> list[HistoryPoint]: ...

    async def index_partitions(self, members: Mapping[int, Iterable[str]]) -> None:
        """Record which patients' twins belong to which log partition."""

    async def partition_members(self, partition: int) -> list[str]:
        """The patients recorded on ``partition``, sorted."""

    async def save_alert_states(self, alert_states: Sequence[tuple[AnyTwin, bytes]]) -> int:
        """Write alert_state state for twins still stored at the same position (a timer's decision, not a reading's)."""
        ...

    async def get(self, patient_id: str) -> Twin | None: ...

    async def patient_ids(self) -> list[str]: ...


def is_newer(candidate: AnyTwin, stored: AnyTwin | None) -> bool:
    if stored is None or stored.partition != candidate.partition:
        # A different partition means the topic was re-partitioned; positions are not comparable, and the
        # worker that owns the patient's partition now is the one to trust.
        return True
    return candidate.offset > stored.offset


class InMemoryTwinStore:
    """For unit tests of the pure core only; never a stand-in for Redis in an integration test."""

    def __init__(self, twins: Iterable[Twin] = (), history_length: int = 720) -> None:
        self._twins: dict[str, AnyTwin] = {t.patient_id: t for t in twins}
        """Packed twins are held as copies: a processor goes on changing its own in place."""
        self._extras: dict[str, bytes] = {}
        self._history: dict[str, list[HistoryPoint]] = {}
        self._history_length = history_length
        self._partitions: dict[int, set[str]] = {}

    def _readable(self, pid: str) -> Twin:
        twin = self._twins[pid]
        return to_twin(twin) if isinstance(twin, PackedTwin) else twin

    async def load_many(self, patient_ids: Sequence[str]) -> dict[str, Twin]:
        return {pid: self._readable(pid) for pid in patient_ids if pid in self._twins}

    async def load_records(self, patient_ids: Sequence[str]) -> dict[str, tuple[Twin, bytes | None]]:
        return {pid: (self._readable(pid), self._extras.get(pid)) for pid in patient_ids if pid in self._twins}

    async def load_packed(self, patient_ids: Sequence[str]) -> dict[str, tuple[PackedTwin, bytes | None]]:
        out = {}
        for pid in patient_ids:
            twin = self._twins.get(pid)
            if twin is not None:
                out[pid] = (twin.copy() if isinstance(twin, PackedTwin) else from_twin(twin), self._extras.get(pid))
        return out

    async def save_many(
        self,
        twins: Sequence[AnyTwin],
        history: Mapping[str, Sequence[HistoryPoint]] | None = None,
        alert_states: Mapping[str, bytes] | None = None,
    ) -> int:
        written = 0
        for twin in twins:
            if is_newer(twin, self._twins.get(twin.patient_id)):
                self._twins[twin.patient_id] = twin.copy() if isinstance(twin, PackedTwin) else twin
                if alert_states and twin.patient_id in alert_states:
                    self._extras[twin.patient_id] = alert_states[twin.patient_id]
                points = self._history.setdefault(twin.patient_id, [])
                points.extend((history or {}).get(twin.patient_id, ()))
                del points[: max(len(points) - self._history_length, 0)]
                written += 1
        return written

    async def save_alert_states(self, alert_states: Sequence[tuple[AnyTwin, bytes]]) -> int:
        written = 0
        for twin, alert_state in alert_states:
            stored = self._twins.get(twin.patient_id)
            if stored is not None and (stored.partition, stored.offset) == (twin.partition, twin.offset):
                self._extras[twin.patient_id] = alert_state
                written += 1
        return written

    async def index_partitions(self, members: Mapping[int, Iterable[str]]) -> None:
        for partition, ids in members.items():
            if partition >= 0:
                self._partitions.setdefault(partition, set()).update(ids)

    async def partition_members(self, partition: int) -> list[str]:
        return sorted(self._partitions.get(partition, ()))

    async def history(self, patient_id: str, last: int | None = None) -> list[HistoryPoint]:
        points = self._history.get(patient_id, [])
        return list(points[-last:] if last else points)

    async def get(self, patient_id: str) -> Twin | None:
        return self._readable(patient_id) if patient_id in self._twins else None

    async def patient_ids(self) -> list[str]:
        return sorted(self._twins)
