"""The vital-sign catalogue: what twinmon measures, in which unit, and what is believable.

Two ranges per vital, on purpose:

* ``possible``: outside it a value is physically impossible (SpO2 of 101 %, a negative rate). Such a
  message is malformed and is dead-lettered at the edge; it never reaches a twin.
* ``plausible``: inside ``possible`` but outside ``plausible`` is what a sensor emits when it is not
  measuring a person (a probe-off zero, a 277 bpm motion spike). The message is valid, the twin records
  it as an artefact and does not let it move the estimate.

Noise figures are per minute: the filters run with time in minutes so trends read as units per minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Metric(StrEnum):
    HEART_RATE = "heart_rate"
    SPO2 = "spo2"
    RESP_RATE = "resp_rate"
    TEMPERATURE = "temperature"
    BP_SYSTOLIC = "bp_systolic"
    BP_DIASTOLIC = "bp_diastolic"
    ACTIVITY = "activity"
    CONSCIOUSNESS = "consciousness"
    """Manual observation: ACVPU, sent as a letter, kept as its index in ``ACVPU``."""
    O2_FLOW = "o2_flow"
    """Manual observation: supplemental oxygen flow in L/min; 0 means breathing room air."""


ACVPU = ("A", "C", "V", "P", "U")
"""Alert, new Confusion, responds to Voice, to Pain, Unresponsive (RCP NEWS2)."""


@dataclass(frozen=True, slots=True)
class VitalSpec:
    metric: Metric
    unit: str
    """Canonical UCUM unit; events must carry it (or one of ``unit_aliases``)."""
    unit_aliases: tuple[str, ...]
    loinc: str
    display: str
    possible: tuple[float, float]
    plausible: tuple[float, float]
    process_noise: float
    """Spectral density of the trend's random walk, in unit^2 / min^3."""
    measurement_noise: float
    """Variance of one reading at signal quality 1.0, in unit^2."""
    initial_trend_var: float
    """Variance of the trend when a filter starts, in (unit / min)^2."""
    motion_sensitive: bool
    level_noise: float = 0.0
    """Random walk of the level itself, unit^2 / min: shifts within minutes that no trend foretells."""


CATALOGUE: dict[Metric, VitalSpec] = {
    spec.metric: spec
    for spec in (
        VitalSpec(
            Metric.HEART_RATE, "/min", ("bpm", "beats/min", "{beats}/min"), "8867-4", "Heart rate",
            possible=(0.0, 350.0), plausible=(25.0, 230.0),
            process_noise=0.05, measurement_noise=4.0, initial_trend_var=1.0, motion_sensitive=True,
            level_noise=1.0,
        ),
        VitalSpec(
            Metric.SPO2, "%", ("%{HemoglobinSaturation}",), "59408-5", "Oxygen saturation (SpO2)",
            possible=(0.0, 100.0), plausible=(50.0, 100.0),
            process_noise=0.005, measurement_noise=1.0, initial_trend_var=0.1, motion_sensitive=True,
            level_noise=0.1,
        ),
        VitalSpec(
            Metric.RESP_RATE, "/min", ("breaths/min", "{breaths}/min"), "9279-1", "Respiratory rate",
            possible=(0.0, 120.0), plausible=(3.0, 70.0),
            process_noise=0.005, measurement_noise=2.25, initial_trend_var=0.1, motion_sensitive=False,
            level_noise=0.3,
        ),
        VitalSpec(
            Metric.TEMPERATURE, "Cel", ("degC", "C"), "8310-5", "Body temperature",
            possible=(20.0, 46.0), plausible=(30.0, 43.0),
            process_noise=0.00005, measurement_noise=0.04, initial_trend_var=0.001, motion_sensitive=False,
            level_noise=0.0005,
        ),
        VitalSpec(
            Metric.BP_SYSTOLIC, "mm[Hg]", ("mmHg",), "8480-6", "Systolic blood pressure",
            possible=(0.0, 320.0), plausible=(50.0, 260.0),
            process_noise=0.001, measurement_noise=25.0, initial_trend_var=0.01, motion_sensitive=False,
            level_noise=0.3,
        ),
        VitalSpec(
            Metric.BP_DIASTOLIC, "mm[Hg]", ("mmHg",), "8462-4", "Diastolic blood pressure",
            possible=(0.0, 250.0), plausible=(25.0, 160.0),
            process_noise=0.0005, measurement_noise=16.0, initial_trend_var=0.005, motion_sensitive=False,
            level_noise=0.15,
        ),
        VitalSpec(
            Metric.ACTIVITY, "{steps}/min", ("steps/min",), "55423-8", "Activity (step cadence)",
            possible=(0.0, 400.0), plausible=(0.0, 300.0),
            process_noise=50.0, measurement_noise=25.0, initial_trend_var=100.0, motion_sensitive=False,
            level_noise=20.0,
        ),
    )
}

