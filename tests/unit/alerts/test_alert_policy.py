"""The alert policy at every transition: persistence, de-duplication, worsening, escalation, hysteresis, people."""

from __future__ import annotations

import pytest

from alerts.policy import (
    Condition,
    Kind,
    Level,
    PatientAlerts,
    PolicySettings,
    UnknownAlert,
    acknowledge,
    clinical_level,
    decide,
    resolve,
    technical_levels,
)
from twin_state.catalogue import Metric
from twin_state.news2 import Inputs, score
from twin_state.risk import Risk
from twin_state.twin import Position, Reading, new_twin, step

S = PolicySettings(persist_ms=30_000, clear_ms=600_000,
                   escalate_after_ms={Level.HIGH: 300_000, Level.MEDIUM: 900_000, Level.LOW: 3_600_000},
                   predicted_medium=0.6, predicted_high=0.6)
C = Condition.CLINICAL
T0 = 1_000_000_000_000


def run(levels: list[tuple[int, Level]], state: PatientAlerts | None = None, settings: PolicySettings = S,
        condition: Condition = C) -> tuple[PatientAlerts, list]:
    state = state or PatientAlerts("p-1")
    events = []
    for t, level in levels:
        state, new = decide(state, {condition: level}, T0 + t, settings)
        events.extend(new)
    return state, events


def kinds(events: list) -> list[tuple[Kind, Level, str]]:
    return [(e.kind, e.level, e.reason) for e in events]


def test_a_level_must_persist_before_it_is_raised() -> None:
    state, events = run([(0, Level.MEDIUM), (29_999, Level.MEDIUM)])
    assert events == [] and state.pending[C].since == T0
    state, events = run([(30_000, Level.MEDIUM)], state)
    assert kinds(events) == [(Kind.RAISED, Level.MEDIUM, "clinical at MEDIUM")]
    assert state.open[C].level is Level.MEDIUM and C not in state.pending


def test_a_blip_that_does_not_persist_raises_nothing() -> None:
    _, events = run([(0, Level.HIGH), (10_000, Level.NONE), (20_000, Level.HIGH), (45_000, Level.HIGH)])
    assert events == []


def test_what_is_raised_is_the_level_that_persisted() -> None:
    _, events = run([(0, Level.HIGH), (10_000, Level.MEDIUM), (30_000, Level.HIGH)])
    assert kinds(events) == [(Kind.RAISED, Level.MEDIUM, "clinical at MEDIUM")]


def test_one_open_alert_per_condition_however_long_it_lasts() -> None:
    _, events = run([(t, Level.MEDIUM) for t in range(0, 800_000, 10_000)])
    assert [e.kind for e in events] == [Kind.RAISED]  # 800 s < the 900 s unacknowledged escalation


def test_worsening_escalates_after_it_persists() -> None:
    state, _ = run([(0, Level.MEDIUM), (30_000, Level.MEDIUM)])
    state, events = run([(40_000, Level.HIGH), (69_999, Level.HIGH)], state)
    assert events == [] and state.open[C].worse_since == T0 + 40_000
    state, events = run([(70_000, Level.HIGH)], state)
    assert kinds(events) == [(Kind.ESCALATED, Level.HIGH, "worsened")]
    assert state.open[C].level is Level.HIGH and state.open[C].escalated_at == T0 + 70_000


def test_unacknowledged_alerts_escalate_once_per_period_and_acknowledged_ones_do_not() -> None:
    state, events = run([(0, Level.HIGH), (30_000, Level.HIGH), (329_999, Level.HIGH), (330_000, Level.HIGH),
                         (340_000, Level.HIGH), (630_000, Level.HIGH)])
    assert kinds(events)[1:] == [(Kind.ESCALATED, Level.HIGH, "unacknowledged")] * 2
    alert_id = state.open[C].alert_id
    state, acked = acknowledge(state, alert_id, "nurse-1", T0 + 640_000)
    assert kinds(acked) == [(Kind.ACKNOWLEDGED, Level.HIGH, "acknowledged")] and acked[0].user == "nurse-1"
    _, later = run([(2_000_000, Level.HIGH)], state)
    assert later == []


