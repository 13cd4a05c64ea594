"""Readings from the future: the ingest clock in the worker's processor and offline, the repair of state an older
worker let such a reading into, and the no-data sweep (issue 12, item 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from alerts import codec as alert_codec
from alerts.policy import (
    AlertEvent,
    Condition,
    Kind,
    Level,
    OpenAlert,
    PatientAlerts,
    Pending,
    TechnicalSettings,
    repair,
    technical_levels,
)
from evaluation.cohort import evaluate_recorded
from simulation.replay import RECORDING_LOOKAHEAD, recording_clock, replay, replay_alerts
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage, ingest_ms
from streams.schema import MAX_AHEAD_MS, Reason, Rejected, decode, encode
from twin_state.catalogue import Metric
from twin_state.clock import repair_twin
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Outcome, Position, Reading, new_twin, step

T0 = 1_763_942_400_000
HOUR = 3_600_000
AHEAD = 20 * HOUR


def hr(pid: str, at: int, value: float = 80.0, device: str = "wrist", seq: int = 1) -> Reading:
    return Reading(pid, f"{pid}-{device}", Metric.HEART_RATE, value, at, seq)


def cohort(hours: float = 3.0) -> list[tuple[int, Reading]]:
    """(delivered at, reading) of six patients, half of them deteriorating, in delivery order."""
    return [(T0 + round(d * 1000), r)
            for d, r in simulate(6, hours * 3600.0, rate=0.25, seed=8, start_ms=T0, deteriorating_share=0.5)]


def with_liars(stream: list[tuple[int, Reading]], at: int = T0 + HOUR) -> list[tuple[int, Reading]]:
    """One heart rate per patient from a second device stamped 20 h ahead, inserted where the stream reaches ``at``."""
    cut = next(i for i, (d, _) in enumerate(stream) if d >= at)
    pids = sorted({r.patient_id for _, r in stream})
    liars = [(stream[cut][0], hr(pid, stream[cut][0] + AHEAD + i, device="spare")) for i, pid in enumerate(pids)]
    return stream[:cut] + liars + stream[cut:]


class Recorder:
    def __init__(self) -> None:
        self.events: list[AlertEvent] = []

    async def __call__(self, events: Sequence[AlertEvent]) -> None:
        self.events.extend(events)


async def run_worker(stream: list[tuple[int, Reading]], proc: BatchProcessor, now_ms: int | None = None,
                     batch: int = 500, stamped: bool = True) -> list[tuple[RawMessage, Rejected]]:
    """As the worker does: record timestamps are delivery times (none if not ``stamped``), the wall clock is the
    batch's newest of them unless ``now_ms`` is given."""
    msgs = [RawMessage(0, i, r.patient_id.encode(), encode(r), d if stamped else None)
            for i, (d, r) in enumerate(stream)]
    dead: list[tuple[RawMessage, Rejected]] = []
    for i in range(0, len(msgs), batch):
        part = msgs[i:i + batch]
        result = await proc.process(part, now_ms if now_ms is not None else max(m.timestamp_ms or 0 for m in part))
        dead.extend(result.dead_letters)
    return dead


# --- the worker's ingest time ------------------------------------------------------------------------------------

def test_ingest_time_is_the_record_timestamp_never_after_the_wall_clock() -> None:
    assert ingest_ms(RawMessage(0, 0, None, None, T0 - 5_000), T0) == T0 - 5_000
    assert ingest_ms(RawMessage(0, 0, None, None, T0 + AHEAD), T0) == T0  # a producer's clock can be wrong too
    assert ingest_ms(RawMessage(0, 0, None, None, None), T0) == T0
    assert ingest_ms(RawMessage(0, 0, None, None, -1), T0) == T0  # Kafka's "no timestamp"


async def test_a_reading_ahead_of_its_record_timestamp_is_dead_lettered_even_with_the_wall_clock_later() -> None:
    ok, ahead = hr("p-1", T0 + MAX_AHEAD_MS), hr("p-1", T0 + MAX_AHEAD_MS + 1, seq=2)
    result = await BatchProcessor(InMemoryTwinStore()).process(
        [RawMessage(0, 0, b"p-1", encode(ok), T0), RawMessage(0, 1, b"p-1", encode(ahead), T0)], T0 + HOUR)
    assert [(m.offset, r.reason) for m, r in result.dead_letters] == [(1, Reason.FUTURE_TIMESTAMP)]
    assert result.outcomes == {Outcome.APPLIED: 1}


async def test_a_future_record_timestamp_does_not_let_a_future_reading_in() -> None:
    liar = hr("p-1", T0 + AHEAD)
    result = await BatchProcessor(InMemoryTwinStore()).process(
        [RawMessage(0, 0, b"p-1", encode(liar), T0 + AHEAD)], T0)
    assert [r.reason for _, r in result.dead_letters] == [Reason.FUTURE_TIMESTAMP]
    assert "20.0 h ahead" in result.dead_letters[0][1].detail


