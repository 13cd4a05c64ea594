"""A patient's twin and the pure transition that folds one reading into it.

``step(twin, reading, position) -> (twin', outcome)`` has no I/O and no clock: the same readings in the same
order give bit-identical twins, which is what lets a worker, a restarted worker and ``twinmon replay`` agree.

What a reading does, in order:

1. already applied at this log position: nothing (``REDELIVERED``);
2. the device already sent this sequence number: counted (``DUPLICATE``);
3. a manual observation (ACVPU, oxygen): the latest by measured-at stands;
4. outside the vital's plausible range (probe-off zero, 277 bpm): counted (``IMPLAUSIBLE``);
5. measured before the vital's latest accepted reading: counted (``LATE``), see below;
6. the innovation test: normalised innovation squared above ``NIS_GATE`` is not believed at once
   (``INNOVATION``): the vital keeps it as *unconfirmed* (``VitalState.unconfirmed``), shown with its own NEWS2
   subscore, until the next reading confirms or refutes it;
7. a step: the ``SUSTAINED_RUN``-th (second) surprising reading in a row, on the same side and consistent with the
   first, is a real change whatever the cadence, and the filter restarts from their mean (``REINITIALISED``).
   "Surprising" is NIS above ``STEP_NIS`` (two SDs), so a step too small to be refused but too large for the
   filter's gain to follow (SpO2 97 -> 94.5 at 10 s, a cuff 15 minutes apart) is taken after two readings too;
8. otherwise the Kalman update (``APPLIED``), and the personal baseline moves a little.

Late readings: a filter cannot step backwards in time, and rewinding it would make every twin depend on
arrival order within a window. twinmon's policy is that a reading measured before the vital's latest
accepted reading is recorded (the ``late`` count, per vital in the data-quality share) and not applied.
Buffered uploads from one device arrive in their own order and are applied in full when no other device
has reported the same vital in the meantime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from twin_state import kalman
from twin_state.catalogue import (
    BASELINE_TAU_MIN,
    CATALOGUE,
    LOST_AFTER,
    NIS_GATE,
    OBSERVATIONS,
    QUALITY_TAU_MIN,
    SLOW,
    SLOW_CORRELATION_MIN,
    STEP_NIS,
    SUSTAINED_RUN,
    Metric,
    VitalSpec,
)

MS_PER_MIN = 60_000.0
MIN_QUALITY = 0.05
"""Quality floor: a reading reported at quality 0 still carries a little information, never infinite noise."""
MOTION_SCALE_STEPS_PER_MIN = 60.0
"""Optical sensors' noise grows with movement: at this cadence the variance of a reading doubles."""
RUN_CONSISTENCY_SD = 3.0
"""Rejected readings belong to one run when each is within this many reading SDs of the run's mean."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated sensor reading or manual observation, in the catalogue's canonical unit."""

    patient_id: str
    device_id: str
    metric: Metric
    value: float
    measured_at: int
    """Epoch milliseconds at which the device measured the value."""
    seq: int
    """The device's own sequence number; increases by one per reading, restarts when the device reboots."""
    quality: float | None = None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reading sits in its log (Kafka partition and offset, or a file's line number)."""

    partition: int
    offset: int


class Outcome(StrEnum):
    APPLIED = "applied"
    REINITIALISED = "reinitialised"
    """A run of consistent surprising readings was accepted as a real change; the filter restarted from it."""
    IMPLAUSIBLE = "implausible"
    """Valid message, but not a believable measurement of a person (probe off, motion spike)."""
    INNOVATION = "innovation"
    """Plausible in general, but too far from what the twin expects right now (failed the NIS test)."""
    LATE = "late"
    """Measured before the vital's latest accepted reading; recorded and counted, not applied."""
    DUPLICATE = "duplicate"
    """The device already sent this sequence number (a gateway retransmission)."""
    REDELIVERED = "redelivered"
    """The log position was already applied to this twin (Kafka redelivery after a crash or rebalance)."""


ACCEPTED = frozenset({Outcome.APPLIED, Outcome.REINITIALISED})


@dataclass(frozen=True, slots=True)
class VitalState:
    filter: kalman.LevelTrend
    updated_at: int
    """Measured-at (epoch ms) of the last accepted reading; the filter's time."""
    accepted: int
    last_raw: float
    last_raw_at: int
    last_device: str
    run: int = 0
    """Consecutive surprising readings (NIS above ``STEP_NIS``, refused or not) that agree with each other."""
    run_mean: float = 0.0
    baseline: float = 0.0
    """This patient's usual level: exponentially weighted over days (``BASELINE_TAU_MIN``)."""
    baseline_var: float = 0.0
    baseline_minutes: float = 0.0
    """How much data the baseline rests on."""
    streak: int = 0
    """Consecutive readings rejected by the innovation test, consistent or not."""
    slow: kalman.LevelTrend | None = None
    """The slow trend (``catalogue.SLOW``): hours-long drift, with minute-scale physiology counted as noise. None
    for vitals NEWS2 does not score, and for a twin stored before it existed until its next reading."""
    unconfirmed: float | None = None
    """The latest reading the innovation test refused, while no later reading has confirmed or refuted it: a
    plausible value the twin does not yet believe, which a person must still see (a first systolic of 85)."""
    unconfirmed_at: int = 0
    """Measured-at (epoch ms) of ``unconfirmed``."""
    run_ref: float = 0.0
    """The level the twin predicted when the run began: later readings of the run are surprising against it, not
    against a filter that the run's first (believed) reading has already pulled part of the way."""


@dataclass(frozen=True, slots=True)
class Quality:
    """Exponentially weighted (``QUALITY_TAU_MIN``) counts of valid and all readings of one vital."""

    valid: float
    total: float
    seen_at: int

    @property
    def valid_share(self) -> float:
        return self.valid / self.total if self.total > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Observation:
    value: float
    measured_at: int
    device_id: str


@dataclass(frozen=True, slots=True)
class DeviceState:
    seq: int
    measured_at: int


@dataclass(frozen=True, slots=True)
class Counts:
    applied: int = 0
    reinitialised: int = 0
    implausible: int = 0
    innovation: int = 0
    late: int = 0
    duplicate: int = 0

    def bump(self, outcome: Outcome) -> Counts:
        if outcome is Outcome.REDELIVERED:
            return self
        # Spelled out rather than dataclasses.replace: this runs for every reading, and replace() with
        # keyword unpacking was a tenth of the twin step's time.
        a, ri, im, inn, late, dup = (self.applied, self.reinitialised, self.implausible, self.innovation,
                                     self.late, self.duplicate)
        if outcome is Outcome.APPLIED:
            a += 1
        elif outcome is Outcome.REINITIALISED:
            ri += 1
        elif outcome is Outcome.IMPLAUSIBLE:
            im += 1
        elif outcome is Outcome.INNOVATION:
            inn += 1
        elif outcome is Outcome.LATE:
            late += 1
        else:
            dup += 1
        return Counts(a, ri, im, inn, late, dup)


@dataclass(frozen=True, slots=True)
class Twin:
    patient_id: str
    partition: int = -1
    offset: int = -1
    """Log position of the last reading folded in; anything at or before it is a redelivery."""
    vitals: Mapping[Metric, VitalState] = field(default_factory=dict)
    observations: Mapping[Metric, Observation] = field(default_factory=dict)
    quality: Mapping[Metric, Quality] = field(default_factory=dict)
    devices: Mapping[str, DeviceState] = field(default_factory=dict)
    counts: Counts = Counts()

    def already_applied(self, position: Position) -> bool:
        return position.partition == self.partition and position.offset <= self.offset


def new_twin(patient_id: str) -> Twin:
    return Twin(patient_id=patient_id)


def measurement_variance(spec: VitalSpec, quality: float | None, activity: float) -> float:
    """Variance of one reading given its reported signal quality and, for optical sensors, movement."""
    r = spec.measurement_noise / max(quality if quality is not None else 1.0, MIN_QUALITY)
    if spec.motion_sensitive and activity > 0.0:
        r *= 1.0 + activity / MOTION_SCALE_STEPS_PER_MIN
    return r


def _activity_level(twin: Twin) -> float:
    act = twin.vitals.get(Metric.ACTIVITY)
    return max(act.filter.level, 0.0) if act is not None else 0.0


def step(twin: Twin, reading: Reading, position: Position) -> tuple[Twin, Outcome]:
    """Fold ``reading`` (found at ``position`` in its log) into ``twin``."""
    if twin.already_applied(position):
        return twin, Outcome.REDELIVERED

    device = twin.devices.get(reading.device_id)
    # A lower sequence number with a later timestamp is a device that rebooted, not a retransmission.
    if device is not None and reading.seq <= device.seq and reading.measured_at <= device.measured_at:
        return replace(twin, partition=position.partition, offset=position.offset,
                       counts=twin.counts.bump(Outcome.DUPLICATE)), Outcome.DUPLICATE
    devices = dict(twin.devices)
    devices[reading.device_id] = DeviceState(reading.seq, reading.measured_at)

    vitals, observations = twin.vitals, twin.observations
    if reading.metric in OBSERVATIONS:
        outcome, observations = _observe(twin, reading)
    else:
        outcome, vital = _filter(twin, reading)
        if vital is not None:
            vitals = {**twin.vitals, reading.metric: vital}
    return (
        Twin(
            patient_id=twin.patient_id,
            partition=position.partition,
            offset=position.offset,
            vitals=vitals,
            observations=observations,
            quality={**twin.quality, reading.metric: _quality(twin.quality.get(reading.metric), reading, outcome)},
            devices=devices,
            counts=twin.counts.bump(outcome),
        ),
        outcome,
    )


def _observe(twin: Twin, reading: Reading) -> tuple[Outcome, Mapping[Metric, Observation]]:
    current = twin.observations.get(reading.metric)
    if current is not None and reading.measured_at < current.measured_at:
        return Outcome.LATE, twin.observations
    obs = Observation(reading.value, reading.measured_at, reading.device_id)
    return Outcome.APPLIED, {**twin.observations, reading.metric: obs}


def _quality(q: Quality | None, reading: Reading, outcome: Outcome) -> Quality:
    valid = 1.0 if outcome in ACCEPTED else 0.0
    if q is None:
        return Quality(valid, 1.0, reading.measured_at)
    dt = reading.measured_at - q.seen_at
    decay = math.exp(-dt / MS_PER_MIN / QUALITY_TAU_MIN) if dt > 0 else 1.0
    return Quality(q.valid * decay + valid, q.total * decay + 1.0, max(q.seen_at, reading.measured_at))


def _filter(twin: Twin, reading: Reading) -> tuple[Outcome, VitalState | None]:
    """The Kalman step with artefact gating. Returns the new vital state, or None when it is unchanged."""
    spec = CATALOGUE[reading.metric]
    lo, hi = spec.plausible
    z = reading.value
    if not lo <= z <= hi:  # also false for NaN
        return Outcome.IMPLAUSIBLE, None

    current = twin.vitals.get(reading.metric)
    r = measurement_variance(spec, reading.quality, _activity_level(twin))
    t = reading.measured_at
    if current is None:
        filt = kalman.start(z, r, spec.initial_trend_var)
        return Outcome.APPLIED, VitalState(filt, t, 1, z, t, reading.device_id, baseline=z,
                                           slow=slow_step(reading.metric, None, 0.0, z, r))
    if t < current.updated_at:
        return Outcome.LATE, None

    dt = (t - current.updated_at) / MS_PER_MIN
    predicted = kalman.predict(current.filter, dt, spec.process_noise, spec.level_noise)
    y, s = kalman.innovation(predicted, z, r)
    refused = y * y > NIS_GATE * s
    run, run_mean, run_ref = 0, 0.0, 0.0
    if current.run > 0:
        # Two readings of one value differ with variance 2r: that is the width of "consistent". The run stays on one
        # side of where it began, so two surprises either side of the twin do not average into a step to nowhere.
        d = z - current.run_ref
        if (d * d > STEP_NIS * s and (d > 0.0) == (current.run_mean > current.run_ref)
                and abs(z - current.run_mean) <= RUN_CONSISTENCY_SD * math.sqrt(2.0 * r)):
            run = current.run + 1
            run_mean = current.run_mean + (z - current.run_mean) / run
            run_ref = current.run_ref
    if run == 0 and y * y > STEP_NIS * s:
        run, run_mean, run_ref = 1, z, predicted.level
    streak = current.streak + 1 if refused else 0
    slow = slow_step(reading.metric, current.slow, dt, z, r)
    if run >= SUSTAINED_RUN or streak >= LOST_AFTER:
        # A real change (a rise in heart rate on standing, a fall in pressure): restart from it rather than crawl
        # towards it. Or the twin itself is lost (it believed one wrong reading after a gap, or two devices
        # disagree): every reading for a while has been refused, so restart from the latest consistent ones (a
        # refused reading always starts or continues a run). The baseline, which is about days, is kept.
        filt = kalman.start(run_mean, r, spec.initial_trend_var)
        return Outcome.REINITIALISED, _accepted(current, filt, dt, t, z, reading.device_id, slow)
    if refused:
        return Outcome.INNOVATION, replace(current, run=run, run_mean=run_mean, run_ref=run_ref, streak=streak,
                                           unconfirmed=z, unconfirmed_at=t)
    accepted = _accepted(current, kalman.update(predicted, z, r), dt, t, z, reading.device_id, slow)
    if run:
        # Believed, and remembered as the possible first reading of a step.
        return Outcome.APPLIED, replace(accepted, run=run, run_mean=run_mean, run_ref=run_ref)
    return Outcome.APPLIED, accepted


def slow_step(metric: Metric, slow: kalman.LevelTrend | None, dt: float, z: float, r: float
              ) -> kalman.LevelTrend | None:
    """Fold an accepted reading ``z`` (sensor variance ``r``, ``dt`` minutes after the vital's previous one) into
    the slow filter. The physiological part of the reading's variance grows as readings crowd together
    (``natural x SLOW_CORRELATION_MIN / dt``), so a device reading every 2 s tells it no more than one every 30 s."""
    spec = SLOW.get(metric)
    if spec is None:
        return None
    r_slow = r + spec.natural * SLOW_CORRELATION_MIN / max(dt, SLOW_CORRELATION_MIN / 100.0)
    if slow is None:
        return kalman.start(z, r + spec.natural, spec.initial_trend_var)
    return kalman.step(slow, dt, z, spec.q, r_slow)


def _accepted(
    current: VitalState, filt: kalman.LevelTrend, dt: float, t: int, z: float, device: str,
    slow: kalman.LevelTrend | None,
) -> VitalState:
    a = -math.expm1(-dt / BASELINE_TAU_MIN)
    dev = filt.level - current.baseline
    return VitalState(
        filter=filt,
        updated_at=t,
        accepted=current.accepted + 1,
        last_raw=z,
        last_raw_at=t,
        last_device=device,
        run=0,
        run_mean=0.0,
        baseline=current.baseline + a * dev,
        baseline_var=(1.0 - a) * (current.baseline_var + a * dev * dev),
        baseline_minutes=current.baseline_minutes + dt,
        slow=slow,
    )
