"""What deserves a care team's attention: the alert policy as a pure state machine.

``decide(state, levels, now_ms, settings) -> (state', events)`` takes a patient's alert state and the level
each condition is at now, and returns the new state and the lifecycle events to publish. ``acknowledge``
and ``resolve`` are the people's transitions. No clock, no I/O: the same inputs give the same events with
the same ids, so a replayed batch republishes identical events (consumers de-duplicate by ``event_id``).

Rules, per condition (``clinical``: NEWS2 now and predicted; ``unconfirmed``: a refused reading that scores 3 and
must be re-measured; technical ``no_data`` and ``signal_quality``):

* **persistence**: a level must hold for ``persist_ms`` before it is raised (a single bad minute is not an
  alert), and a worse level must hold as long before the alert is escalated to it;
* **confirmation** (clinical MEDIUM only, ``confirm_medium_ms``; 0 = off): a clinical MEDIUM must hold that long
  before the alert is raised at, or escalated to, MEDIUM; until then it is raised at LOW after ``persist_ms``
  (nothing goes silent, and LOW is what the policy gives a single parameter scoring 3). HIGH is never held back: a
  level that reaches HIGH is raised (at the level that has persisted) or escalated after ``persist_ms`` as always;
* **exertion hold** (clinical only, ``exertion_hold_max_ms``; 0 = off): NEWS2 is defined at rest. While the
  patient exerts (``Exertion.active``: the twin's activity level at or above ``exertion_activity`` steps/min, from a
  fresh reading) and for ``exertion_recovery_ms`` after the last evaluation that saw it, a clinical MEDIUM or HIGH is
  raised at LOW after ``persist_ms`` (reason "held: exertion ...") and an open alert is not escalated meanwhile;
  never for longer than ``exertion_hold_max_ms`` from when the level was first reached, after which it is raised
  or escalated whatever the activity. The escalation at the end of a hold says so, not ``worsened`` (reason
  "exertion hold ended (cap reached)" or "(rest)", ``hold_end``). Never held: SpO2 scoring 3 or consciousness not alert
  (``Exertion.never_held``), and no other condition;
* **one open alert per patient and condition** (de-duplication): while it is open, the condition only
  escalates it or clears it;
* **re-alert on worsening**: an open alert whose condition reaches a higher level is escalated (``worsened``);
* **escalation when unacknowledged**: an open alert nobody acknowledged within ``escalate_after_ms`` of its
  level (or of its last escalation) is escalated again (``unacknowledged``), once per period, unless its
  condition has cleared and the alert is only waiting out its hysteresis;
* **hysteresis**: an alert resolves by itself only after its condition has been below the alerting level
  for ``clear_ms`` (``condition_cleared``); a level that drops and comes back within that time changes nothing;
* **people**: acknowledge (stops unacknowledged escalation), resolve with a reason (closes it; if the
  condition persists it is raised anew after ``persist_ms``);
* **re-measure prompts** (``unconfirmed``) are about one reading, not a state that could flicker: raised at once,
  and resolved as soon as the next reading of that vital confirms or refutes it (no persistence, no hysteresis).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum, StrEnum

from twin_state.catalogue import Metric
from twin_state.clock import MAX_AHEAD_MS
from twin_state.errors import TwinmonError
from twin_state.news2 import Param, RiskBand, assumed_text
from twin_state.risk import Risk, Unconfirmed
from twin_state.twin import Twin


class Level(IntEnum):
    """Alarm priorities in the sense of IEC 60601-1-8."""

    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


class Condition(StrEnum):
    CLINICAL = "clinical"
    NO_DATA = "no_data"
    SIGNAL_QUALITY = "signal_quality"
    UNCONFIRMED = "unconfirmed"
    """A plausible reading the twin refused (``twin_state.twin.VitalState.unconfirmed``) scores 3 on its own."""


class Kind(StrEnum):
    RAISED = "raised"
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class PolicySettings:
    persist_ms: int = 30_000
    clear_ms: int = 10 * 60_000
    escalate_after_ms: Mapping[Level, int] = field(
        default_factory=lambda: {Level.HIGH: 5 * 60_000, Level.MEDIUM: 15 * 60_000, Level.LOW: 60 * 60_000}
    )
    single_three: Level = Level.LOW
    """Level for NEWS2's low-medium band (a single parameter scoring 3); some trusts use MEDIUM."""
    # The two thresholds below (0.6 before) were tuned with `twinmon evaluate` together with
    # catalogue.TREND_PERSISTENCE_MIN, on simulated tuning cohorts (seeds 11-14: 280 patients x 24 h, 214
    # patient-days free of deterioration, 88 episodes): among trend persistence 3-5 min, thresholds 0.6-0.8 and
    # persistence 30-60 s, the rule "at most 0.15 false alerts per patient-day and sensitivity >= 0.95, then the
    # best median lead time" chose 0.7 with 30 s: 0.10 false alerts per patient-day, every episode detected
    # (0.6: 0.28; 0.8: 0.07 and 4.5 min later). Persistence (30 s) and hysteresis (10 min) were kept.
    predicted_medium: float = 0.7
    """P(NEWS2 reaches 5 within ``predicted_horizon_min``) at or above which the patient is at MEDIUM."""
    predicted_high: float = 0.7
    """P(NEWS2 reaches 7 within ``predicted_horizon_min``) at or above which the patient is at HIGH."""
    predicted_horizon_min: float = 60.0
    # Chosen with `twinmon evaluate` on the simulated cohort's seed 1 (100 patients x 24 h; seed 2 held out) by the
    # rule "false alerts <= 0.2 per patient-day, then the best median lead time vs raw NEWS2": 3.5 kept them at
    # 0.185 (as without the rule) and moved the lead from -11.5 to +1.5 min; 3.0 gave +3.7 min and 0.222.
    drift_medium: float = 3.5
    """Joint drift score (``twin_state.risk.Risk.drift``) at or above which the patient is at MEDIUM; 0 = not used."""
    confirm_medium_ms: int = 0
    """How long a clinical MEDIUM must hold before the alert is raised at or escalated to MEDIUM (at least
    ``persist_ms``); raised at LOW meanwhile. 0 = no confirmation beyond ``persist_ms``. Never delays HIGH."""
    unconfirmed_level: Level = Level.MEDIUM
    """Level of the "unconfirmed: re-measure" prompt: a single reading scoring 3 that the twin has not believed yet
    (a cuff's first systolic of 85) needs someone at the bedside now, before a second reading confirms it."""
    unconfirmed_min_gap_ms: int = 60_000
    """The prompt is for vitals measured this far apart or more (cuffs, spot checks, a sensor back after a gap). A
    wearable reading every few seconds re-measures by itself: its next reading confirms the change (and NEWS2 shows
    it) or refutes it (a motion spike of 180 bpm) before anyone could reach the bed."""
    exertion_hold_max_ms: int = 0
    """Longest a clinical MEDIUM or HIGH is shown at LOW because the patient exerts, from when the level was first
    reached (module docstring); 0 = no exertion hold."""
    exertion_activity: float = 60.0
    """Activity level (steps/min, ``twin_state.risk.Risk.activity``) at or above which the patient exerts: between
    pottering about (~35) and walking (~105)."""
    exertion_recovery_ms: int = 10 * 60_000
    """How long after the last evaluation that saw exertion the hold still applies (heart and breathing rate
    settle over minutes)."""