async def test_readings_from_the_future_change_no_patients_alerts_in_the_worker() -> None:
    stream = cohort()
    clean, dirty = Recorder(), Recorder()
    assert await run_worker(stream, BatchProcessor(InMemoryTwinStore(), publish=clean)) == []
    dead = await run_worker(with_liars(stream), BatchProcessor(InMemoryTwinStore(), publish=dirty))
    assert [r.reason for _, r in dead] == [Reason.FUTURE_TIMESTAMP] * 6
    raised = [e for e in clean.events if e.condition is Condition.CLINICAL and e.kind is Kind.RAISED]
    assert len({e.patient_id for e in raised}) >= 3, "the deteriorating half should have raised clinical alerts"
    assert [e.event_id for e in dirty.events] == [e.event_id for e in clean.events]


async def test_what_older_code_let_through_silenced_the_patient_and_a_restart_repairs_it() -> None:
    """An older worker (a day's allowance) applied the readings from the future; its stored state is repaired on
    load by this one, which then evaluates and alerts on the patient's real readings again."""
    stream = with_liars(cohort())
    cut = next(i for i, (d, _) in enumerate(stream) if d >= T0 + HOUR + 60_000)
    poisoned = InMemoryTwinStore()
    old = Recorder()
    await run_worker(stream[:cut], BatchProcessor(poisoned, publish=old), now_ms=T0 + 2 * AHEAD, stamped=False)

    ahead = {pid: alert_codec.unpack(alert_state).evaluated_at for pid, (_, alert_state) in
             (await poisoned.load_records([r.patient_id for _, r in stream[:cut]])).items() if alert_state}
    assert ahead and all(t > T0 + AHEAD for t in ahead.values())  # the event clocks were moved 20 h ahead

    # Carrying on as the old worker would: the patients are silent from then on.
    silenced = Recorder()
    later = BatchProcessor(poisoned, publish=silenced)
    await run_worker(stream[cut:], later, now_ms=T0 + 2 * AHEAD, stamped=False)
    assert [e for e in silenced.events if e.condition is Condition.CLINICAL] == []

    # This worker, restarted on the poisoned store at the real time, evaluates them again.
    repaired_store = InMemoryTwinStore()
    await run_worker(stream[:cut], BatchProcessor(repaired_store), now_ms=T0 + 2 * AHEAD, stamped=False)
    now = Recorder()
    await run_worker(stream[cut:], BatchProcessor(repaired_store, publish=now))
    reference = Recorder()
    await run_worker(cohort(), BatchProcessor(InMemoryTwinStore(), publish=reference))
    alerted = {e.patient_id for e in now.events if e.condition is Condition.CLINICAL and e.kind is Kind.RAISED}
    expected = {e.patient_id for e in reference.events if e.condition is Condition.CLINICAL and e.kind is Kind.RAISED
                and e.at >= T0 + HOUR + 60_000}
    assert expected and expected <= alerted


# --- the no-data sweep -------------------------------------------------------------------------------------------

async def test_an_evaluation_stamped_in_the_future_does_not_keep_the_sweep_away() -> None:
    store = InMemoryTwinStore()
    await BatchProcessor(store).process([RawMessage(0, 0, b"p-1", encode(hr("p-1", T0 + AHEAD)), T0 + AHEAD)],
                                        T0 + AHEAD)
    recorder = Recorder()
    proc = BatchProcessor(store, publish=recorder)
    # Resident with an evaluation 20 h ahead of this clock (as a worker whose wall clock was wrong left it).
    await proc.process([RawMessage(0, 1, b"p-1", encode(hr("p-1", T0 + AHEAD + 1, seq=2)), T0 + AHEAD)], T0 + AHEAD)
    state = proc.alerts("p-1")
    assert state is not None and state.evaluated_at >= T0 + AHEAD
    await proc.sweep(T0)
    await proc.sweep(T0 + 60_000)
    assert [(e.kind, e.condition, e.level) for e in recorder.events] == [(Kind.RAISED, Condition.NO_DATA, Level.MEDIUM)]


async def test_the_sweep_leaves_patients_on_a_lagging_partition_and_sweeps_the_others() -> None:
    recorder = Recorder()
    proc = BatchProcessor(InMemoryTwinStore(), publish=recorder)
    await proc.process([RawMessage(0, 0, b"p-0", encode(hr("p-0", T0)), T0),
                        RawMessage(1, 0, b"p-1", encode(hr("p-1", T0)), T0)], T0)
    quiet = T0 + TechnicalSettings().no_data_after_ms
    for t in (quiet, quiet + 60_000):
        await proc.sweep(t, skip_partitions=[1])
    # Raised at the second sweep, persistence after the first: the first sweep's evaluation does not hold it off.
    assert [(e.patient_id, e.condition, e.at) for e in recorder.events] == [("p-0", Condition.NO_DATA, quiet + 60_000)]
    await proc.sweep(quiet + 120_000)
    await proc.sweep(quiet + 180_000)
    assert {e.patient_id for e in recorder.events} == {"p-0", "p-1"}


