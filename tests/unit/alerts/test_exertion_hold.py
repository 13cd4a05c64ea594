"""The exertion hold: a clinical MEDIUM or HIGH while the patient exerts (and for a recovery window after) is raised
at LOW, never for longer than the cap from when the level was first reached; hypoxia, consciousness not alert and
technical conditions are never held; a stale activity reading is no exertion; off by default."""

from __future__ import annotations

from alerts import codec
from alerts.policy import (
    HELD_EXERTION,
    HOLD_ENDED,
    Condition,
    Exertion,
    Kind,
    Level,
    PatientAlerts,
    PolicySettings,
    decide,
    exertion_of,
    never_held,
    reason_head,
)
from twin_state.catalogue import Metric
from twin_state.news2 import Param, RiskBand, Score
from twin_state.risk import Risk, RiskSettings, activity_now
from twin_state.twin import Position, Reading, new_twin, step

C = Condition.CLINICAL
T0 = 1_000_000_000_000
CAP, RECOVERY, PERSIST = 600_000, 300_000, 30_000
HOLD = PolicySettings(persist_ms=PERSIST, exertion_hold_max_ms=CAP, exertion_activity=60.0,
                      exertion_recovery_ms=RECOVERY)
WALKING, RESTING, HYPOXIC = Exertion(True), Exertion(False), Exertion(True, never_held=True)
Step = tuple[int, Level, Exertion | None]


def run(steps: list[Step], state: PatientAlerts | None = None,
        settings: PolicySettings = HOLD, condition: Condition = C) -> tuple[PatientAlerts, list]:
    state = state or PatientAlerts("p-1")
    events = []
    for t, level, exertion in steps:
        state, new = decide(state, {condition: level}, T0 + t, settings, {condition: "NEWS2 6"}, exertion)
        events.extend(new)
    return state, events


def seen(events: list) -> list[tuple[Kind, Level, int]]:
    return [(e.kind, e.level, e.at - T0) for e in events]


def every_10s(start: int, stop: int, level: Level, exertion: Exertion | None) -> list[Step]:
    return [(t, level, exertion) for t in range(start, stop, 10_000)]


def _risk(activity: float | None, subscores: dict[Param, int] | None = None) -> Risk:
    return Risk(Score(6, subscores or {}, False, RiskBand.MEDIUM, ()), {}, {}, None, {}, activity)


def test_the_activity_threshold_is_inclusive_and_no_activity_is_no_exertion() -> None:
    assert exertion_of(_risk(60.0), HOLD).active
    assert not exertion_of(_risk(59.99), HOLD).active
    assert not exertion_of(_risk(None), HOLD).active  # stale or never measured


def test_a_stale_activity_reading_is_no_exertion() -> None:
    twin = new_twin("p-1")
    for i in range(12):
        twin, _ = step(twin, Reading("p-1", "w", Metric.ACTIVITY, 105.0, T0 + i * 5_000, i, 0.5), Position(0, i))
    last = T0 + 11 * 5_000
    limit = RiskSettings().stale_after_ms[Metric.ACTIVITY]
    level = activity_now(twin, last + limit)
    assert level is not None and level >= 60.0  # at the staleness limit the reading still counts
    assert activity_now(twin, last + limit + 1) is None
    assert activity_now(new_twin("p-2"), T0) is None


def test_hypoxia_and_consciousness_not_alert_are_never_held() -> None:
    assert never_held(_risk(105.0, {Param.SPO2: 3}))
    assert never_held(_risk(105.0, {Param.ACVPU: 3}))
    assert not never_held(_risk(105.0, {Param.SPO2: 2, Param.PULSE: 3, Param.RR: 3, Param.ACVPU: 0}))
    assert exertion_of(_risk(105.0, {Param.SPO2: 3}), HOLD) == HYPOXIC
    for level in (Level.MEDIUM, Level.HIGH):
        _, events = run([(0, level, HYPOXIC), (PERSIST, level, HYPOXIC)])
        assert seen(events) == [(Kind.RAISED, level, PERSIST)]


def test_technical_conditions_are_never_held() -> None:
    for condition in (Condition.NO_DATA, Condition.SIGNAL_QUALITY):
        _, events = run([(0, Level.MEDIUM, WALKING), (PERSIST, Level.MEDIUM, WALKING)], condition=condition)
        assert seen(events) == [(Kind.RAISED, Level.MEDIUM, PERSIST)]


