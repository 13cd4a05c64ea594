"""One batch of ``vitals`` messages through validation, the twin core and the twin store.

The Faust agent hands raw messages here and sends back what this returns (dead letters); nothing in this
module knows Kafka. Order within a patient is the log's order: one patient lives on one partition, and a
batch is applied in the order it arrived.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from streams.metrics import Metrics
from streams.schema import Rejected, decode
from twin_state.history import HistoryPoint, history_point
from twin_state.store import TwinStore
from twin_state.twin import ACCEPTED, Outcome, Position, Reading, Twin, new_twin, step


@dataclass(frozen=True, slots=True)
class RawMessage:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class BatchResult:
    dead_letters: list[tuple[RawMessage, Rejected]] = field(default_factory=list)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    twins: list[Twin] = field(default_factory=list)
    """Twins changed by this batch, in their state after it."""
    written: int = 0
    newest: dict[str, int] = field(default_factory=dict)
    """Per patient changed, the latest measured-at among the readings this batch applied."""


class BatchProcessor:
    """Keeps the twins of the partitions this worker owns in memory, so a batch costs one Redis pipeline."""

    def __init__(self, store: TwinStore, metrics: Metrics | None = None) -> None:
        self._store = store
        self._metrics = metrics
        self._twins: dict[str, Twin] = {}

    @property
    def resident(self) -> int:
        return len(self._twins)

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop cached twins (of ``partitions``, or all) so that the next batch reloads them from the store.

        Called on rebalance: another worker may have moved a patient's twin on while this one did not own it.
        """
        if partitions is None:
            self._twins.clear()
            return
        gone = set(partitions)
        self._twins = {pid: t for pid, t in self._twins.items() if t.partition not in gone}

    async def process(self, batch: Sequence[RawMessage], now_ms: int) -> BatchResult:
        result = BatchResult()
        readings: list[tuple[Reading, Position]] = []
        for msg in batch:
            decoded = decode(msg.value, msg.key, now_ms)
            if isinstance(decoded, Rejected):
                result.dead_letters.append((msg, decoded))
            else:
                readings.append((decoded, Position(msg.partition, msg.offset)))

        missing = list({r.patient_id for r, _ in readings if r.patient_id not in self._twins})
        if missing:
            loaded = await self._timed("load", self._store.load_many(missing))
            for pid in missing:
                self._twins[pid] = loaded.get(pid) or new_twin(pid)

        changed: dict[str, Twin] = {}
        history: dict[str, list[HistoryPoint]] = {}
        twins = self._twins
        for reading, position in readings:
            before = twins[reading.patient_id]
            twin, outcome = step(before, reading, position)
            result.outcomes[outcome] += 1
            if outcome is not Outcome.REDELIVERED:
                twins[reading.patient_id] = twin
                changed[reading.patient_id] = twin
                if outcome in ACCEPTED:
                    prev = result.newest.get(reading.patient_id, 0)
                    result.newest[reading.patient_id] = max(prev, reading.measured_at)
                point = history_point(before, twin, reading, outcome)
                if point is not None:
                    history.setdefault(reading.patient_id, []).append(point)
        result.twins = list(changed.values())
        if result.twins:
            try:
                result.written = await self._timed("save", self._store.save_many(result.twins, history))
            except BaseException:
                # The cache ran ahead of the store; drop it so nothing unsaved is taken for saved.
                self.forget()
                raise
        self._observe(result)
        return result

    async def _timed(self, op: str, call):  # type: ignore[no-untyped-def]
        if self._metrics is None:
            return await call
        start = time.perf_counter()
        try:
            return await call
        except Exception:
            self._metrics.redis_errors.labels(op).inc()
            raise
        finally:
            self._metrics.redis_seconds.labels(op).observe(time.perf_counter() - start)

    def _observe(self, result: BatchResult) -> None:
        m = self._metrics
        if m is None:
            return
        for outcome, n in result.outcomes.items():
            m.readings.labels(outcome.value).inc(n)
        for _, rejected in result.dead_letters:
            m.dead_lettered.labels(rejected.reason.value).inc()
        m.twins_written.inc(result.written)
        m.twins_resident.set(len(self._twins))
        if result.newest:
            # One sample per twin written: the newest reading it now reflects, which is what a clinician
            # waits for. Late uploads and redeliveries are not counted; they were not what kept anyone waiting.
            now = time.time() * 1000.0
            for measured_at in result.newest.values():
                m.reading_to_persist.observe(max(now - measured_at, 0.0) / 1000.0)
