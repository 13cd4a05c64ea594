"""Refused readings never vanish: the twin keeps them as unconfirmed, risk scores them, and one scoring 3 on a vital
measured a minute or more apart is a re-measure prompt at once, settled by the next reading of that vital."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from alerts.policy import (
    AlertEvent,
    Condition,
    Kind,
    Level,
    PatientAlerts,
    PolicySettings,
    decide,
    unconfirmed_level,
    unconfirmed_reason,
)
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from twin_state import codec
from twin_state.catalogue import Metric
from twin_state.news2 import Param
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.risk import Risk, Unconfirmed, news2_now, risk, unconfirmed_scores
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Outcome, Position, Reading, Twin, new_twin, step

T0 = 1_763_942_400_000
CUFF_MS = 15 * 60_000
U = Condition.UNCONFIRMED


def cuff(values: Sequence[float], start: int = 0) -> list[Reading]:
    return [Reading("p-1", "cuff", Metric.BP_SYSTOLIC, v, T0 + (start + i) * CUFF_MS, start + i, 1.0)
            for i, v in enumerate(values)]


def fold(readings: Sequence[Reading], twin: Twin | None = None) -> tuple[Twin, list[Outcome]]:
    twin = twin or new_twin("p-1")
    out = []
    for r in readings:
        twin, o = step(twin, r, Position(0, r.seq))
        out.append(o)
    return twin, out


STEADY = [130.0] * 12  # three hours of a cuff at 130


def test_a_refused_reading_is_kept_as_unconfirmed_with_its_own_subscore() -> None:
    twin, outcomes = fold(cuff([*STEADY, 85.0]))
    v = twin.vitals[Metric.BP_SYSTOLIC]
    assert outcomes[-1] is Outcome.INNOVATION
    assert (v.unconfirmed, v.unconfirmed_at) == (85.0, T0 + 12 * CUFF_MS)
    assert v.filter.level == pytest.approx(130.0)  # not believed ...
    now = T0 + 12 * CUFF_MS
    assert news2_now(twin, None, now).subscores[Param.SBP] == 0
    got = unconfirmed_scores(twin, None, now)  # ... but shown, and scored as charted
    assert got == {Param.SBP: Unconfirmed(85.0, now, 3, CUFF_MS)}


def test_the_second_low_reading_confirms_the_step_and_clears_the_unconfirmed_one() -> None:
    twin, outcomes = fold(cuff([*STEADY, 85.0, 85.0]))
    v = twin.vitals[Metric.BP_SYSTOLIC]
    assert outcomes[-2:] == [Outcome.INNOVATION, Outcome.REINITIALISED]
    assert v.unconfirmed is None and v.filter.level == 85.0
    assert news2_now(twin, None, T0 + 13 * CUFF_MS).subscores[Param.SBP] == 3


def test_a_refuted_reading_clears_the_unconfirmed_one_and_leaves_the_estimate() -> None:
    twin, outcomes = fold(cuff([*STEADY, 85.0, 131.0]))
    v = twin.vitals[Metric.BP_SYSTOLIC]
    assert outcomes[-2:] == [Outcome.INNOVATION, Outcome.APPLIED]
    assert v.unconfirmed is None and v.filter.level == pytest.approx(130.5, abs=1.0)


def test_two_surprises_on_either_side_of_the_twin_are_not_a_step() -> None:
    # Close enough to each other to pass for one value, but one above and one below where the run began.
    hr = [Reading("p-1", "wrist", Metric.HEART_RATE, 75.0, T0 + i * 5000, i, 1.0) for i in range(720)]
    twin, _ = fold(hr)
    v = twin.vitals[Metric.HEART_RATE]
    primed = replace(twin, vitals={Metric.HEART_RATE: replace(v, run=1, run_mean=81.6, run_ref=75.0)})
    after, outcome = step(primed, Reading("p-1", "wrist", Metric.HEART_RATE, 68.3, T0 + 720 * 5000, 720, 0.4),
                          Position(0, 720))
    assert outcome is Outcome.APPLIED  # not REINITIALISED at their mean
    assert (after.vitals[Metric.HEART_RATE].run, after.vitals[Metric.HEART_RATE].run_mean) == (1, 68.3)
    _, outcome = step(primed, Reading("p-1", "wrist", Metric.HEART_RATE, 81.8, T0 + 720 * 5000, 720, 0.4),
                      Position(0, 720))
    assert outcome is Outcome.REINITIALISED  # the control: the same distance on the same side is a step


def test_a_small_step_between_the_two_gates_is_taken_at_its_second_reading() -> None:
    readings = [Reading("p-1", "wrist", Metric.SPO2, 97.0, T0 + i * 10_000, i, 0.95) for i in range(1080)]
    readings += [Reading("p-1", "wrist", Metric.SPO2, 94.5, T0 + (1080 + i) * 10_000, 1080 + i, 0.95)
                 for i in range(2)]
    twin, outcomes = fold(readings)
    assert outcomes[-2:] == [Outcome.APPLIED, Outcome.REINITIALISED]  # believed, then confirmed as a step
    assert twin.vitals[Metric.SPO2].filter.level == 94.5 and twin.vitals[Metric.SPO2].unconfirmed is None


def test_the_codec_keeps_unconfirmed_and_run_state_bit_for_bit() -> None:
    twin, _ = fold(cuff([*STEADY, 85.7]))
    back = codec.unpack(codec.pack(twin))
    assert back == twin and back.vitals[Metric.BP_SYSTOLIC].unconfirmed == 85.7
    assert codec.from_dict(codec.to_dict(twin)) == twin
    settled, _ = fold(cuff([131.0], start=13), twin)
    assert codec.unpack(codec.pack(settled)) == settled


def test_a_stale_unconfirmed_reading_is_not_scored() -> None:
    twin, _ = fold(cuff([*STEADY, 85.0]))
    at = T0 + 12 * CUFF_MS
    assert unconfirmed_scores(twin, None, at + 90 * 60_000)  # the cuff's staleness limit: 90 min
    assert not unconfirmed_scores(twin, None, at + 90 * 60_000 + 1)


def test_spo2_unconfirmed_is_scored_on_the_patients_scale() -> None:
    readings = [Reading("p-1", "wrist", Metric.SPO2, 92.0, T0 + i * 10_000, i, 1.0) for i in range(360)]
    readings.append(Reading("p-1", "wrist", Metric.SPO2, 84.0, T0 + 360 * 10_000, 360, 1.0))
    twin, outcomes = fold(readings)
    assert outcomes[-1] is Outcome.INNOVATION
    at = T0 + 360 * 10_000
    assert unconfirmed_scores(twin, None, at)[Param.SPO2].subscore == 3  # scale 1: 84 % scores 3
    copd = Profile("p-1", "ward", T0, conditions=frozenset({HYPERCAPNIC}))
    assert unconfirmed_scores(twin, copd, at)[Param.SPO2].subscore == 2  # scale 2: 84-85 % scores 2


def risk_with(subscore: int, gap_ms: int) -> Risk:
    base = risk(new_twin("p-1"), None, T0)
    return Risk(base.now, base.p_reach, base.p_param_3, None,
                {Param.SBP: Unconfirmed(85.0 if subscore == 3 else 95.0, T0, subscore, gap_ms)})


@pytest.mark.parametrize(("subscore", "gap_ms", "level"), [
    (3, 60_000, Level.MEDIUM), (3, 59_999, Level.NONE), (2, 900_000, Level.NONE), (3, 900_000, Level.MEDIUM)])
def test_the_prompt_is_for_a_3_on_a_vital_measured_a_minute_or_more_apart(subscore: int, gap_ms: int,
                                                                          level: Level) -> None:
    assert unconfirmed_level(risk_with(subscore, gap_ms), PolicySettings()) is level


def test_the_prompt_is_raised_at_once_and_resolved_at_once() -> None:
    s = PolicySettings()
    r = risk_with(3, CUFF_MS)
    state, events = decide(PatientAlerts("p-1"), {U: unconfirmed_level(r, s)}, T0, s, {U: unconfirmed_reason(r, s)})
    assert [(e.kind, e.level, e.reason) for e in events] == [
        (Kind.RAISED, Level.MEDIUM, "unconfirmed: re-measure (sbp 85 scores 3)")]
    state, events = decide(state, {U: Level.NONE}, T0 + 1, s)
    assert [(e.kind, e.reason) for e in events] == [(Kind.RESOLVED, "condition_cleared")] and not state.open


def test_other_conditions_still_persist_and_clear_slowly() -> None:
    s = PolicySettings()
    _, events = decide(PatientAlerts("p-1"), {Condition.CLINICAL: Level.MEDIUM}, T0, s)
    assert events == []


async def test_the_worker_prompts_on_the_first_low_cuff_reading_and_settles_on_the_second() -> None:
    events: list[AlertEvent] = []

    async def publish(batch: Sequence[AlertEvent]) -> None:
        events.extend(batch)

    proc = BatchProcessor(InMemoryTwinStore(), publish=publish)
    readings = cuff([*STEADY, 85.0, 85.0])
    for i, r in enumerate(readings):
        await proc.process([RawMessage(0, i, b"p-1", encode(r))], r.measured_at)
        if i == len(STEADY):  # the first low reading: the prompt, before any clinical alert
            assert [(e.condition, e.kind) for e in events] == [(U, Kind.RAISED)]
    assert [(e.condition, e.kind) for e in events] == [(U, Kind.RAISED), (U, Kind.RESOLVED)]
    twin = proc.twin("p-1")
    assert twin is not None and news2_now(twin, None, readings[-1].measured_at).subscores[Param.SBP] == 3


async def test_artefacts_raise_no_alert_of_any_kind() -> None:
    # Probe-off zeros and the 277 bpm pulse of the real MIMIC trace are implausible: never unconfirmed, never scored.
    events: list[AlertEvent] = []

    async def publish(batch: Sequence[AlertEvent]) -> None:
        events.extend(batch)

    proc = BatchProcessor(InMemoryTwinStore(), publish=publish)
    readings = [*cuff(STEADY), *(Reading("p-1", "pleth", Metric.HEART_RATE, 72.0, T0 + i * 60_000, i, 0.9)
                                 for i in range(180))]
    readings += [Reading("p-1", "pleth", Metric.HEART_RATE, v, T0 + 180 * 60_000 + k * 60_000, 180 + k, 0.1)
                 for k, v in enumerate([0.0, 277.0, 0.0, 272.8])]
    readings += [Reading("p-1", "cuff", Metric.BP_SYSTOLIC, 0.0, T0 + 12 * CUFF_MS, 12, 0.1)]
    readings.sort(key=lambda r: r.measured_at)
    msgs = [RawMessage(0, i, b"p-1", encode(r)) for i, r in enumerate(readings)]
    await proc.process(msgs, readings[-1].measured_at)
    twin = proc.twin("p-1")
    assert twin is not None and twin.counts.implausible == 5
    assert all(v.unconfirmed is None for v in twin.vitals.values())
    assert [e for e in events if e.condition in (U, Condition.CLINICAL)] == []


async def test_a_wearable_motion_spike_prompts_nobody() -> None:
    events: list[AlertEvent] = []

    async def publish(batch: Sequence[AlertEvent]) -> None:
        events.extend(batch)

    proc = BatchProcessor(InMemoryTwinStore(), publish=publish)
    hr = [Reading("p-1", "wrist", Metric.HEART_RATE, 75.0, T0 + i * 5000, i, 0.9) for i in range(720)]
    hr.insert(400, Reading("p-1", "wrist", Metric.HEART_RATE, 180.0, T0 + 400 * 5000 + 2500, 10_000, 0.2))
    msgs = [RawMessage(0, i, b"p-1", encode(r)) for i, r in enumerate(hr)]
    await proc.process(msgs, hr[-1].measured_at)
    twin = proc.twin("p-1")
    assert twin is not None and twin.counts.innovation == 1
    assert [e for e in events if e.condition in (U, Condition.CLINICAL)] == []