@dataclass(frozen=True, slots=True)
class ObservationSpec:
    """A manual observation entered by staff: not filtered, the latest one stands until replaced."""

    metric: Metric
    unit: str
    unit_aliases: tuple[str, ...]
    loinc: str
    display: str
    possible: tuple[float, float]
    codes: tuple[str, ...] = ()
    """For coded observations, the accepted codes; the value is sent as one of them."""


OBSERVATIONS: dict[Metric, ObservationSpec] = {
    spec.metric: spec
    for spec in (
        ObservationSpec(Metric.CONSCIOUSNESS, "{ACVPU}", (), "67775-7", "Level of consciousness (ACVPU)",
                        possible=(0, len(ACVPU) - 1), codes=ACVPU),
        ObservationSpec(Metric.O2_FLOW, "L/min", ("l/min",), "3151-8", "Supplemental oxygen flow",
                        possible=(0.0, 60.0)),
    )
}

METRICS_BY_NAME: dict[str, VitalSpec | ObservationSpec] = {
    **{spec.metric.value: spec for spec in CATALOGUE.values()},
    **{spec.metric.value: spec for spec in OBSERVATIONS.values()},
}

NIS_GATE = 10.828
"""Chi-square bound, 1 degree of freedom, p = 0.001: a reading this surprising is not believed at once."""
STEP_NIS = 4.0
"""Two standard deviations: a reading this surprising is believed, but it starts a run that the next consistent
reading confirms as a step. Between this and ``NIS_GATE`` lies a change too small to be refused and too large for
the filter's gain to follow within a couple of readings (a cuff 15 minutes apart, SpO2 97 -> 94.5 at 10 s)."""
SUSTAINED_RUN = 2
"""Consecutive mutually consistent surprising readings after which the change is taken as real: the second one, at
any cadence: waiting for a third would leave a 15-minute cuff's systolic of 85 unscored for half an hour."""
LOST_AFTER = 6
"""Consecutive rejected readings, consistent or not, after which the filter, not the sensor, is taken to be
wrong and restarts from the latest readings."""
BASELINE_TAU_MIN = 3 * 24 * 60.0
"""Personal baseline time constant: days, not minutes, so an evening's fever does not become "normal"."""
BASELINE_MATURE_MIN = 12 * 60.0
"""Data a baseline needs before deviation from it is reported."""
QUALITY_TAU_MIN = 60.0
"""Time constant of the valid-data share: an exponentially weighted last hour."""


def accepts_unit(spec: VitalSpec | ObservationSpec, unit: str) -> bool:
    return unit == spec.unit or unit in spec.unit_aliases