@dataclass(frozen=True, slots=True)
class Exertion:
    """What the exertion hold needs to know at one evaluation (``exertion_of``)."""

    active: bool
    """The patient exerts now: activity at or above ``exertion_activity`` from a fresh reading."""
    never_held: bool = False
    """SpO2 scores 3 or consciousness is not alert: no exertion explains it, the alert is never held."""


@dataclass(frozen=True, slots=True)
class AlertEvent:
    event_id: str
    alert_id: str
    patient_id: str
    kind: Kind
    condition: Condition
    level: Level
    at: int
    """Event time (epoch ms) of the decision."""
    reason: str
    user: str | None = None


@dataclass(frozen=True, slots=True)
class OpenAlert:
    alert_id: str
    condition: Condition
    level: Level
    raised_at: int
    escalated_at: int
    """When the level last changed or the alert was last escalated: the unacknowledged clock starts here."""
    events: int
    """How many events this alert has produced; numbers the next one's id."""
    acknowledged_by: str | None = None
    acknowledged_at: int | None = None
    worse_since: int | None = None
    """Since when the condition has been above the alert's level (pending escalation)."""
    clear_since: int | None = None
    """Since when the condition has been below the alerting level (pending auto-resolution)."""
    held_level: Level = Level.NONE
    """The highest level the exertion hold has kept this alert from (NONE: nothing held): it is escalated to it when
    the hold ends, whatever the condition does meanwhile, as it would have been without the hold."""
    held_since: int | None = None
    """When the level the hold keeps back was first reached: the hold's cap counts from here, dips or not."""