def test_hysteresis_an_alert_clears_only_after_the_condition_stays_away() -> None:
    state, _ = run([(0, Level.MEDIUM), (30_000, Level.MEDIUM)])
    state, events = run([(40_000, Level.NONE), (500_000, Level.MEDIUM), (510_000, Level.NONE),
                         (1_109_999, Level.NONE)], state)
    assert events == [] and C in state.open
    state, events = run([(1_110_000, Level.NONE)], state)
    assert kinds(events) == [(Kind.RESOLVED, Level.MEDIUM, "condition_cleared")] and C not in state.open


def test_easing_without_clearing_keeps_the_alert_at_its_level() -> None:
    state, _ = run([(0, Level.HIGH), (30_000, Level.HIGH)])
    state, events = run([(40_000, Level.LOW), (2_000_000, Level.LOW)], state)
    assert state.open[C].level is Level.HIGH and state.open[C].clear_since is None
    assert [e.kind for e in events] == [Kind.ESCALATED]  # nobody acknowledged the HIGH: it is escalated again


def test_people_resolve_with_a_reason_and_a_persisting_condition_is_raised_anew() -> None:
    state, _ = run([(0, Level.MEDIUM), (30_000, Level.MEDIUM)])
    alert_id = state.open[C].alert_id
    with pytest.raises(ValueError, match="reason"):
        resolve(state, alert_id, "dr-2", "  ", T0 + 40_000)
    state, events = resolve(state, alert_id, "dr-2", "reviewed, plan in place", T0 + 40_000)
    assert kinds(events) == [(Kind.RESOLVED, Level.MEDIUM, "reviewed, plan in place")] and events[0].user == "dr-2"
    with pytest.raises(UnknownAlert):
        acknowledge(state, alert_id, "nurse-1", T0 + 41_000)
    state, again = run([(50_000, Level.MEDIUM), (80_000, Level.MEDIUM)], state)
    assert [e.kind for e in again] == [Kind.RAISED] and again[0].alert_id != alert_id


def test_acknowledging_twice_is_quiet() -> None:
    state, _ = run([(0, Level.LOW), (30_000, Level.LOW)])
    alert_id = state.open[C].alert_id
    state, first = acknowledge(state, alert_id, "a", T0 + 31_000)
    state2, second = acknowledge(state, alert_id, "b", T0 + 32_000)
    assert len(first) == 1 and second == [] and state2 == state


def test_event_ids_are_deterministic_and_unique() -> None:
    levels = [(0, Level.MEDIUM), (30_000, Level.MEDIUM), (60_000, Level.HIGH), (90_000, Level.HIGH),
              (400_000, Level.HIGH), (500_000, Level.NONE), (1_200_000, Level.NONE)]
    _, a = run(levels)
    _, b = run(levels)
    assert a == b and len({e.event_id for e in a}) == len(a) == 4
    assert len({e.alert_id for e in a}) == 1


def risk_of(total_inputs: Inputs, p5: float = 0.0, p7: float = 0.0) -> Risk:
    return Risk(score(total_inputs), {(5, 60.0): p5, (7, 60.0): p7}, {})