def test_off_by_default_and_without_exertion_inputs() -> None:
    assert PolicySettings().exertion_hold_max_ms == 0
    _, events = run([(0, Level.HIGH, WALKING), (PERSIST, Level.HIGH, WALKING)], settings=PolicySettings())
    assert seen(events) == [(Kind.RAISED, Level.HIGH, PERSIST)]
    state, events = run([(0, Level.MEDIUM, None), (PERSIST, Level.MEDIUM, None)])
    assert seen(events) == [(Kind.RAISED, Level.MEDIUM, PERSIST)] and state.exertion_at is None


def test_held_at_low_after_persistence_and_raised_at_the_cap_whatever_the_activity() -> None:
    state, events = run([(0, Level.MEDIUM, WALKING), (PERSIST - 1, Level.MEDIUM, WALKING)])
    assert events == []  # persistence still holds for the LOW it is raised at
    state, events = run([(PERSIST, Level.MEDIUM, WALKING)], state)
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST)]
    assert events[0].reason.startswith(HELD_EXERTION) and events[0].reason.endswith("NEWS2 6")
    state, events = run([*every_10s(PERSIST + 10_000, CAP, Level.MEDIUM, WALKING), (CAP - 1, Level.MEDIUM, WALKING)],
                        state)
    assert events == []
    _, events = run([(CAP, Level.MEDIUM, WALKING)], state)
    assert seen(events) == [(Kind.ESCALATED, Level.MEDIUM, CAP)]
    assert events[0].reason == "exertion hold ended (cap reached): NEWS2 6"


def test_the_hold_lasts_the_recovery_window_after_exertion_ends() -> None:
    stop = 100_000  # last evaluation that saw exertion
    state, events = run([*every_10s(0, stop + 10_000, Level.MEDIUM, WALKING),
                         *every_10s(stop + 10_000, stop + RECOVERY, Level.MEDIUM, RESTING),
                         (stop + RECOVERY, Level.MEDIUM, RESTING)])
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST)] and state.exertion_at == T0 + stop
    _, events = run([(stop + RECOVERY + 1, Level.MEDIUM, RESTING)], state)
    assert seen(events) == [(Kind.ESCALATED, Level.MEDIUM, stop + RECOVERY + 1)]
    assert events[0].reason == "exertion hold ended (rest): NEWS2 6"


def test_exertion_just_before_the_level_holds_it_and_after_the_recovery_window_does_not() -> None:
    state, _ = run([(0, Level.NONE, WALKING)])
    _, events = run([(RECOVERY - PERSIST, Level.HIGH, RESTING), (RECOVERY, Level.HIGH, RESTING)], state)
    assert seen(events) == [(Kind.RAISED, Level.LOW, RECOVERY)]
    _, events = run([(RECOVERY + 1, Level.HIGH, RESTING), (RECOVERY + 1 + PERSIST, Level.HIGH, RESTING)], state)
    assert seen(events) == [(Kind.RAISED, Level.HIGH, RECOVERY + 1 + PERSIST)]


def test_a_deteriorating_patient_who_keeps_walking_is_alerted_at_the_cap_at_the_latest() -> None:
    steps = [*every_10s(0, 240_000, Level.MEDIUM, WALKING), *every_10s(240_000, CAP + 60_000, Level.HIGH, WALKING)]
    _, events = run(steps)
    # The cap counts from the first MEDIUM, not from HIGH: HIGH is shown at the cap, never later.
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.HIGH, CAP)]
    # An alert already open at MEDIUM is not escalated to HIGH for longer than the cap either.
    state, events = run([(0, Level.MEDIUM, RESTING), (PERSIST, Level.MEDIUM, RESTING)])
    assert seen(events) == [(Kind.RAISED, Level.MEDIUM, PERSIST)]
    _, events = run(every_10s(60_000, 60_000 + CAP + 10_000, Level.HIGH, WALKING), state)
    assert seen(events) == [(Kind.ESCALATED, Level.HIGH, 60_000 + CAP)]