@dataclass(frozen=True, slots=True)
class Pending:
    level: Level
    """The lowest level seen since ``since``: what has persisted."""
    since: int


@dataclass(frozen=True, slots=True)
class PatientAlerts:
    patient_id: str
    open: Mapping[Condition, OpenAlert] = field(default_factory=dict)
    pending: Mapping[Condition, Pending] = field(default_factory=dict)
    evaluated_at: int = 0
    """Event time of the last evaluation; the worker evaluates at most every few seconds of event time, and
    keeping this with the state makes a restarted worker evaluate at the same moments as before."""
    policy_id: str | None = None
    """Id of the policy file whose thresholds evaluate this patient (``alerts.config.policy_id``); None in
    states written before it was kept."""
    exertion_at: int | None = None
    """Event time of the last evaluation that saw exertion (kept only with the exertion hold on): the recovery
    window runs from here."""


def _now_level(band: RiskBand, settings: PolicySettings) -> Level:
    # An incomplete score raises nothing by itself: the vitals it lacks are the no-data alert's business, and
    # what was measured scores below every response threshold.
    return {RiskBand.HIGH: Level.HIGH, RiskBand.MEDIUM: Level.MEDIUM, RiskBand.LOW_MEDIUM: settings.single_three,
            RiskBand.LOW: Level.NONE, RiskBand.INCOMPLETE: Level.NONE}[band]


def _drifting(risk: Risk, settings: PolicySettings) -> bool:
    return settings.drift_medium > 0 and risk.drift is not None and risk.drift >= settings.drift_medium


def clinical_level(risk: Risk, settings: PolicySettings) -> Level:
    """Current NEWS2 band, or predicted deterioration if that is worse. Prediction never lowers a level."""
    now = _now_level(risk.now.risk, settings)
    h = settings.predicted_horizon_min
    predicted = Level.NONE
    if risk.p(7, h) >= settings.predicted_high:
        predicted = Level.HIGH
    elif risk.p(5, h) >= settings.predicted_medium or _drifting(risk, settings):
        predicted = Level.MEDIUM
    return max(now, predicted)


def clinical_reason(risk: Risk, settings: PolicySettings) -> str:
    """What the clinical level rests on, in words, for the alert's reason: NEWS2 now (and what it lacks), the
    prediction or drift that raised it, and what was assumed ("NEWS2 5, assumed: consciousness alert, air")."""
    s = risk.now
    parts = [f"NEWS2 {s.total}" + (f" partial, missing {' '.join(p.value for p in s.missing)}" if s.missing else "")]
    h = settings.predicted_horizon_min
    if risk.p(7, h) >= settings.predicted_high and s.total < 7:
        parts.append(f"risk score NEWS2 >= 7 in {h:g} min {risk.p(7, h):.2f}")
    elif risk.p(5, h) >= settings.predicted_medium and s.total < 5:
        parts.append(f"risk score NEWS2 >= 5 in {h:g} min {risk.p(5, h):.2f}")
    if _drifting(risk, settings) and risk.drift is not None:
        parts.append(f"drift {risk.drift:.1f}")
    if risk.assumed:
        parts.append(f"assumed: {assumed_text(risk.assumed)}")
    return ", ".join(parts)


def reason_head(reason: str) -> str:
    """A lifecycle reason without the condition's detail ``decide`` appends ("worsened: NEWS2 7" -> "worsened")."""
    return reason.split(": ", 1)[0]


def unconfirmed_level(risk: Risk, settings: PolicySettings) -> Level:
    """``unconfirmed_level`` while any scored vital's unconfirmed reading scores 3 and that vital is measured at least
    ``unconfirmed_min_gap_ms`` apart, else none."""
    due = any(_prompts(u, settings) for u in risk.unconfirmed.values())
    return settings.unconfirmed_level if due else Level.NONE


def _prompts(u: Unconfirmed, settings: PolicySettings) -> bool:
    return u.subscore == 3 and u.gap_ms >= settings.unconfirmed_min_gap_ms


def unconfirmed_reason(risk: Risk, settings: PolicySettings) -> str:
    """The prompt's text: which readings to re-measure, and what each scores."""
    parts = [f"{p.value} {u.value:g} scores {u.subscore}" for p, u in sorted(risk.unconfirmed.items())
             if _prompts(u, settings)]
    return "unconfirmed: re-measure (" + ", ".join(parts) + ")"


