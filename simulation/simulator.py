"""Simulated wearable patients: realistic enough to exercise the twin, the risk model and the alert policy.

Each patient wears a wrist band (optical heart rate, SpO2, step cadence), a chest patch (heart rate,
respiratory rate, temperature) and an automatic cuff (blood pressure every 15 minutes at ``rate=1``).
Their physiology follows a personal baseline, a circadian rhythm and bouts of activity; sensors add noise,
lower their quality under movement, emit motion artefacts and probe-off zeros, drop out, and sometimes
buffer readings and upload them late. A configurable share of patients deteriorate (a sepsis-like drift:
heart and breathing rates up, saturation, blood pressure down, fever) from a random onset.

The generator is pure and seeded: the same arguments give the same readings, in the same order.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from twin_state.catalogue import Metric
from twin_state.twin import Reading

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Stream:
    device: str
    metric: Metric
    period_s: float


# Base cadences; together about 0.55 readings per second per patient, scaled to the requested rate.
STREAMS: tuple[Stream, ...] = (
    Stream("wrist", Metric.HEART_RATE, 5.0),
    Stream("wrist", Metric.SPO2, 10.0),
    Stream("wrist", Metric.ACTIVITY, 15.0),
    Stream("patch", Metric.HEART_RATE, 10.0),
    Stream("patch", Metric.RESP_RATE, 15.0),
    Stream("patch", Metric.TEMPERATURE, 60.0),
    Stream("cuff", Metric.BP_SYSTOLIC, 900.0),
    Stream("cuff", Metric.BP_DIASTOLIC, 900.0),
)
BASE_RATE = sum(1.0 / s.period_s for s in STREAMS)

ACTIVITY_CADENCE = (0.0, 35.0, 105.0)  # resting, pottering about, walking (steps/min)
ACTIVITY_TRANSITIONS = ((0.90, 0.08, 0.02), (0.30, 0.60, 0.10), (0.20, 0.30, 0.50))  # per minute
EXERTION_TAU_S = 45.0


@dataclass(slots=True)
class Patient:
    patient_id: str
    rng: random.Random
    hr: float
    rr: float
    spo2: float
    temp: float
    sbp: float
    dbp: float
    circadian_phase: float
    onset_s: float | None
    ramp_s: float
    activity: int = 0
    activity_until_s: float = 0.0
    exertion: float = 0.0
    """The body's response to activity (0 at rest .. 1 walking), lagging it by ``EXERTION_TAU_S``."""
    exertion_at_s: float = 0.0
    wrist_off_until_s: float = -1.0
    wrist_buffer_until_s: float = -1.0
    seqs: dict[str, int] = field(default_factory=dict)

    def deterioration(self, t: float) -> float:
        if self.onset_s is None or t < self.onset_s:
            return 0.0
        return min((t - self.onset_s) / self.ramp_s, 1.0)

    def advance_activity(self, t: float) -> None:
        while self.activity_until_s <= t:
            self.activity = self.rng.choices((0, 1, 2), ACTIVITY_TRANSITIONS[self.activity])[0]
            self.activity_until_s += 60.0

    def advance_exertion(self, t: float) -> float:
        # Heart rate, breathing and pressure follow a change of activity within about a minute, not at once.
        if t > self.exertion_at_s:
            target = ACTIVITY_CADENCE[self.activity] / 105.0
            self.exertion = target + (self.exertion - target) * math.exp(-(t - self.exertion_at_s) / EXERTION_TAU_S)
            self.exertion_at_s = t
        return self.exertion

    def truth(self, metric: Metric, t: float) -> float:
        self.advance_activity(t)
        circ = math.sin(2 * math.pi * t / DAY_S + self.circadian_phase)
        act = self.advance_exertion(t)
        d = self.deterioration(t)
        if metric is Metric.HEART_RATE:
            return self.hr + 4 * circ + 25 * act + 45 * d
        if metric is Metric.RESP_RATE:
            return self.rr + 1 * circ + 4 * act + 12 * d
        if metric is Metric.SPO2:
            return min(self.spo2 - 9 * d, 100.0)
        if metric is Metric.TEMPERATURE:
            return self.temp + 0.3 * circ + 2.0 * d
        if metric is Metric.BP_SYSTOLIC:
            return self.sbp + 6 * circ + 8 * act - 45 * d
        if metric is Metric.BP_DIASTOLIC:
            return self.dbp + 4 * circ + 4 * act - 22 * d
        return ACTIVITY_CADENCE[self.activity]


def _already_deteriorating(index: int, share: float) -> bool:
    """Evenly spread, not drawn: with ``share`` 0.1 every tenth patient, so any run of ten beds holds one."""
    return math.floor((index + 1) * share) > math.floor(index * share)


