"""A patient's twin and the pure transition that folds one reading into it.

``step(twin, reading, position) -> (twin', outcome)`` has no I/O and no clock: the same readings in the same
order give bit-identical twins, which is what lets a worker, a restarted worker and ``twinmon replay`` agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from twin_state import kalman
from twin_state.catalogue import CATALOGUE, Metric, VitalSpec

MS_PER_MIN = 60_000.0
MIN_QUALITY = 0.05
"""Quality floor: a reading reported at quality 0 still carries a little information, never infinite noise."""
MOTION_SCALE_STEPS_PER_MIN = 60.0
"""Optical sensors' noise grows with movement: at this cadence the variance of a reading doubles."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated sensor reading, in the catalogue's canonical unit."""

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
    ARTEFACT = "artefact"
    """Valid message, but not a believable measurement of a person (probe off, motion spike)."""
    LATE = "late"
    """Measured before the vital's latest accepted reading; recorded and counted, not applied."""
    DUPLICATE = "duplicate"
    """The device already sent this sequence number (a gateway retransmission)."""
    REDELIVERED = "redelivered"
    """The log position was already applied to this twin (Kafka redelivery after a crash or rebalance)."""


@dataclass(frozen=True, slots=True)
class VitalState:
    filter: kalman.LevelTrend
    updated_at: int
    """Measured-at (epoch ms) of the last accepted reading; the filter's time."""
    accepted: int
    last_raw: float
    last_raw_at: int
    last_device: str


@dataclass(frozen=True, slots=True)
class DeviceState:
    seq: int
    measured_at: int


@dataclass(frozen=True, slots=True)
class Counts:
    applied: int = 0
    artefact: int = 0
    late: int = 0
    duplicate: int = 0

    def bump(self, outcome: Outcome) -> Counts:
        if outcome is Outcome.APPLIED:
            return replace(self, applied=self.applied + 1)
        if outcome is Outcome.ARTEFACT:
            return replace(self, artefact=self.artefact + 1)
        if outcome is Outcome.LATE:
            return replace(self, late=self.late + 1)
        if outcome is Outcome.DUPLICATE:
            return replace(self, duplicate=self.duplicate + 1)
        return self


@dataclass(frozen=True, slots=True)
class Twin:
    patient_id: str
    partition: int = -1
    offset: int = -1
    """Log position of the last reading folded in; anything at or before it is a redelivery."""
    vitals: Mapping[Metric, VitalState] = field(default_factory=dict)
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

    outcome, vitals, devices = _classify_and_apply(twin, reading)
    return (
        Twin(
            patient_id=twin.patient_id,
            partition=position.partition,
            offset=position.offset,
            vitals=vitals,
            devices=devices,
            counts=twin.counts.bump(outcome),
        ),
        outcome,
    )


def _classify_and_apply(
    twin: Twin, reading: Reading
) -> tuple[Outcome, Mapping[Metric, VitalState], Mapping[str, DeviceState]]:
    device = twin.devices.get(reading.device_id)
    # A lower sequence number with a later timestamp is a device that rebooted, not a retransmission.
    if device is not None and reading.seq <= device.seq and reading.measured_at <= device.measured_at:
        return Outcome.DUPLICATE, twin.vitals, twin.devices
    devices = dict(twin.devices)
    devices[reading.device_id] = DeviceState(reading.seq, reading.measured_at)

    spec = CATALOGUE[reading.metric]
    lo, hi = spec.plausible
    if not lo <= reading.value <= hi:
        return Outcome.ARTEFACT, twin.vitals, devices

    current = twin.vitals.get(reading.metric)
    r = measurement_variance(spec, reading.quality, _activity_level(twin))
    if current is None:
        filt = kalman.start(reading.value, r, spec.initial_trend_var)
        accepted = 1
    else:
        if reading.measured_at < current.updated_at:
            return Outcome.LATE, twin.vitals, devices
        dt = (reading.measured_at - current.updated_at) / MS_PER_MIN
        filt = kalman.step(current.filter, dt, reading.value, spec.process_noise, r)
        accepted = current.accepted + 1
    vitals = dict(twin.vitals)
    vitals[reading.metric] = VitalState(
        filter=filt,
        updated_at=reading.measured_at,
        accepted=accepted,
        last_raw=reading.value,
        last_raw_at=reading.measured_at,
        last_device=reading.device_id,
    )
    return Outcome.APPLIED, vitals, devices