_IMMEDIATE = frozenset({Condition.UNCONFIRMED})
"""Conditions raised without persistence and resolved without hysteresis."""


def _confirming(condition: Condition, level: Level, held_ms: int, settings: PolicySettings) -> bool:
    """A clinical MEDIUM that has not yet held ``confirm_medium_ms``: not raised or escalated to MEDIUM yet."""
    return (condition is Condition.CLINICAL and level is Level.MEDIUM and settings.confirm_medium_ms > 0
            and held_ms < settings.confirm_medium_ms)


def never_held(risk: Risk) -> bool:
    """SpO2 scores 3 (hypoxia) or consciousness is not alert: never explained by exertion."""
    sub = risk.now.subscores
    return sub.get(Param.SPO2) == 3 or (sub.get(Param.ACVPU) or 0) > 0


def exertion_of(risk: Risk, settings: PolicySettings) -> Exertion:
    """The exertion hold's inputs from a risk: activity (None when stale) against ``exertion_activity``."""
    a = risk.activity
    return Exertion(a is not None and a >= settings.exertion_activity, never_held(risk))


def _holding(state: PatientAlerts, exertion: Exertion | None, now_ms: int, since: int,
             settings: PolicySettings) -> bool:
    """The exertion hold applies now to a clinical level first reached at ``since``."""
    if settings.exertion_hold_max_ms <= 0 or exertion is None or exertion.never_held:
        return False
    if now_ms - since >= settings.exertion_hold_max_ms:
        return False
    return exertion.active or (state.exertion_at is not None
                               and now_ms - state.exertion_at <= settings.exertion_recovery_ms)


HELD_EXERTION = "held: exertion"
"""Head of the reason of a clinical alert raised at LOW by the exertion hold."""
HOLD_ENDED = "exertion hold ended"
"""Head of the reason of the escalation, at the end of an exertion hold, to the level it kept back (``hold_end``):
not a worsening, and not ``worsened``."""


def hold_end(exertion: Exertion | None, now_ms: int, since: int, settings: PolicySettings) -> str:
    """Why the exertion hold of a level first reached at ``since`` no longer applies, as an escalation's
    machine-readable head: "exertion hold ended (cap reached)", "(rest)" (the recovery window is over), "(SpO2 3 or
    not alert)" (never held) or "(off)" (no hold, or no exertion known)."""
    if exertion is not None and exertion.never_held:
        why = "SpO2 3 or not alert"
    elif settings.exertion_hold_max_ms <= 0 or exertion is None:
        why = "off"
    elif now_ms - since >= settings.exertion_hold_max_ms:
        why = "cap reached"
    else:
        why = "rest"
    return f"{HOLD_ENDED} ({why})"


def _id(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=12).hexdigest()


def _event(alert: OpenAlert, pid: str, kind: Kind, level: Level, at: int, reason: str,
           user: str | None = None) -> AlertEvent:
    return AlertEvent(_id(alert.alert_id, alert.events), alert.alert_id, pid, kind, alert.condition, level, at,
                      reason, user)