def _make_patient(index: int, seed: int, duration_s: float, deteriorating_share: float,
                  already_deteriorating: float = 0.0) -> Patient:
    """``duration_s`` sets the time scale of a decline (finite even when the simulation runs without end).
    ``already_deteriorating``: share of patients whose decline began before time zero; they are half to four
    fifths of the way down it at the start. Draws no random number of its own, so at 0 every patient is as before."""
    rng = random.Random(f"{seed}:{index}")
    deteriorates = rng.random() < deteriorating_share
    patient = Patient(
        patient_id=f"sim-{index:06d}",
        rng=rng,
        hr=rng.uniform(58, 88),
        rr=rng.uniform(12, 18),
        spo2=rng.uniform(95, 99.5),
        temp=rng.uniform(36.3, 37.1),
        sbp=rng.uniform(108, 140),
        dbp=rng.uniform(64, 86),
        circadian_phase=rng.uniform(0, 2 * math.pi),
        onset_s=rng.uniform(0.05, 0.5) * duration_s if deteriorates else None,
        # Sepsis-like decline takes hours; a short simulation compresses it into the time it has.
        ramp_s=max(min(rng.uniform(3600.0, 4 * 3600.0), 0.6 * duration_s), 60.0),
    )
    if already_deteriorating > 0 and _already_deteriorating(index, already_deteriorating):
        # How far down its decline: a fixed fraction per patient, from its index, so no draw moves.
        patient.onset_s = -patient.ramp_s * (0.5 + 0.3 * ((index * 7919) % 11) / 10)
    return patient


def gaussian_noise(rng: random.Random, sd: float) -> float:
    """The default sensor noise: Gaussian with standard deviation ``sd``."""
    return rng.gauss(0.0, sd)


NoiseDraw = Callable[[random.Random, float], float]
"""Draws one sensor error of scale ``sd`` (the noise's standard deviation) from the patient's generator."""


def _measure(p: Patient, stream: Stream, t: float, draw: NoiseDraw = gaussian_noise) -> tuple[float, float, float]:
    """A sensor's reading of the truth at ``t``: noise (``draw``), rounding, motion, artefacts.

    Returns ``(value, quality, truth)``; the truth is computed first and draws no random numbers of its own
    beyond the activity chain's, so asking for it changes nothing in the readings.
    """
    rng = p.rng
    truth = p.truth(stream.metric, t)
    moving = p.activity == 2
    quality = rng.uniform(0.85, 1.0)
    if stream.device == "wrist" and stream.metric in (Metric.HEART_RATE, Metric.SPO2):
        if moving:
            quality = rng.uniform(0.35, 0.75)
        artefact = rng.random()
        if artefact < 0.004:  # probe lifted: the device reports zero at minimal quality
            return 0.0, 0.05, truth
        if stream.metric is Metric.HEART_RATE and moving and artefact < 0.03:
            return float(rng.randint(150, 240)), round(rng.uniform(0.1, 0.4), 2), truth
    noise = {
        Metric.HEART_RATE: 2.0,
        Metric.SPO2: 1.0,
        Metric.RESP_RATE: 1.2,
        Metric.TEMPERATURE: 0.1,
        Metric.BP_SYSTOLIC: 5.0,
        Metric.BP_DIASTOLIC: 4.0,
        Metric.ACTIVITY: 6.0,
    }[stream.metric] / math.sqrt(quality)
    value = truth + draw(rng, noise)
    if stream.metric is Metric.TEMPERATURE:
        value = round(value, 1)
    elif stream.metric is Metric.SPO2:
        value = float(min(round(value), 100))
    else:
        value = float(max(round(value), 0))
    return value, round(quality, 2), truth


def simulate(
    patients: int,
    duration_s: float,
    rate: float = 1.0,
    seed: int = 1,
    start_ms: int = 1_763_942_400_000,
    deteriorating_share: float = 0.1,
    *,
    course_s: float | None = None,
    already_deteriorating: float = 0.0,
) -> Iterator[tuple[float, Reading]]:
    """Readings of ``patients`` over ``duration_s`` simulated seconds, as ``(delivered_at_s, reading)``.

    ``rate`` is readings per second per patient. ``delivered_at_s`` is when the reading reaches the gateway,
    which for buffered uploads is later than its measured-at; the sequence is ordered by it.

    ``duration_s`` may be ``math.inf`` (a demo that runs until stopped); ``course_s`` (default ``duration_s``) is
    then the time over which deterioration onsets are spread and declines compressed. ``already_deteriorating``:
    see ``_make_patient``.
    """
    for delivered, reading, _truth in _generate(patients, duration_s, rate, seed, start_ms, deteriorating_share,
                                                course_s, already_deteriorating):
        yield delivered, reading