@pytest.mark.parametrize(
    "inputs,p5,p7,expected",
    [
        (Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0), 0.0, 0.0, Level.NONE),
        (Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0), 0.59, 0.0, Level.NONE),
        (Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0), 0.6, 0.0, Level.MEDIUM),
        (Inputs(rr=16, spo2=97, sbp=120, pulse=70, temp=37.0), 0.9, 0.6, Level.HIGH),
        (Inputs(rr=26, spo2=97, sbp=120, pulse=70, temp=37.0), 0.0, 0.0, Level.LOW),  # single 3: low-medium
        (Inputs(rr=22, spo2=95, sbp=108, pulse=95, temp=37.0), 0.0, 0.0, Level.MEDIUM),  # 2+1+1+1 = 5
        (Inputs(rr=22, spo2=93, sbp=108, pulse=95, temp=38.5), 0.0, 0.0, Level.HIGH),  # 2+2+1+1+1 = 7
        (Inputs(rr=22, spo2=93, sbp=108, pulse=95, temp=38.5), 0.0, 0.0, Level.HIGH),
    ],
)
def test_clinical_level_is_the_worse_of_news2_now_and_predicted(inputs: Inputs, p5: float, p7: float,
                                                                 expected: Level) -> None:
    assert clinical_level(risk_of(inputs, p5, p7), S) is expected


def test_single_three_maps_to_a_configurable_level() -> None:
    r = risk_of(Inputs(rr=26))
    assert clinical_level(r, PolicySettings(single_three=Level.MEDIUM)) is Level.MEDIUM


def test_technical_conditions_no_data_and_poor_signal() -> None:
    twin = new_twin("p-1")
    assert technical_levels(twin, T0)[Condition.NO_DATA] is Level.MEDIUM
    for i in range(60):
        value = 0.0 if i % 3 else 72.0  # two thirds probe-off zeros
        twin, _ = step(twin, Reading("p-1", "w", Metric.HEART_RATE, value, T0 + i * 5000, i, 0.5), Position(0, i))
    now = T0 + 300_000
    levels = technical_levels(twin, now)
    assert levels[Condition.NO_DATA] is Level.NONE and levels[Condition.SIGNAL_QUALITY] is Level.LOW
    assert technical_levels(twin, now + 15 * 60_000)[Condition.NO_DATA] is Level.MEDIUM


def test_every_decision_records_when_it_was_made() -> None:
    state, _ = decide(PatientAlerts("p-1"), {C: Level.NONE}, T0 + 5_000, S)
    assert state.evaluated_at == T0 + 5_000
    later, _ = decide(state, {}, T0 + 1_000, S)  # a late decision never moves the clock back
    assert later.evaluated_at == T0 + 5_000


# --- confirmation of a clinical MEDIUM (confirm_medium_ms) ---------------------------------------------------------

CONFIRM = PolicySettings(persist_ms=30_000, clear_ms=600_000,
                         escalate_after_ms={Level.HIGH: 300_000, Level.MEDIUM: 900_000, Level.LOW: 3_600_000},
                         predicted_medium=0.6, predicted_high=0.6, confirm_medium_ms=600_000)


def run_confirm(levels: list[tuple[int, Level]], state: PatientAlerts | None = None,
                condition: Condition = C) -> tuple[PatientAlerts, list]:
    return run(levels, state, CONFIRM, condition)


def every_10s(start: int, stop: int, level: Level) -> list[tuple[int, Level]]:
    return [(t, level) for t in range(start, stop, 10_000)]


def test_a_clinical_medium_is_raised_at_low_after_persistence_and_at_medium_once_confirmed() -> None:
    state, events = run_confirm([(0, Level.MEDIUM), (29_999, Level.MEDIUM)])
    assert events == []  # persistence still holds for the LOW it is raised at
    state, events = run_confirm([(30_000, Level.MEDIUM)], state)
    assert kinds(events) == [(Kind.RAISED, Level.LOW, "clinical at LOW")]
    assert state.open[C].worse_since == T0  # the confirmation counts from when MEDIUM began
    state, events = run_confirm([(599_999, Level.MEDIUM)], state)
    assert events == [] and state.open[C].level is Level.LOW
    state, events = run_confirm([(600_000, Level.MEDIUM)], state)
    assert kinds(events) == [(Kind.ESCALATED, Level.MEDIUM, "worsened")]