def decide(
    state: PatientAlerts, levels: Mapping[Condition, Level], now_ms: int, settings: PolicySettings = PolicySettings(),
    reasons: Mapping[Condition, str] | None = None, exertion: Exertion | None = None,
) -> tuple[PatientAlerts, list[AlertEvent]]:
    """Advance every condition given in ``levels`` to ``now_ms``. Conditions not given are left as they are.
    ``reasons``: what each condition's level rests on, in words: a raised event's reason is that text (by default
    "<condition> at <LEVEL>"); an escalation's reason is the machine-readable ``worsened``, ``unacknowledged`` or,
    at the end of an exertion hold, ``hold_end``'s "exertion hold ended (...)", followed by ": " and that text
    (``reason_head`` strips it). Event ids never depend on it. ``exertion``: the exertion hold's inputs
    (``exertion_of``); None = no exertion known (nothing held)."""
    pid = state.patient_id
    if settings.exertion_hold_max_ms > 0 and exertion is not None and exertion.active:
        state = replace(state, exertion_at=max(now_ms, state.exertion_at or now_ms))

    def why(condition: Condition, reason: str) -> str:
        detail = reasons.get(condition) if reasons else None
        return f"{reason}: {detail}" if detail else reason

    opened = dict(state.open)
    pending = dict(state.pending)
    events: list[AlertEvent] = []
    for condition, level in levels.items():
        alert = opened.get(condition)
        if alert is None:
            p = pending.get(condition)
            if level is Level.NONE:
                pending.pop(condition, None)
                continue
            p = Pending(level, now_ms) if p is None else Pending(min(p.level, level), p.since)
            if condition not in _IMMEDIATE and now_ms - p.since < settings.persist_ms:
                pending[condition] = p
                continue
            pending.pop(condition, None)
            alert_id = _id(pid, condition.value, p.since)
            raised, worse_since = p.level, None
            if level is not Level.HIGH and _confirming(condition, p.level, now_ms - p.since, settings):
                # Raised at LOW; escalated to MEDIUM once MEDIUM has held confirm_medium_ms since p.since.
                raised, worse_since = Level.LOW, p.since
            text = (reasons or {}).get(condition)
            held_level, held_since = Level.NONE, None
            if (condition is Condition.CLINICAL and raised > Level.LOW
                    and _holding(state, exertion, now_ms, p.since, settings)):
                # Raised at LOW; escalated to what it kept back once the hold ends (recovered, or
                # exertion_hold_max_ms since p.since).
                raised, worse_since, held_level, held_since = Level.LOW, p.since, raised, p.since
                text = f"{HELD_EXERTION} (at most {settings.exertion_hold_max_ms // 60_000} min)" + (
                    f", {text}" if text else "")
            alert = OpenAlert(alert_id, condition, raised, now_ms, now_ms, 0, worse_since=worse_since,
                              held_level=held_level, held_since=held_since)
            events.append(_event(alert, pid, Kind.RAISED, raised, now_ms,
                                 text or f"{condition.value} at {raised.name}"))
            opened[condition] = replace(alert, events=1)
            continue

        # An open alert: clear, worsen, or wait for someone. It keeps its level while the condition eases
        # without clearing: a patient who was at HIGH minutes ago is not reassuring at MEDIUM.
        hold_from = alert.held_since if alert.held_since is not None else now_ms
        if alert.held_level > alert.level and not _holding(state, exertion, now_ms, hold_from, settings):
            # The exertion hold has ended (recovered, or its cap): what it kept back is shown now.
            alert = replace(alert, level=alert.held_level, escalated_at=now_ms, held_level=Level.NONE,
                            held_since=None, worse_since=None if level <= alert.held_level else alert.worse_since)
            events.append(_event(alert, pid, Kind.ESCALATED, alert.level, now_ms,
                                 why(condition, hold_end(exertion, now_ms, hold_from, settings))))
            alert = replace(alert, events=alert.events + 1)
        if level is Level.NONE:
            since = alert.clear_since if alert.clear_since is not None else now_ms
            if condition in _IMMEDIATE or now_ms - since >= settings.clear_ms:
                events.append(_event(alert, pid, Kind.RESOLVED, alert.level, now_ms, "condition_cleared"))
                del opened[condition]
                continue
            alert = replace(alert, clear_since=since, worse_since=None)
        elif level > alert.level:
            since = alert.worse_since if alert.worse_since is not None else now_ms
            alert = replace(alert, clear_since=None, worse_since=since)
            held = now_ms - since
            due_now = condition in _IMMEDIATE or (held >= settings.persist_ms
                                                  and not _confirming(condition, level, held, settings))
            start = alert.held_since if alert.held_since is not None else since
            if due_now and condition is Condition.CLINICAL and _holding(state, exertion, now_ms, start, settings):
                # Kept back by the exertion hold: remembered, and shown when the hold ends.
                alert = replace(alert, held_level=max(alert.held_level, level), held_since=start)
            elif due_now:
                alert = replace(alert, level=level, escalated_at=now_ms, worse_since=None,
                                held_level=Level.NONE, held_since=None)
                events.append(_event(alert, pid, Kind.ESCALATED, level, now_ms, why(condition, "worsened")))
                alert = replace(alert, events=alert.events + 1)
        else:
            alert = replace(alert, clear_since=None, worse_since=None)

        due = settings.escalate_after_ms.get(alert.level)
        # A condition that has cleared and is waiting out its hysteresis is not worth waking anyone for.
        clearing = alert.clear_since is not None
        if alert.acknowledged_by is None and not clearing and due is not None and now_ms - alert.escalated_at >= due:
            alert = replace(alert, escalated_at=now_ms)
            events.append(_event(alert, pid, Kind.ESCALATED, alert.level, now_ms, why(condition, "unacknowledged")))
            alert = replace(alert, events=alert.events + 1)
        opened[condition] = alert
    return PatientAlerts(pid, opened, pending, max(state.evaluated_at, now_ms), state.policy_id,
                         state.exertion_at), events


