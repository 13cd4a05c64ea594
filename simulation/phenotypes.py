"""A harder simulated cohort: several ways to deteriorate, and stable patients whose vitals only look like it.

``simulation.simulator.simulate`` stays as it was (one sepsis-like linear ramp moving all five vitals, stable
patients varying by a circadian sine and activity); this module builds a different cohort on the same sensors,
cadences, artefacts, dropouts and late uploads (``simulator.generate_readings``):

* **Phenotypes** of deterioration (``PHENOTYPES``, the change of each vital at full severity): sepsis-like (the
  simulator's own), haemorrhage (heart rate up, systolic down), opioid hypoventilation (breathing and SpO2 down,
  drowsiness), isolated respiratory failure (breathing up, SpO2 down), new fast atrial fibrillation (a step to
  140-150 bpm with a fall in pressure) and hypothermia with bradycardia. Each severity is scaled by 0.9-1.3.
* **Onset shapes** (``SHAPES``): a linear ramp, a step, an accelerating curve (slow at first) and a plateau
  (half-way for 1-3 h, then the rest). Atrial fibrillation is always a step.
* **Recovery after treatment**: half the deteriorating patients are treated 30-120 min after their
  deterioration is complete and recover with a time constant of 45-90 min.
* **Mimics** on stable patients (``MIMICS``): pain or anxiety tachycardia, a physiotherapy session (exercise),
  fever without sepsis, sleep desaturation dips at night, a transient post-operative low blood pressure. Each
  is an interval of time (``Mimic``); false alerts are attributed to the mimic active at the time.
* **Sensor noise that is not Gaussian**: Student's t with 3 degrees of freedom at the same standard deviation
  as the simulator's Gaussian, plus rare outliers of 4-8 standard deviations (``heavy_tailed_noise``).

Wearables cannot see consciousness; ``consciousness`` says what a nurse at the bedside would chart (opioid
hypoventilation makes a patient drowsy, "V", from 60 % of its severity), which charted NEWS2 scores and the twin
does not get. Pure and seeded, like the simulator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from simulation.simulator import (
    ACTIVITY_CADENCE,
    DAY_S,
    Patient,
    generate_readings,
)
from twin_state.catalogue import Metric
from twin_state.twin import Reading

_HR, _RR, _SPO2, _TEMP, _SBP, _DBP = (Metric.HEART_RATE, Metric.RESP_RATE, Metric.SPO2, Metric.TEMPERATURE,
                                      Metric.BP_SYSTOLIC, Metric.BP_DIASTOLIC)

PHENOTYPES: Mapping[str, Mapping[Metric, float]] = {
    "sepsis": {_HR: 45, _RR: 12, _SPO2: -9, _TEMP: 2.0, _SBP: -45, _DBP: -22},
    "haemorrhage": {_HR: 50, _RR: 7, _SPO2: -2, _TEMP: -0.3, _SBP: -55, _DBP: -30},
    "opioid_hypoventilation": {_HR: -12, _RR: -10, _SPO2: -10, _SBP: -15, _DBP: -8},
    "respiratory_failure": {_HR: 18, _RR: 15, _SPO2: -12, _TEMP: 0.3, _SBP: 5, _DBP: 3},
    "fast_af": {_HR: 70, _RR: 5, _SPO2: -2, _SBP: -28, _DBP: -15},
    "hypothermia_bradycardia": {_HR: -35, _RR: -5, _SPO2: -2, _TEMP: -3.2, _SBP: -20, _DBP: -10},
}
SHAPES = ("ramp", "step", "curve", "plateau")
MIMICS: Mapping[str, float] = {
    # mimic -> share of stable patients who have it (independently)
    "pain_tachycardia": 0.35,
    "exercise": 0.35,
    "fever_without_sepsis": 0.2,
    "sleep_desaturation": 0.3,
    "postop_hypotension": 0.15,
}
DROWSY_FROM = 0.6
"""Opioid hypoventilation: the deterioration level from which a nurse would chart the patient as "V"."""
_FLOORS = {_HR: 30.0, _RR: 4.0, _SPO2: 60.0, _TEMP: 32.0, _SBP: 50.0, _DBP: 25.0}


@dataclass(frozen=True, slots=True)
class Mimic:
    kind: str
    start_s: float
    duration_s: float
    effect: Mapping[Metric, float]

    def level(self, t: float) -> float:
        """0 outside, 1 inside, with 3-minute edges (a body does not jump)."""
        if t <= self.start_s or t >= self.start_s + self.duration_s:
            return 0.0
        edge = min(180.0, self.duration_s / 3)
        return min(1.0, (t - self.start_s) / edge, (self.start_s + self.duration_s - t) / edge)


@dataclass(slots=True)
class PhenotypePatient(Patient):
    phenotype: str = "stable"
    shape: str = "ramp"
    severity: float = 1.0
    plateau_level: float = 0.5
    plateau_s: float = 0.0
    treated_s: float | None = None
    """When treatment starts to work (None: never treated in the simulated time)."""
    recovery_tau_s: float = 3600.0
    mimics: tuple[Mimic, ...] = field(default_factory=tuple)

    def deterioration(self, t: float) -> float:
        if self.onset_s is None or t < self.onset_s:
            return 0.0
        x = (t - self.onset_s) / self.ramp_s
        if self.shape == "step":
            d = 1.0
        elif self.shape == "curve":
            d = min(x, 1.0) ** 2
        elif self.shape == "plateau":
            half = self.ramp_s / 2
            u = t - self.onset_s
            if u < half:
                d = self.plateau_level * u / half
            elif u < half + self.plateau_s:
                d = self.plateau_level
            else:
                d = min(self.plateau_level + (1 - self.plateau_level) * (u - half - self.plateau_s) / half, 1.0)
        else:
            d = min(x, 1.0)
        if self.treated_s is not None and t > self.treated_s:
            d *= math.exp(-(t - self.treated_s) / self.recovery_tau_s)
        return d

    def exercising(self, t: float) -> bool:
        return any(m.kind == "exercise" and m.level(t) > 0 for m in self.mimics)

    def advance_activity(self, t: float) -> None:
        Patient.advance_activity(self, t)
        if self.exercising(t):
            self.activity = 2

    def truth(self, metric: Metric, t: float) -> float:
        self.advance_activity(t)
        if metric is Metric.ACTIVITY:
            return ACTIVITY_CADENCE[self.activity]
        circ = math.sin(2 * math.pi * t / DAY_S + self.circadian_phase)
        act = self.advance_exertion(t)
        d = self.deterioration(t) * self.severity
        delta = PHENOTYPES.get(self.phenotype, {}).get(metric, 0.0) * d
        delta += sum(m.effect.get(metric, 0.0) * m.level(t) for m in self.mimics)
        if metric is Metric.HEART_RATE:
            value = self.hr + 4 * circ + 25 * act + delta
        elif metric is Metric.RESP_RATE:
            value = self.rr + 1 * circ + 4 * act + delta
        elif metric is Metric.SPO2:
            value = min(self.spo2 + delta, 100.0)
        elif metric is Metric.TEMPERATURE:
            value = self.temp + 0.3 * circ + delta
        elif metric is Metric.BP_SYSTOLIC:
            value = self.sbp + 6 * circ + 8 * act + delta
        else:
            value = self.dbp + 4 * circ + 4 * act + delta
        return max(value, _FLOORS.get(metric, 0.0))

    def consciousness(self, t: float) -> int:
        """What a nurse would chart (ACVPU index: 0 alert, 2 voice): drowsy in opioid hypoventilation."""
        drowsy = self.phenotype == "opioid_hypoventilation" and self.deterioration(t) * self.severity >= DROWSY_FROM
        return 2 if drowsy else 0


def _mimics(rng: random.Random, duration_s: float, circadian_phase: float) -> tuple[Mimic, ...]:
    out: list[Mimic] = []
    day = duration_s / DAY_S

    def at(kind: str, length: tuple[float, float], effect: Mapping[Metric, float], count: int) -> None:
        for _ in range(count):
            dur = rng.uniform(*length)
            out.append(Mimic(kind, rng.uniform(0, max(duration_s - dur, 0.0)), dur, effect))

    if rng.random() < MIMICS["pain_tachycardia"]:
        at("pain_tachycardia", (1200, 3600),
           {_HR: rng.uniform(25, 40), _RR: rng.uniform(3, 6), _SBP: rng.uniform(5, 15)}, rng.randint(1, 3))
    if rng.random() < MIMICS["exercise"]:
        at("exercise", (900, 1800),
           {_HR: rng.uniform(25, 40), _RR: rng.uniform(6, 10), _SBP: rng.uniform(10, 25)},
           max(1, round(rng.uniform(1, 2) * day)))
    if rng.random() < MIMICS["fever_without_sepsis"]:
        at("fever_without_sepsis", (3 * 3600, 8 * 3600),
           {_TEMP: rng.uniform(1.3, 2.0), _HR: rng.uniform(8, 15), _RR: rng.uniform(1, 3)}, 1)
    if rng.random() < MIMICS["sleep_desaturation"]:
        # Night is where the circadian sine is lowest; dips of 30-120 s every 15-45 min for about six hours.
        night = ((1.5 * math.pi - circadian_phase) % (2 * math.pi)) / (2 * math.pi) * DAY_S
        t = night - 3 * 3600
        while t < night + 3 * 3600:
            if 0 < t < duration_s:
                out.append(Mimic("sleep_desaturation", t, rng.uniform(30, 120), {_SPO2: -rng.uniform(5, 9)}))
            t += rng.uniform(900, 2700)
    if rng.random() < MIMICS["postop_hypotension"]:
        dur = rng.uniform(1800, 5400)
        out.append(Mimic("postop_hypotension", rng.uniform(0, min(2 * 3600, duration_s / 4)), dur,
                         {_SBP: -rng.uniform(25, 35), _DBP: -rng.uniform(12, 18), _HR: rng.uniform(5, 12)}))
    return tuple(sorted(out, key=lambda m: m.start_s))


def make_patient(index: int, seed: int, duration_s: float, deteriorating_share: float) -> PhenotypePatient:
    rng = random.Random(f"phenotypes:{seed}:{index}")
    deteriorates = rng.random() < deteriorating_share
    phenotype = rng.choice(tuple(PHENOTYPES)) if deteriorates else "stable"
    shape = "step" if phenotype == "fast_af" else rng.choice(SHAPES)
    onset = rng.uniform(0.05, 0.5) * duration_s if deteriorates else None
    ramp = max(min(rng.uniform(3600.0, 4 * 3600.0), 0.6 * duration_s), 60.0)
    plateau_s = rng.uniform(3600, 3 * 3600)
    complete = None if onset is None else onset + ramp + (plateau_s if shape == "plateau" else 0.0)
    treated = complete + rng.uniform(1800, 7200) if complete is not None and rng.random() < 0.5 else None
    phase = rng.uniform(0, 2 * math.pi)
    return PhenotypePatient(
        patient_id=f"sim-{index:06d}", rng=rng,
        hr=rng.uniform(58, 88), rr=rng.uniform(12, 18), spo2=rng.uniform(95, 99.5), temp=rng.uniform(36.3, 37.1),
        sbp=rng.uniform(108, 140), dbp=rng.uniform(64, 86), circadian_phase=phase,
        onset_s=onset, ramp_s=ramp, phenotype=phenotype, shape=shape, severity=rng.uniform(0.9, 1.3),
        plateau_level=rng.uniform(0.4, 0.6), plateau_s=plateau_s,
        treated_s=treated if treated is not None and treated < duration_s else None,
        recovery_tau_s=rng.uniform(2700, 5400),
        mimics=() if deteriorates else _mimics(rng, duration_s, phase),
    )


def heavy_tailed_noise(rng: random.Random, sd: float) -> float:
    """Student's t (3 degrees of freedom) scaled to standard deviation ``sd``; one reading in 300 is an outlier
    of 4-8 ``sd`` either way (a cable tug, a cold finger)."""
    if rng.random() < 1 / 300:
        return rng.choice((-1.0, 1.0)) * rng.uniform(4, 8) * sd
    chi2 = rng.gammavariate(1.5, 2.0)  # chi-squared with 3 degrees of freedom
    return rng.gauss(0.0, 1.0) / math.sqrt(chi2 / 3) * sd / math.sqrt(3)


def cohort(patients: int, duration_s: float, seed: int, deteriorating_share: float) -> list[PhenotypePatient]:
    """The cohort's patients, with fresh generators: what ``simulate_phenotypes`` with the same arguments runs."""
    if patients < 1 or duration_s <= 0:
        raise ValueError("patients and duration must be positive")
    return [make_patient(i, seed, duration_s, deteriorating_share) for i in range(patients)]


def simulate_phenotypes(
    patients: int, duration_s: float, rate: float, seed: int, start_ms: int, deteriorating_share: float = 0.5,
) -> Iterator[tuple[float, Reading, float]]:
    """``(delivered_at_s, reading, truth)`` of the phenotype cohort, as ``simulate_with_truth`` yields them."""
    yield from generate_readings(cohort(patients, duration_s, seed, deteriorating_share), duration_s, rate,
                                 start_ms, heavy_tailed_noise)