def test_a_medium_that_eases_before_confirmation_never_becomes_medium() -> None:
    state, events = run_confirm([*every_10s(0, 590_000, Level.MEDIUM), (590_000, Level.NONE),
                                 *every_10s(600_000, 1_190_000, Level.MEDIUM)])
    # One LOW alert (the dip is inside the hysteresis), MEDIUM restarted its confirmation at 600 s: not yet.
    assert [(e.kind, e.level) for e in events] == [(Kind.RAISED, Level.LOW)]
    state, events = run_confirm([(1_200_000, Level.MEDIUM)], state)
    assert [(e.kind, e.level) for e in events] == [(Kind.ESCALATED, Level.MEDIUM)]


def test_confirmation_never_holds_back_high() -> None:
    # HIGH from the start: raised at HIGH after persistence, as without confirmation.
    _, events = run_confirm([(0, Level.HIGH), (29_999, Level.HIGH), (30_000, Level.HIGH)])
    assert kinds(events) == [(Kind.RAISED, Level.HIGH, "clinical at HIGH")]
    # MEDIUM for 5 min (raised at LOW), then HIGH: above LOW for longer than persistence, so escalated to HIGH at
    # the first HIGH, as an open LOW alert is without confirmation.
    state, events = run_confirm([*every_10s(0, 300_000, Level.MEDIUM)])
    assert [(e.kind, e.level) for e in events] == [(Kind.RAISED, Level.LOW)]
    state, events = run_confirm([(300_000, Level.HIGH)], state)
    assert kinds(events) == [(Kind.ESCALATED, Level.HIGH, "worsened")] and events[0].at == T0 + 300_000
    # An open LOW (single 3) that turns HIGH: 30 s of it, as always.
    state, _ = run_confirm([(0, Level.LOW), (30_000, Level.LOW)])
    state, events = run_confirm([(40_000, Level.HIGH), (69_999, Level.HIGH)], state)
    assert events == []
    state, events = run_confirm([(70_000, Level.HIGH)], state)
    assert kinds(events) == [(Kind.ESCALATED, Level.HIGH, "worsened")]
    # Pending MEDIUM that turns HIGH before anything was raised: raised at MEDIUM, not LOW.
    _, events = run_confirm([(0, Level.MEDIUM), (20_000, Level.HIGH), (30_000, Level.HIGH)])
    assert kinds(events) == [(Kind.RAISED, Level.MEDIUM, "clinical at MEDIUM")]


def test_a_single_three_is_raised_at_low_and_confirmation_only_delays_its_escalation_to_medium() -> None:
    state, events = run_confirm([(0, Level.LOW), (30_000, Level.LOW)])
    assert kinds(events) == [(Kind.RAISED, Level.LOW, "clinical at LOW")]
    state, events = run_confirm([*every_10s(40_000, 640_000, Level.MEDIUM)], state)
    assert events == []
    state, events = run_confirm([(640_000, Level.MEDIUM)], state)
    assert kinds(events) == [(Kind.ESCALATED, Level.MEDIUM, "worsened")]


def test_confirmation_is_for_the_clinical_condition_only_and_off_at_zero() -> None:
    _, events = run_confirm([(0, Level.MEDIUM), (30_000, Level.MEDIUM)], condition=Condition.NO_DATA)
    assert [(e.kind, e.level) for e in events] == [(Kind.RAISED, Level.MEDIUM)]
    assert PolicySettings().confirm_medium_ms == 0
    _, events = run([(0, Level.MEDIUM), (30_000, Level.MEDIUM)])
    assert [(e.kind, e.level) for e in events] == [(Kind.RAISED, Level.MEDIUM)]


def test_a_confirmation_shorter_than_persistence_is_persistence() -> None:
    short = PolicySettings(persist_ms=30_000, confirm_medium_ms=10_000)
    state, events = PatientAlerts("p-1"), []
    for t in (0, 29_999, 30_000):
        state, new = decide(state, {C: Level.MEDIUM}, T0 + t, short)
        events.extend(new)
    assert [(e.kind, e.level, e.at) for e in events] == [(Kind.RAISED, Level.MEDIUM, T0 + 30_000)]