@dataclass(frozen=True, slots=True)
class TechnicalSettings:
    no_data_after_ms: int = 15 * 60_000
    """No accepted reading of any vital for this long: the patient is not being monitored (MEDIUM)."""
    quality_floor: float = 0.5
    """Valid share of heart-rate or SpO2 readings over the last hour below this (LOW)."""
    quality_min_readings: float = 20.0
    """Weighted readings in the last hour before the share is judged."""


def technical_levels(twin: Twin, now_ms: int, settings: TechnicalSettings = TechnicalSettings()) -> dict[
        Condition, Level]:
    # A vital stamped beyond the allowance is not evidence that anyone is being monitored now.
    last = max((v.updated_at for v in twin.vitals.values() if v.updated_at <= now_ms + MAX_AHEAD_MS), default=None)
    no_data = last is None or now_ms - last >= settings.no_data_after_ms
    poor = any(
        q.total >= settings.quality_min_readings and q.valid_share < settings.quality_floor
        for m, q in twin.quality.items()
        if m in (Metric.HEART_RATE, Metric.SPO2)
    )
    return {
        Condition.NO_DATA: Level.MEDIUM if no_data else Level.NONE,
        Condition.SIGNAL_QUALITY: Level.LOW if poor and not no_data else Level.NONE,
    }


def repair(state: PatientAlerts, now_ms: int, allowance_ms: int = MAX_AHEAD_MS) -> PatientAlerts:
    """``state`` with every time more than ``allowance_ms`` after ``now_ms`` brought back, so that a state an older
    worker moved into the future (one reading stamped hours ahead) is evaluated again at once.

    ``evaluated_at`` goes to 0, which the worker reads as "never evaluated"; a pending condition restarts its
    persistence from ``now_ms``; an open alert keeps its id and level with its clocks at ``now_ms``. Returns
    ``state`` itself when nothing is ahead."""
    limit = now_ms + allowance_ms

    def back(t: int | None) -> int | None:
        return now_ms if t is not None and t > limit else t

    def fixed(a: OpenAlert) -> OpenAlert:
        return replace(a, raised_at=now_ms if a.raised_at > limit else a.raised_at,
                       escalated_at=now_ms if a.escalated_at > limit else a.escalated_at,
                       acknowledged_at=back(a.acknowledged_at), worse_since=back(a.worse_since),
                       clear_since=back(a.clear_since))

    ahead = state.evaluated_at > limit or any(p.since > limit for p in state.pending.values()) or any(
        fixed(a) != a for a in state.open.values())
    if not ahead:
        return state
    return PatientAlerts(
        state.patient_id,
        {c: fixed(a) for c, a in state.open.items()},
        {c: Pending(p.level, now_ms) if p.since > limit else p for c, p in state.pending.items()},
        0 if state.evaluated_at > limit else state.evaluated_at,
        exertion_at=back(state.exertion_at),
    )


class UnknownAlert(TwinmonError, LookupError):
    """No open alert with that id for this patient (already resolved, or never existed)."""


def _find(state: PatientAlerts, alert_id: str) -> OpenAlert:
    for alert in state.open.values():
        if alert.alert_id == alert_id:
            return alert
    raise UnknownAlert(alert_id)


def acknowledge(state: PatientAlerts, alert_id: str, user: str, now_ms: int) -> tuple[PatientAlerts, list[AlertEvent]]:
    alert = _find(state, alert_id)
    if alert.acknowledged_by is not None:
        return state, []  # acknowledging twice changes nothing and says nothing
    acked = replace(alert, acknowledged_by=user, acknowledged_at=now_ms)
    event = _event(acked, state.patient_id, Kind.ACKNOWLEDGED, alert.level, now_ms, "acknowledged", user)
    return replace(state, open={**state.open, alert.condition: replace(acked, events=alert.events + 1)}), [event]


def resolve(
    state: PatientAlerts, alert_id: str, user: str, reason: str, now_ms: int
) -> tuple[PatientAlerts, list[AlertEvent]]:
    if not reason.strip():
        raise ValueError("a resolution needs a reason")
    alert = _find(state, alert_id)
    event = _event(alert, state.patient_id, Kind.RESOLVED, alert.level, now_ms, reason.strip(), user)
    opened = {c: a for c, a in state.open.items() if c is not alert.condition}
    return replace(state, open=opened), [event]
