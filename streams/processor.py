"""One batch of ``vitals`` messages through validation, the twin core, risk, the alert policy and the store.

The Faust agent hands raw messages here and sends back what this returns (dead letters); nothing in this
module knows Kafka. Order within a patient is the log's order: one patient lives on one partition, and a
batch is applied in the order it arrived.

Per batch: decode every message; load the twins (with their alert states) and profiles not yet in memory,
in one pipeline each; fold the readings in; for each patient whose event time has moved on by
``evaluate_every_ms`` since the last evaluation, compute risk and run the alert policy at the newest event
time; publish the alert events and wait for the broker; then write every changed twin, its history points
and its alert state to Redis in one pipeline, each write conditional on the log position being newer.

Publishing before writing is deliberate: if the worker dies between the two, the batch is redelivered, the
twins are still at their old positions, and the same events (same ids) are published again; consumers keep
the first of each id. The other order would lose them: the twins would already be ahead and skip the batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypeVar, cast

from alerts import codec as alert_codec
from alerts.config import AlertingConfig as AlertingConfig  # re-exported: callers build one to pass in
from alerts.config import policy_id
from alerts.policy import (
    AlertEvent,
    Condition,
    Level,
    PatientAlerts,
    UnknownAlert,
    acknowledge,
    clinical_level,
    clinical_reason,
    decide,
    exertion_of,
    repair,
    resolve,
    technical_levels,
    unconfirmed_level,
    unconfirmed_reason,
)
from streams.fastdecode import decode_many
from streams.metrics import Metrics
from streams.schema import MAX_AHEAD_MS, Rejected
from twin_state.clock import repair_twin
from twin_state.history import HistoryPoint, history_point, point_after
from twin_state.packed import (
    PackedTwin,
    VitalBrief,
    from_twin,
    new_packed,
    newest_time,
    step_packed,
    to_twin,
    vital_brief,
)
from twin_state.profile import Profile, Status
from twin_state.risk import Risk, risk
from twin_state.risk_batch import risk_many
from twin_state.store import AnyTwin, TwinStore
from twin_state.twin import ACCEPTED, Outcome, Position, Reading, Twin, new_twin, step

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RawMessage:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    """The log's record timestamp: when it took the message in. None when the record has none."""


def ingest_ms(msg: RawMessage, now_ms: int) -> int:
    """A message's ingest time: its record timestamp, but never after ``now_ms``, because a producer sets the
    record timestamp and may be as wrong as the device; ``now_ms`` when the record has none."""
    t = msg.timestamp_ms
    return now_ms if t is None or t <= 0 else min(t, now_ms)


@dataclass(slots=True)
class BatchResult:
    dead_letters: list[tuple[RawMessage, Rejected]] = field(default_factory=list)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    twins: list[AnyTwin] = field(default_factory=list)
    """Twins changed by this batch, in their state after it (packed ones: as they are until the next batch)."""
    written: int = 0
    newest: dict[str, int] = field(default_factory=dict)
    """Per patient changed, the latest measured-at among the readings this batch applied."""
    alert_events: list[AlertEvent] = field(default_factory=list)


class ProfileSource(Protocol):
    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]: ...


AlertPublisher = Callable[[Sequence[AlertEvent]], Awaitable[None]]


def _settles_a_prompt(before: Twin, after: Twin, reading: Reading, min_gap_ms: int) -> bool:
    """Whether ``reading`` leaves, or settles, an unconfirmed reading of a vital measured far enough apart to prompt
    (``alerts.policy.PolicySettings.unconfirmed_min_gap_ms``): such a reading is evaluated at once."""
    for v in (before.vitals.get(reading.metric), after.vitals.get(reading.metric)):
        if v is not None and v.unconfirmed is not None and v.unconfirmed_at - v.updated_at >= min_gap_ms:
            return True
    return False


def _settles_a_prompt_brief(before: VitalBrief | None, after: VitalBrief | None, min_gap_ms: int) -> bool:
    """``_settles_a_prompt`` from the reading's vital before and after it (``packed.vital_brief``)."""
    for v in (before, after):
        if v is not None and v.unconfirmed is not None and v.unconfirmed_at - v.updated_at >= min_gap_ms:
            return True
    return False