def test_the_hold_and_the_medium_confirmation_each_keep_their_own_limit() -> None:
    both = PolicySettings(persist_ms=PERSIST, exertion_hold_max_ms=CAP, exertion_recovery_ms=RECOVERY,
                          confirm_medium_ms=2 * CAP)
    _, events = run(every_10s(0, 2 * CAP + 10_000, Level.MEDIUM, WALKING), settings=both)
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.MEDIUM, 2 * CAP)]
    _, events = run(every_10s(0, CAP + 10_000, Level.HIGH, WALKING), settings=both)
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.HIGH, CAP)]


def test_the_last_exertion_survives_the_stored_state() -> None:
    state, _ = run([(0, Level.NONE, WALKING)])
    assert codec.unpack(codec.pack(state)) == state and state.exertion_at == T0
    assert codec.unpack(codec.pack(PatientAlerts("p-1"))).exertion_at is None


def test_what_the_hold_kept_back_is_shown_at_its_end_even_if_the_level_eased_or_dipped() -> None:
    both = PolicySettings(persist_ms=PERSIST, exertion_hold_max_ms=CAP, exertion_recovery_ms=RECOVERY,
                          confirm_medium_ms=2 * CAP)
    # HIGH kept back, then easing to MEDIUM (which alone would wait for its confirmation): HIGH at the cap.
    steps = [*every_10s(0, 120_000, Level.HIGH, WALKING), *every_10s(120_000, CAP + 10_000, Level.MEDIUM, WALKING)]
    state, events = run(steps, settings=both)
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.HIGH, CAP)]
    assert state.open[C].held_level is Level.NONE and codec.unpack(codec.pack(state)) == state
    # A dip below the held level does not restart the cap.
    steps = [*every_10s(0, 200_000, Level.HIGH, WALKING), (200_000, Level.LOW, WALKING),
             *every_10s(210_000, CAP + 10_000, Level.HIGH, WALKING)]
    state, events = run(steps)
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.HIGH, CAP)]
    # Mid-hold, the stored state keeps what is held back.
    state, _ = run(every_10s(0, 100_000, Level.HIGH, WALKING))
    assert state.open[C].held_level is Level.HIGH and state.open[C].held_since == T0
    assert codec.unpack(codec.pack(state)) == state


def test_the_end_of_a_hold_says_why_and_a_real_worsening_still_says_worsened() -> None:
    # Held MEDIUM, shown once the recovery window is over: the end of the hold, not a worsening.
    steps = [*every_10s(0, 60_000, Level.MEDIUM, WALKING), *every_10s(60_000, 50_000 + RECOVERY, Level.MEDIUM, RESTING),
             (50_000 + RECOVERY + 1, Level.MEDIUM, RESTING)]
    state, events = run(steps)
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.MEDIUM, 50_000 + RECOVERY + 1)]
    assert reason_head(events[1].reason) == f"{HOLD_ENDED} (rest)"
    # At rest, it then reaches HIGH: a real worsening, escalated after persistence as "worsened".
    start = 50_000 + RECOVERY + 10_000
    _, events = run([(start, Level.HIGH, RESTING), (start + PERSIST, Level.HIGH, RESTING)], state)
    assert seen(events) == [(Kind.ESCALATED, Level.HIGH, start + PERSIST)]
    assert events[0].reason == "worsened: NEWS2 6"
    # Without any hold, an open MEDIUM reaching HIGH says "worsened" too.
    _, events = run([(0, Level.MEDIUM, RESTING), (PERSIST, Level.MEDIUM, RESTING), (60_000, Level.HIGH, RESTING),
                     (60_000 + PERSIST, Level.HIGH, RESTING)])
    assert [e.reason for e in events] == ["NEWS2 6", "worsened: NEWS2 6"]
    # Hypoxia during a hold ends it at once, and says so.
    _, events = run([(0, Level.MEDIUM, WALKING), (PERSIST, Level.MEDIUM, WALKING), (60_000, Level.MEDIUM, HYPOXIC)])
    assert seen(events) == [(Kind.RAISED, Level.LOW, PERSIST), (Kind.ESCALATED, Level.MEDIUM, 60_000)]
    assert events[1].reason == "exertion hold ended (SpO2 3 or not alert): NEWS2 6"