# Tuned with `twinmon evaluate` (evaluation/cohort.py) on simulated tuning cohorts (seeds 11-14; the reported
# evaluation uses other seeds), with the alert thresholds (alerts.policy.PolicySettings): 15 min extrapolated every
# bout of walking (heart and breathing rates jump within a minute) into a predicted NEWS2 of 5, 13-14 false
# MEDIUM alerts per patient-day at the old threshold of 0.6 (10 min: 5.5; 5 min: 0.47; 4 min: 0.28; 3 min: 0.17),
# and at 0.9 still 1.5 (seed 11). With 4 min and a threshold of 0.7: 0.10, every episode still detected. What the
# prediction loses is the extrapolation of slow drifts, which the filtered level itself catches.
TREND_PERSISTENCE_MIN = 4.0
"""How long a vital's current trend is expected to persist when risk looks ahead (a damped trend): the filter's
trend is a short-memory estimate, dominated by minute-scale changes (activity), so it is trusted for minutes."""

# Checked with `twinmon evaluate` at x0.5 and x2 on the same tuning cohorts: no consistent gain in false alerts
# or lead time, so left as they were.
FORECAST_DIFFUSION: dict[Metric, float] = {
    # Unforeseeable drift of the level per minute of horizon, unit^2/min: the SD an hour ahead is sqrt(60 d),
    # about 8 bpm, 2.4 /min, 1.5 %, 0.3 C, 9 and 6 mmHg - the hour-to-hour variability of a stable inpatient.
    Metric.HEART_RATE: 1.0,
    Metric.RESP_RATE: 0.1,
    Metric.SPO2: 0.04,
    Metric.TEMPERATURE: 0.0015,
    Metric.BP_SYSTOLIC: 1.5,
    Metric.BP_DIASTOLIC: 0.6,
    Metric.ACTIVITY: 50.0,
}

# --- the slow trend: hours-long drift under minute-scale physiology -------------------------------------------------
# A second level-and-trend filter per scored vital (``twin.VitalState.slow``) whose trend moves slowly (``q`` below,
# unit^2/min^3, no level noise) and which counts the vital's own minute-to-minute physiology (activity, posture) as
# noise: each reading's variance is the sensor's plus ``natural`` x ``SLOW_CORRELATION_MIN`` / (minutes since the
# previous reading), so what the filter learns per minute is bounded by how fast physiology decorrelates, not by how
# often the device reads. ``natural`` is the within-patient variance of a stable patient's value over minutes.
SLOW_CORRELATION_MIN = 3.0
"""How long a minute-scale excursion (a bout of walking) lasts: readings closer than this are not independent."""


@dataclass(frozen=True, slots=True)
class SlowSpec:
    q: float
    """Spectral density of the slow trend's random walk, unit^2 / min^3."""
    natural: float
    """Minute-to-minute physiological variance, unit^2."""
    initial_trend_var: float


# ``q`` was first set by hand to give a memory of about an hour, then raised tenfold for every vital after a probe of
# the joint drift score (``risk.Risk.drift``) on the simulated tuning cohort (seed 1, 40 patients x 24 h; seed 2 is
# held out): x1 and x10 both kept false drift alerts at or below 0.03 per patient-day at a threshold of 3-3.5, x10
# crossed it 1-2 min sooner after the onset, x100 was later and noisier.
SLOW: dict[Metric, SlowSpec] = {
    Metric.HEART_RATE: SlowSpec(q=1e-4, natural=36.0, initial_trend_var=0.01),
    Metric.RESP_RATE: SlowSpec(q=1e-5, natural=1.0, initial_trend_var=0.001),
    Metric.SPO2: SlowSpec(q=1e-5, natural=0.25, initial_trend_var=0.001),
    Metric.TEMPERATURE: SlowSpec(q=1e-7, natural=0.005, initial_trend_var=1e-5),
    Metric.BP_SYSTOLIC: SlowSpec(q=1e-4, natural=9.0, initial_trend_var=0.01),
}

SLOW_PERSISTENCE_MIN = 0.0
"""How long the slow trend is expected to persist when risk looks ahead (damped like the fast trend, whose place it
takes beyond ``TREND_PERSISTENCE_MIN``); 0 leaves it out of forecasts. ``risk.RiskSettings.slow_persistence_min``."""