def test_a_vital_stamped_in_the_future_is_not_data_for_the_no_data_rule() -> None:
    twin, _ = step(new_twin("p-1"), hr("p-1", T0 + AHEAD), Position(0, 0))
    assert technical_levels(twin, T0)[Condition.NO_DATA] is Level.MEDIUM
    near, _ = step(new_twin("p-1"), hr("p-1", T0 + MAX_AHEAD_MS), Position(0, 0))
    assert technical_levels(near, T0)[Condition.NO_DATA] is Level.NONE  # within the allowance: device drift


# --- pure repairs ------------------------------------------------------------------------------------------------

def test_repair_twin_drops_what_rests_on_a_reading_from_the_future_and_keeps_the_rest() -> None:
    twin = new_twin("p-1")
    twin, _ = step(twin, hr("p-1", T0 - 60_000), Position(0, 0))
    twin, _ = step(twin, Reading("p-1", "p-1-ox", Metric.SPO2, 96.0, T0 - 30_000, 1), Position(0, 1))
    assert repair_twin(twin, T0) is twin
    poisoned, _ = step(twin, hr("p-1", T0 + AHEAD, device="spare"), Position(0, 2))
    assert poisoned.vitals[Metric.HEART_RATE].updated_at == T0 + AHEAD
    fixed = repair_twin(poisoned, T0)
    assert Metric.HEART_RATE not in fixed.vitals and fixed.vitals[Metric.SPO2] == twin.vitals[Metric.SPO2]
    assert "p-1-spare" not in fixed.devices and "p-1-wrist" in fixed.devices
    assert fixed.quality[Metric.HEART_RATE].seen_at == T0
    assert (fixed.partition, fixed.offset) == (0, 2)  # the log position stands: nothing is re-applied
    # The next real reading is applied, not late.
    _, outcome = step(fixed, hr("p-1", T0 + 1_000, seq=2), Position(0, 3))
    assert outcome is Outcome.APPLIED
    _, outcome = step(poisoned, hr("p-1", T0 + 1_000, seq=2), Position(0, 3))
    assert outcome is Outcome.LATE
    # At the allowance exactly, nothing is touched.
    assert repair_twin(poisoned, T0 + AHEAD - MAX_AHEAD_MS) is poisoned


def test_repair_alert_state_brings_future_times_back_so_the_patient_is_evaluated_at_once() -> None:
    alert = OpenAlert("a1", Condition.CLINICAL, Level.HIGH, T0 - HOUR, T0 + AHEAD, 2, worse_since=T0 + AHEAD,
                      clear_since=None)
    state = PatientAlerts("p-1", {Condition.CLINICAL: alert},
                          {Condition.NO_DATA: Pending(Level.MEDIUM, T0 + AHEAD)}, T0 + AHEAD)
    fixed = repair(state, T0)
    assert fixed.evaluated_at == 0  # the worker's "never evaluated": the next reading evaluates
    assert fixed.pending[Condition.NO_DATA] == Pending(Level.MEDIUM, T0)
    a = fixed.open[Condition.CLINICAL]
    assert (a.alert_id, a.level, a.raised_at, a.escalated_at, a.worse_since) == ("a1", Level.HIGH, T0 - HOUR, T0, T0)
    fine = PatientAlerts("p-1", {Condition.CLINICAL: replace(alert, escalated_at=T0, worse_since=None)},
                         {}, T0 + MAX_AHEAD_MS)
    assert repair(fine, T0) is fine
    assert repair(replace(fine, evaluated_at=T0 + MAX_AHEAD_MS + 1), T0).evaluated_at == 0


# --- the recording clock -----------------------------------------------------------------------------------------

def stamped(readings: Sequence[Reading]) -> list[int]:
    return [t for _, t in recording_clock(encode(r) for r in readings)]


def verdicts(readings: Sequence[Reading]) -> list[Reason | None]:
    out = [decode(line, None, t) for line, t in recording_clock(encode(r) for r in readings)]
    return [o.reason if isinstance(o, Rejected) else None for o in out]


def test_the_first_reading_starts_the_recording_clock() -> None:
    assert stamped([hr("p-1", T0)]) == [T0]
    assert verdicts([hr("p-1", T0), hr("p-1", T0 + 10_000, seq=2)]) == [None, None]