class BatchProcessor:
    """Keeps the twins of the partitions this worker owns in memory, so a batch costs one Redis pipeline."""

    def __init__(
        self,
        store: TwinStore,
        metrics: Metrics | None = None,
        *,
        profiles: ProfileSource | None = None,
        publish: AlertPublisher | None = None,
        evaluation: AlertingConfig | None = None,
        batch_risk: bool = True,
        packed: bool = True,
    ) -> None:
        """``batch_risk``: a batch's evaluations computed together (``twin_state.risk_batch.risk_many``) after its
        readings are folded in; False evaluates each as its reading comes (``risk.risk``), the reference the batched
        path is tested against (tests/unit/streams/test_processor_batch_risk.py).

        ``packed``: resident twins held packed and stepped in place (``twin_state.packed``), and saved in that
        format; False holds the readable ``Twin`` and steps it with ``twin.step``, the reference the packed path is
        tested against (tests/unit/streams/test_processor_packed.py)."""
        self._store = store
        self._batch_risk = batch_risk
        self._packed = packed
        self._metrics = metrics
        self._profile_source = profiles
        self._publish = publish
        self._eval = evaluation or AlertingConfig()
        self._policy_id = policy_id(self._eval)
        self._twins: dict[str, AnyTwin] = {}
        self._alerts: dict[str, PatientAlerts] = {}
        self._profiles: dict[str, Profile | None] = {}
        self._unindexed: set[str] = set()
        """Patients loaded at a reading (not by ``preload``): recorded on their partition once their twin is saved."""
        self._generation = 0
        """Bumped by ``forget``: a ``preload`` begun before it stops."""
        # Batches, people's actions and the sweep all change alert state across awaits; one at a time.
        self._lock = asyncio.Lock()

    @property
    def resident(self) -> int:
        return len(self._twins)

    def twin(self, patient_id: str) -> Twin | None:
        twin = self._twins.get(patient_id)
        return to_twin(twin) if isinstance(twin, PackedTwin) else twin

    @property
    def policy_id(self) -> str:
        """Id of the policy this processor evaluates with (``alerts.config.policy_id``)."""
        return self._policy_id

    def alerts(self, patient_id: str) -> PatientAlerts | None:
        return self._alerts.get(patient_id)

    def profile(self, patient_id: str) -> Profile | None:
        return self._profiles.get(patient_id)

    # --- metrics: a read-only view of what is resident, for the census in streams.metrics ---
    def residents(self) -> list[tuple[AnyTwin, PatientAlerts, Profile | None]]:
        """Each resident patient's twin, alert state and profile. Alert states and profiles are immutable, and so
        is a readable twin; a packed one is changed in place by later batches."""
        alerts, profiles = self._alerts, self._profiles
        return [(twin, alerts[pid], profiles.get(pid)) for pid, twin in self._twins.items()]

    @property
    def no_data_after_ms(self) -> int:
        return self._eval.technical.no_data_after_ms

    async def apply_profile(self, profile: Profile, save: Callable[[Profile], Awaitable[bool]]) -> bool:
        """An enrolment change: stored first (``save`` is conditional on it being newer than the stored profile), and
        only then used. A change the store refused (an older one, replayed or reordered) is not used: the cache takes
        what the store holds instead. Returns whether the change was stored."""
        async with self._lock:
            saved = await save(profile)
            pid = profile.patient_id
            if saved:
                self._profiles[pid] = profile
            elif self._profile_source is not None:
                stored = await self._timed("profiles", self._profile_source.get_many([pid]))
                self._profiles[pid] = stored.get(pid)
            else:
                self._profiles.pop(pid, None)
            return saved

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop cached twins (of ``partitions``, or all) so that the next batch reloads them from the store.

        Called on rebalance: another worker may have moved a patient's twin on, or changed their profile, while this
        one did not own it. Profiles are dropped with the twins and fetched again with them.
        """
        self._generation += 1
        if partitions is None:
            self._twins.clear()
            self._alerts.clear()
            self._profiles.clear()
            self._unindexed.clear()
            return
        gone = set(partitions)
        keep = {pid for pid, t in self._twins.items() if t.partition not in gone}
        self._twins = {pid: t for pid, t in self._twins.items() if pid in keep}
        self._alerts = {pid: a for pid, a in self._alerts.items() if pid in keep}
        # Profiles too: while another worker owned the partition the patient may have been transferred or
        # discharged, and a kept profile would send alerts to the old team and score on the old conditions. A
        # profile whose twin is not resident cannot be placed on a partition, so it goes as well (refetched with
        # the twin at the next load).
        self._profiles = {pid: p for pid, p in self._profiles.items() if pid in keep}
        self._unindexed &= keep

    async def preload(self, partitions: Iterable[int], chunk: int = 2000) -> int:
        """Load the twins of the enrolled patients on newly assigned ``partitions`` (the store's partition index)
        before their next readings arrive: a restart or a rebalance then costs no Redis round trip on the hot path,
        and a patient whose sensors have gone quiet is swept for no data like any other. ``chunk`` twins at a time,
        each under the lock, so batches go on in between; a ``forget`` (a rebalance) stops it. Patients not
        enrolled (discharged, or never) are left to load at their next reading, as before. Returns how many."""
        generation, loaded = self._generation, 0
        for partition in partitions:
            ids = await self._store.partition_members(partition)
            for i in range(0, len(ids), chunk):
                async with self._lock, self._forget_on_error():
                    if self._generation != generation:
                        return loaded
                    loaded += await self._preload([pid for pid in ids[i:i + chunk] if pid not in self._twins],
                                                  generation)
        if self._metrics is not None:
            self._metrics.twins_resident.set(len(self._twins))
        return loaded

    async def _preload(self, missing: list[str], generation: int) -> int:
        if not missing or self._profile_source is None:
            return 0
        records = await self._timed("load", self._load_records(missing))
        profiles = await self._timed("profiles", self._profile_source.get_many(missing))
        if self._generation != generation:
            return 0  # a rebalance while loading: these partitions may be another worker's now
        now_ms = int(time.time() * 1000)
        loaded = 0
        for pid in missing:
            record, profile = records.get(pid), profiles.get(pid)
            if record is None or profile is None or profile.status is not Status.ENROLLED:
                continue
            self._install(pid, record, now_ms)
            self._profiles[pid] = profile
            loaded += 1
        if self._metrics is not None:
            self._metrics.twins_preloaded.inc(loaded)
        return loaded

    async def process(self, batch: Sequence[RawMessage], now_ms: int) -> BatchResult:
        async with self._lock, self._forget_on_error():
            return await self._process(batch, now_ms)

    @contextlib.asynccontextmanager
    async def _forget_on_error(self) -> AsyncIterator[None]:
        """After a failed batch, action or sweep the cache may be ahead of the store: drop it, so that a retry (the
        worker retries through a Redis outage) or the next batch reloads what the store really holds."""
        try:
            yield
        except UnknownAlert:
            raise  # nothing was changed
        except BaseException:
            self.forget()
            raise

    async def _process(self, batch: Sequence[RawMessage], now_ms: int) -> BatchResult:
        result = BatchResult()
        readings: list[tuple[Reading, Position]] = []
        decoded_batch = decode_many([(msg.value, msg.key, ingest_ms(msg, now_ms)) for msg in batch])
        for msg, decoded in zip(batch, decoded_batch, strict=True):
            if isinstance(decoded, Rejected):
                result.dead_letters.append((msg, decoded))
            else:
                readings.append((decoded, Position(msg.partition, msg.offset)))

        await self._load({r.patient_id for r, _ in readings}, now_ms)

        history: dict[str, list[HistoryPoint]] = {}
        alert_states: dict[str, bytes] = {}
        requests: list[tuple[str, Twin, int]] = []  # evaluations due, in reading order (batch_risk)
        fold = self._fold_packed if self._packed else self._fold
        changed = fold(readings, now_ms, result, history, alert_states, requests)
        if requests:
            alert_states.update(self._evaluate_many(requests, result))
        result.twins = changed
        if result.alert_events and self._publish is not None:
            await self._publish(result.alert_events)
        if result.twins:
            try:
                result.written = await self._timed("save", self._store.save_many(result.twins, history, alert_states))
            except BaseException:
                # The cache ran ahead of the store; drop it so nothing unsaved is taken for saved.
                self.forget()
                raise
        if self._unindexed:
            await self._index()
        self._observe(result)
        return result

    def _fold(self, readings: Sequence[tuple[Reading, Position]], now_ms: int, result: BatchResult,
              history: dict[str, list[HistoryPoint]], alert_states: dict[str, bytes],
              requests: list[tuple[str, Twin, int]]) -> list[AnyTwin]:
        """The batch's readings folded into the readable twins (``twin.step``), in order: outcomes, history
        points and evaluations (at once, or requested in ``requests`` with ``batch_risk``). Returns the twins
        changed."""
        changed: dict[str, AnyTwin] = {}
        twins = cast(dict[str, Twin], self._twins)
        every = self._eval.every_ms
        prompt_gap = self._eval.policy.unconfirmed_min_gap_ms
        # Decoding already refuses such readings; this holds the patient's event clock even if that ever slips.
        latest = now_ms + MAX_AHEAD_MS
        together = self._batch_risk
        due_from: dict[str, int] = {}  # each patient's evaluated_at as the evaluations requested so far leave it
        for reading, position in readings:
            pid = reading.patient_id
            before = twins[pid]
            twin, outcome = step(before, reading, position)
            result.outcomes[outcome] += 1
            if outcome is Outcome.REDELIVERED:
                continue
            twins[pid] = twin
            changed[pid] = twin
            if outcome in ACCEPTED:
                result.newest[pid] = max(result.newest.get(pid, 0), reading.measured_at)
            point = history_point(before, twin, reading, outcome)
            if point is not None:
                history.setdefault(pid, []).append(point)
            # Evaluated on the reading that moves event time on far enough, never on batch boundaries: the
            # same stream gives the same evaluations and alert ids however it is batched or redelivered. A reading
            # that may raise or settle a re-measure prompt is evaluated at once: the prompt waits for no one.
            t = min(reading.measured_at, latest)
            evaluated_at = self._alerts[pid].evaluated_at
            if together:
                evaluated_at = due_from.get(pid, evaluated_at)
            if not evaluated_at or t - evaluated_at >= every:
                at = t
            elif _settles_a_prompt(before, twin, reading, prompt_gap):
                at = max(t, evaluated_at)
            else:
                continue
            if together:
                # Evaluated after the loop, all at once; decide() will leave evaluated_at at max(evaluated_at, at),
                # which is what the next reading of this patient must be judged against.
                requests.append((pid, twin, at))
                due_from[pid] = max(evaluated_at, at)
            else:
                alert_states[pid] = self._evaluate(pid, twin, at, result)
        return list(changed.values())

    def _fold_packed(self, readings: Sequence[tuple[Reading, Position]], now_ms: int, result: BatchResult,
                     history: dict[str, list[HistoryPoint]], alert_states: dict[str, bytes],
                     requests: list[tuple[str, Twin, int]]) -> list[AnyTwin]:
        """``_fold`` on packed twins stepped in place (``packed.step_packed``): the same outcomes, points,
        evaluations and twins. An evaluation takes the readable twin as it is at its reading (``to_twin``)."""
        changed: dict[str, AnyTwin] = {}
        twins = cast(dict[str, PackedTwin], self._twins)
        every = self._eval.every_ms
        prompt_gap = self._eval.policy.unconfirmed_min_gap_ms
        latest = now_ms + MAX_AHEAD_MS
        together = self._batch_risk
        due_from: dict[str, int] = {}
        alerts = self._alerts
        newest = result.newest
        outcomes = result.outcomes
        for reading, position in readings:
            pid = reading.patient_id
            p = twins[pid]
            metric = reading.metric
            prior = vital_brief(p, metric)
            outcome = step_packed(p, reading, position)
            outcomes[outcome] += 1
            if outcome is Outcome.REDELIVERED:
                continue
            changed[pid] = p
            after = vital_brief(p, metric)
            if outcome in ACCEPTED:
                newest[pid] = max(newest.get(pid, 0), reading.measured_at)
                if after is not None:
                    point = point_after(None if prior is None else prior.updated_at, after.level, after.p00,
                                        reading, outcome)
                    if point is not None:
                        history.setdefault(pid, []).append(point)
            t = min(reading.measured_at, latest)
            evaluated_at = alerts[pid].evaluated_at
            if together:
                evaluated_at = due_from.get(pid, evaluated_at)
            if not evaluated_at or t - evaluated_at >= every:
                at = t
            elif _settles_a_prompt_brief(prior, after, prompt_gap):
                at = max(t, evaluated_at)
            else:
                continue
            twin = to_twin(p)
            if together:
                requests.append((pid, twin, at))
                due_from[pid] = max(evaluated_at, at)
            else:
                alert_states[pid] = self._evaluate(pid, twin, at, result)
        return list(changed.values())

    async def apply_action(self, patient_id: str, alert_id: str, user: str, now_ms: int,
                           resolution: str | None = None) -> list[AlertEvent]:
        """A person acknowledged (``resolution`` None) or resolved an alert. Publishes, then stores.

        Raises ``UnknownAlert`` when the patient has no open alert with that id (already resolved, or never)."""
        async with self._lock, self._forget_on_error():
            # An action's own time may be long past (a backlog of actions): the store is judged by the wall clock.
            await self._load({patient_id}, max(now_ms, int(time.time() * 1000)))
            state = self._alerts[patient_id]
            if resolution is None:
                state, events = acknowledge(state, alert_id, user, now_ms)
            else:
                state, events = resolve(state, alert_id, user, resolution, now_ms)
            if not events:
                return []
            if self._publish is not None:
                await self._publish(events)
            self._alerts[patient_id] = state
            saving = self._store.save_alert_states([(self._twins[patient_id], alert_codec.pack(state))])
            await self._timed("save", saving)
            self._count_alerts(events)
            if resolution is None and self._metrics is not None:
                self._metrics.acknowledged(state, alert_id)  # metrics: time to acknowledge
            return events

    def _count_alerts(self, events: Sequence[AlertEvent]) -> None:
        if self._metrics is not None:
            for event in events:
                self._metrics.alerts.labels(event.kind.value, event.level.name.lower()).inc()

    async def sweep(self, now_ms: int, skip_partitions: Iterable[int] = ()) -> list[AlertEvent]:
        """Technical conditions for patients who have gone quiet, on the wall clock: a patient whose sensors
        send nothing produces no event time, so only a timer can notice. Publishes, then stores.

        Patients on ``skip_partitions`` (a backlog the worker is still catching up on, where event time lags the
        wall clock and everyone would look silent) are left for a later sweep."""
        async with self._lock, self._forget_on_error():
            return await self._sweep(now_ms, frozenset(skip_partitions))

    async def _sweep(self, now_ms: int, skip: frozenset[int]) -> list[AlertEvent]:
        cfg = self._eval
        events: list[AlertEvent] = []
        alert_states: list[tuple[AnyTwin, bytes]] = []
        for pid, state in self._alerts.items():
            # An evaluation stamped in the future is no sign of recent data: such a patient is swept like any other.
            # So is one whose no-data condition is pending or open: this sweep's own evaluation must not hold off
            # the next, which raises it after its persistence or escalates it.
            ahead = state.evaluated_at > now_ms + MAX_AHEAD_MS
            quiet = Condition.NO_DATA in state.pending or Condition.NO_DATA in state.open
            if not ahead and not quiet and now_ms - state.evaluated_at < cfg.technical.no_data_after_ms:
                continue
            resident = self._twins[pid]
            if resident.partition in skip:
                continue
            twin = to_twin(resident) if isinstance(resident, PackedTwin) else resident
            state, new = decide(state, technical_levels(twin, now_ms, cfg.technical), now_ms, cfg.policy)
            if new or state != self._alerts[pid]:
                self._alerts[pid] = state
                events.extend(new)
                alert_states.append((resident, alert_codec.pack(state)))
        if events and self._publish is not None:
            await self._publish(events)
        if alert_states:
            await self._timed("save", self._store.save_alert_states(alert_states))
        self._count_alerts(events)
        return events

    async def _load(self, patient_ids: set[str], now_ms: int) -> None:
        missing = [pid for pid in patient_ids if pid not in self._twins]
        if not missing:
            return
        records = await self._timed("load", self._load_records(missing))
        for pid in missing:
            self._install(pid, records.get(pid, (None, None)), now_ms)
        self._unindexed.update(missing)
        unknown = [pid for pid in missing if pid not in self._profiles]
        if unknown and self._profile_source is not None:
            found = await self._timed("profiles", self._profile_source.get_many(unknown))
            for pid in unknown:
                self._profiles[pid] = found.get(pid)

    async def _load_records(self, patient_ids: Sequence[str]) -> Mapping[str, tuple[AnyTwin, bytes | None]]:
        if self._packed:
            return await self._store.load_packed(patient_ids)
        return await self._store.load_records(patient_ids)

    def _install(self, pid: str, record: tuple[AnyTwin | None, bytes | None], now_ms: int) -> None:
        """A patient's stored twin and alert state (or new ones) made resident."""
        twin, alert_state = record
        # Stored state that older code let a reading from the future into is repaired before anything uses it,
        # so that the patient is evaluated again at once (twin_state.clock, alerts.policy.repair).
        if isinstance(twin, PackedTwin):
            if newest_time(twin) > now_ms + MAX_AHEAD_MS:
                twin = from_twin(repair_twin(to_twin(twin), now_ms))
            self._twins[pid] = twin
        elif twin is not None:
            self._twins[pid] = repair_twin(twin, now_ms)
        else:
            self._twins[pid] = new_packed(pid) if self._packed else new_twin(pid)
        state = repair(alert_codec.unpack(alert_state), now_ms) if alert_state else PatientAlerts(pid)
        # The state is written back only after this processor's policy has evaluated it.
        self._alerts[pid] = state if state.policy_id == self._policy_id else replace(state, policy_id=self._policy_id)

    async def _index(self) -> None:
        """Record on their partitions the patients loaded at a reading whose twins are now stored."""
        members: dict[int, list[str]] = {}
        twins = self._twins
        for pid in self._unindexed:
            twin = twins.get(pid)
            if twin is not None and twin.partition >= 0:
                members.setdefault(twin.partition, []).append(pid)
        if members:
            await self._timed("index", self._store.index_partitions(members))
        self._unindexed.clear()

    def _evaluate(self, pid: str, twin: Twin, t: int, result: BatchResult) -> bytes:
        """Risk and the alert policy for one patient at event time ``t``; the packed alert state after it."""
        return self._decide(pid, twin, t, risk(twin, self._profiles.get(pid), t, self._eval.risk), result)

    def _evaluate_many(self, requests: Sequence[tuple[str, Twin, int]], result: BatchResult) -> dict[str, bytes]:
        """``_evaluate`` for each (patient, twin, event time) in order, with every risk computed in one
        ``risk_many``; each patient's packed alert state after its last evaluation."""
        profiles = self._profiles
        risks = risk_many([(twin, profiles.get(pid), t) for pid, twin, t in requests], self._eval.risk)
        return {pid: self._decide(pid, twin, t, r, result) for (pid, twin, t), r in zip(requests, risks, strict=True)}

    def _decide(self, pid: str, twin: Twin, t: int, r: Risk, result: BatchResult) -> bytes:
        """The alert policy for one patient at event time ``t`` on risk ``r``; the packed alert state after it."""
        cfg = self._eval
        levels: dict[Condition, Level] = {
            Condition.CLINICAL: clinical_level(r, cfg.policy),
            Condition.UNCONFIRMED: unconfirmed_level(r, cfg.policy),
            **technical_levels(twin, t, cfg.technical),
        }
        reasons = {Condition.UNCONFIRMED: unconfirmed_reason(r, cfg.policy)}
        if levels[Condition.CLINICAL]:
            reasons[Condition.CLINICAL] = clinical_reason(r, cfg.policy)
        state, events = decide(self._alerts[pid], levels, t, cfg.policy, reasons, exertion_of(r, cfg.policy))
        self._alerts[pid] = state
        result.alert_events.extend(events)
        return alert_codec.pack(state)

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
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
        self._count_alerts(result.alert_events)
        m.twins_written.inc(result.written)
        m.twins_resident.set(len(self._twins))
        if result.newest:
            # One sample per twin written: the newest reading it now reflects, which is what a clinician
            # waits for. Late uploads and redeliveries are not counted; they were not what kept anyone waiting.
            now = time.time() * 1000.0
            for measured_at in result.newest.values():
                m.reading_to_persist.observe(max(now - measured_at, 0.0) / 1000.0)