def simulate_with_truth(
    patients: int,
    duration_s: float,
    rate: float = 1.0,
    seed: int = 1,
    start_ms: int = 1_763_942_400_000,
    deteriorating_share: float = 0.1,
) -> Iterator[tuple[float, Reading, float]]:
    """``simulate``'s readings, identical and in the same order, each with the patient's true value.

    Yields ``(delivered_at_s, reading, truth)``, where ``truth`` is the patient's physiological value of the
    reading's metric at its measured-at time (``Patient.truth``), before sensor noise, rounding and artefacts.
    Artefacts (probe-off zeros, motion spikes) are readings far from their truth.
    """
    yield from _generate(patients, duration_s, rate, seed, start_ms, deteriorating_share)


def _generate(
    patients: int,
    duration_s: float,
    rate: float,
    seed: int,
    start_ms: int,
    deteriorating_share: float,
    course_s: float | None = None,
    already_deteriorating: float = 0.0,
) -> Iterator[tuple[float, Reading, float]]:
    if patients < 1 or duration_s <= 0 or rate <= 0:
        raise ValueError("patients, duration and rate must be positive")
    course = duration_s if course_s is None else course_s
    if not math.isfinite(course) or course <= 0:
        raise ValueError("a simulation without end needs a finite, positive course_s")
    people = [_make_patient(i, seed, course, deteriorating_share, already_deteriorating) for i in range(patients)]
    yield from generate_readings(people, duration_s, rate, start_ms)


def generate_readings(
    people: Sequence[Patient], duration_s: float, rate: float, start_ms: int, draw: NoiseDraw = gaussian_noise,
) -> Iterator[tuple[float, Reading, float]]:
    """The readings of ``people`` (made by ``_make_patient`` or a cohort of another kind, e.g.
    ``simulation.phenotypes``) over ``duration_s``, as ``simulate_with_truth`` yields them; ``draw`` is the
    sensors' noise. ``simulate`` is this with ``_make_patient``'s patients and Gaussian noise."""
    if not people or duration_s <= 0 or rate <= 0:
        raise ValueError("people, duration and rate must be positive")
    scale = BASE_RATE / rate
    heap: list[tuple[float, int, int]] = []
    for i, p in enumerate(people):
        for j, s in enumerate(STREAMS):
            heapq.heappush(heap, (p.rng.uniform(0, s.period_s * scale), i, j))
    pending: list[tuple[float, int, Reading, float]] = []  # buffered uploads, by delivery time
    counter = 0
    while heap:
        t, i, j = heapq.heappop(heap)
        while pending and pending[0][0] <= t:
            dt, _, reading, truth = heapq.heappop(pending)
            yield dt, reading, truth
        if t >= duration_s:
            continue
        p, s = people[i], STREAMS[j]
        if s.device == "cuff":
            p.advance_activity(t)
            if p.activity == 2:
                # Ambulatory cuffs do not measure on the move; they try again a few minutes later.
                heapq.heappush(heap, (t + p.rng.uniform(120, 300), i, j))
                continue
        heapq.heappush(heap, (t + s.period_s * scale * p.rng.uniform(0.9, 1.1), i, j))
        delivered = t
        if s.device == "wrist":
            if t < p.wrist_off_until_s:
                continue  # off the wrist or out of battery: no reading at all
            if p.rng.random() < 0.0005 * scale:
                p.wrist_off_until_s = t + p.rng.uniform(60, 600)
                continue
            if t >= p.wrist_buffer_until_s and p.rng.random() < 0.0005 * scale:
                p.wrist_buffer_until_s = t + p.rng.uniform(30, 180)  # lost the phone: buffer, upload later
            if t < p.wrist_buffer_until_s:
                delivered = p.wrist_buffer_until_s
        value, quality, truth = _measure(p, s, t, draw)
        device_id = f"{p.patient_id}-{s.device}"
        seq = p.seqs.get(device_id, 0)
        p.seqs[device_id] = seq + 1
        reading = Reading(
            patient_id=p.patient_id,
            device_id=device_id,
            metric=s.metric,
            value=value,
            measured_at=start_ms + int(t * 1000),
            seq=seq,
            quality=quality,
        )
        if delivered > t:
            counter += 1
            heapq.heappush(pending, (delivered, counter, reading, truth))
        else:
            yield t, reading, truth
    while pending:
        dt, _, reading, truth = heapq.heappop(pending)
        yield dt, reading, truth


def cohort_truth(
    patients: int, duration_s: float, seed: int = 1, deteriorating_share: float = 0.1
) -> dict[str, tuple[float | None, float]]:
    """Each patient's deterioration as ``simulate`` with the same arguments will generate it:
    ``patient_id -> (onset_s or None if stable, ramp_s)``, in seconds of simulated time.

    Re-creates the patients with fresh random generators of their own; the simulation's streams are untouched.
    """
    people = (_make_patient(i, seed, duration_s, deteriorating_share) for i in range(patients))
    return {p.patient_id: (p.onset_s, p.ramp_s) for p in people}