def test_a_reading_from_the_future_is_refused_on_the_recording_clock_wherever_it_is() -> None:
    honest = [hr("p-1", T0 + i * 10_000, seq=i) for i in range(100)]
    for at in (0, 1, 50, 97, 98, 99):
        readings = [*honest[:at], hr("p-1", honest[at].measured_at + AHEAD, device="spare"), *honest[at:]]
        got = verdicts(readings)
        assert got[at] is Reason.FUTURE_TIMESTAMP and got.count(None) == 100, at
    last = verdicts([*honest, hr("p-1", honest[-1].measured_at + AHEAD, device="spare")])
    assert last[-1] is Reason.FUTURE_TIMESTAMP and last.count(None) == 100


def test_the_recording_clock_follows_a_recording_that_goes_quiet_and_resumes() -> None:
    rounds = [Reading("p-1", "p-1-spot", m, v, T0 + h * HOUR, h)
              for h in range(8) for m, v in ((Metric.HEART_RATE, 80.0), (Metric.RESP_RATE, 16.0))]
    assert verdicts(rounds) == [None] * len(rounds)
    assert stamped(rounds)[2] == T0 + HOUR  # hourly spot checks: each round moves the clock on


@pytest.mark.parametrize("liars", [1, 20, RECORDING_LOOKAHEAD * 3 // 4 - 1])
def test_a_burst_of_liars_shorter_than_three_quarters_of_the_lookahead_cannot_move_the_recording_clock(
        liars: int) -> None:
    honest = [hr(f"p-{i % 5}", T0 + i * 1000, seq=i) for i in range(400)]
    burst = [hr(f"p-{i}", T0 + 200_000 + AHEAD, device="spare") for i in range(liars)]
    got = verdicts([*honest[:200], *burst, *honest[200:]])
    assert got.count(Reason.FUTURE_TIMESTAMP) == len(burst) and got.count(None) == 400


def test_replay_twins_are_not_silenced_by_a_reading_from_the_future() -> None:
    stream = cohort(1.5)
    clean = replay(encode(r) for _, r in stream)
    dirty = replay(encode(r) for _, r in with_liars(stream))
    assert dirty.rejected == {"future_timestamp": 6}
    for pid, twin in clean.twins.items():
        assert dirty.twins[pid].vitals == twin.vitals


def write(path: Path, stream: list[tuple[int, Reading]]) -> Path:
    path.write_bytes(b"".join(encode(r) + b"\n" for _, r in stream))
    return path


def test_evaluate_recorded_with_readings_from_the_future_reports_the_same_alerts(tmp_path: Path) -> None:
    stream = cohort()
    clean = evaluate_recorded(write(tmp_path / "s.jsonl", stream))
    dirty = evaluate_recorded(write(tmp_path / "future.jsonl", with_liars(stream)))
    assert clean["twinmon_clinical_alerts_at_low_or_above"] > 0
    for key in ("twinmon_clinical_alerts_at_low_or_above", "twinmon_events", "twinmon"):
        assert dirty[key] == clean[key], key
    assert dirty["dead_letters"] == clean["dead_letters"] + 6


def test_replay_alerts_equal_the_worker_processors_events_by_id() -> None:
    stream = with_liars(cohort())
    worker = Recorder()
    asyncio.run(run_worker(stream, BatchProcessor(InMemoryTwinStore(), publish=worker)))
    offline = replay_alerts(encode(r) for _, r in stream)
    assert len(offline) >= 10
    assert [e.event_id for e in offline] == [e.event_id for e in worker.events]


def test_replay_cli_writes_the_alert_events(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cli.main import main

    events = write(tmp_path / "s.jsonl", with_liars(cohort()))
    out = CliRunner().invoke(main, ["replay", "--input", str(events), "--output", str(tmp_path / "twins.jsonl"),
                                    "--alerts", str(tmp_path / "alerts.jsonl")])
    assert out.exit_code == 0, out.output
    wire = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    expected = replay_alerts(events.read_bytes().splitlines())
    assert [w["event_id"] for w in wire] == [e.event_id for e in expected] and wire
    assert set(wire[0]) >= {"event_id", "alert_id", "patient_id", "kind", "condition", "level", "at", "care_team"}
    assert "future_timestamp=6" in out.output
    assert f"wrote {len(wire)} alert events" in out.output


@pytest.mark.parametrize(("speed", "behind_s"), [(0.0, 3600.0), (1.0, 0.0), (0.5, 0.0), (20.0, 3420.0)])
def test_the_simulator_starts_in_the_past_so_event_time_never_passes_the_wall_clock(speed: float,
                                                                                    behind_s: float) -> None:
    from cli.main import default_start_ms

    start = default_start_ms(T0, 3600.0, speed)
    assert start == T0 - round(behind_s * 1000)
    if speed > 0:  # the last reading is measured when the wall clock reaches it
        assert start + 3_600_000 <= T0 + 3_600_000 / speed

