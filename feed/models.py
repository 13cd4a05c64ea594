"""The feed API's request and response bodies (pydantic): the OpenAPI document is generated from these."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from streams.enrolment import ANCHORED_ID

RETRY_AFTER: dict[str, Any] = {"Retry-After": {"description": "Whole seconds to wait before trying again (at least 1)",
                                               "schema": {"type": "integer", "minimum": 1}}}
"""The header every 429 carries, as the OpenAPI document describes it."""


class Error(BaseModel):
    error: str = Field(description="What went wrong, for a person")
    detail: list[str] = Field(default_factory=list, description="One line per problem, where there are several")


class OutcomeIssue(BaseModel):
    severity: Literal["fatal", "error", "warning", "information"]
    code: str = Field(description="FHIR issue type: login, not-found, invalid, too-costly, informational, ...")
    diagnostics: str


class OperationOutcome(BaseModel):
    """FHIR R4 OperationOutcome: what the /fhir endpoints answer for errors and for an accepted ingest."""

    resourceType: Literal["OperationOutcome"] = "OperationOutcome"
    issue: list[OutcomeIssue]


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
    audit_id: str = Field(description="Id of the audit record written before the change was sent")
    detail: str


class Me(BaseModel):
    user: str
    team: str


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


class EnrolmentIn(BaseModel):
    """A patient's profile; the care team is the caller's own."""

    model_config = ConfigDict(extra="forbid")

    patient_id: str = Field(pattern=ANCHORED_ID)
    age_band: Literal["16-39", "40-64", "65-79", "80+"] | None = None
    conditions: list[str] = Field(default_factory=list, max_length=20,
                                  description="e.g. hypercapnic_respiratory_failure selects SpO2 scale 2")
    targets: dict[str, tuple[float, float]] = Field(default_factory=dict,
                                                    description="Clinician-set target ranges, e.g. spo2: [88, 92]")


class ProfileUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    age_band: Literal["16-39", "40-64", "65-79", "80+"] | None = None
    conditions: list[str] = Field(default_factory=list, max_length=20)
    targets: dict[str, tuple[float, float]] = Field(default_factory=dict)


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, pattern=r"\S", description="Why it is resolved, in words")


class Alert(BaseModel):
    alert_id: str
    patient_id: str
    condition: Literal["clinical", "unconfirmed", "no_data", "signal_quality"]
    level: Literal["low", "medium", "high"]
    raised_at: int = Field(description="Epoch ms")
    escalated_at: int
    acknowledged_by: str | None
    acknowledged_at: int | None


class AlertEvent(BaseModel):
    """An event of the ``alerts`` topic, as the worker published it."""

    model_config = ConfigDict(extra="allow")

    event_id: str
    alert_id: str
    patient_id: str
    kind: Literal["raised", "escalated", "acknowledged", "resolved"]
    condition: str
    level: str
    at: int
    reason: str
    user: str | None = None
    care_team: str | None = None
    policy_id: str | None = Field(None, description="Id of the policy file whose thresholds raised it "
                                  "(docs/policy.md); null in events published before it was sent")


class AuditRecord(BaseModel):
    id: str
    at: int = Field(description="Epoch ms when the API (or the CLI) accepted the request")
    user: str = Field(description="feed: the bearer token's user; cli: the --user given, not verified")
    team: str
    action: Literal["enrol", "enrol-refused", "update", "discharge", "acknowledge", "resolve", "observe"]
    """``observe``: readings entered through ``POST /fhir/Observation`` (reason says how many)."""
    patient_id: str
    alert_id: str | None = None
    reason: str = ""
    source: Literal["feed", "cli"] = Field("feed", description="Where the change was made: feed (user from the "
                                           "token) or cli (user as asserted on the command line)")
    os_user: str | None = Field(None, description="cli: the operating-system account that ran the command")
    writer: str = Field("", description="The writing process's chain id (docs/operations.md, audit trail)")
    seq: int = Field(0, description="Position in the writer's chain, from 1")
    prev: str = Field("", description="MAC of the writer's previous record; empty for its first")
    mac: str = Field("", description="HMAC-SHA256 of the record under the audit key")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_offset: int | None = Field(description="Offset of the next page, or null at the end")


class News2(BaseModel):
    total: int
    subscores: dict[str, int]
    red_flag: bool
    band: Literal["incomplete", "low", "low-medium", "medium", "high"] = Field(
        description="RCP response band; incomplete: partial and below every threshold on what was measured")
    partial: bool
    missing: list[str] = Field(description="Parameters not measured (or too old to count)")
    assumed: list[str] = Field(description="Parameters scored on an assumed value, in words")


class VitalBrief(BaseModel):
    """One vital of a patient at a glance, for the ward board: where it is and which way it is going."""

    estimate: float = Field(description="Filtered estimate now, within what is physically possible")
    unit: str
    trend_per_min: float
    last_raw_at: int = Field(description="Epoch ms of the last reading")
    stale: bool
    data_quality: float | None = Field(description="Share of valid readings of this vital")
    news2_subscore: int | None = Field(None, description="Its NEWS2 subscore now, for the vitals NEWS2 scores")


class PatientSummary(BaseModel):
    patient_id: str
    news2: News2 | None
    p_news2_5_60min: float | None = Field(
        description="Raw risk score (0-1) that NEWS2 reaches 5 within 60 min: what the alert threshold is set on, NOT "
                    "a calibrated probability (a raw 0.5 was followed by NEWS2 5 78 % of the time on the simulated "
                    "cohort); see p_news2_5_60min_calibrated")
    p_news2_5_60min_calibrated: float | None = Field(
        None, description="Calibrated probability that NEWS2 reaches 5 within 60 min: the raw score mapped through "
                          "the policy file's [calibration] (docs/policy.md); null when the policy has none")
    p_news2_7_60min: float | None = Field(
        description="Raw risk score (0-1) that NEWS2 reaches 7 within 60 min: NOT a calibrated probability")
    data_quality: float | None = Field(description="Share of valid readings, averaged over the vitals")
    stale: list[str] = Field(description="Vitals with no recent reading")
    unconfirmed: dict[str, int] = Field(
        default_factory=dict, description="Scored vitals with an unconfirmed reading, and its NEWS2 subscore")
    last_reading_at: int | None
    open_alerts: int
    highest_alert: Literal["low", "medium", "high"] | None
    vitals: dict[str, VitalBrief] = Field(default_factory=dict, description="Each measured vital, by metric")


class ScoreBand(BaseModel):
    """A range of a vital's values and the NEWS2 subscore the chart gives it (``low`` inclusive, ``high``
    exclusive, edges where the chart's whole numbers or tenths change band)."""

    low: float
    high: float
    score: int


class ForecastPoint(BaseModel):
    minutes: float
    mean: float
    low95: float
    high95: float


class UnconfirmedReading(BaseModel):
    value: float
    measured_at: int = Field(description="Epoch ms")
    news2_subscore: int | None = Field(description="What the reading scores on its own, for vitals NEWS2 scores")


class Vital(BaseModel):
    metric: str
    unit: str
    estimate: float
    sd: float
    low95: float
    high95: float
    trend_per_min: float
    last_raw: float
    last_raw_at: int
    age_s: float
    stale: bool
    baseline: float | None = Field(description="The patient's usual level, once there is enough data")
    data_quality: float | None
    forecast: list[ForecastPoint] = Field(description="Damped-trend forecast (what risk assumes), 95% bands, "
                                          "clipped to what is physically possible")
    possible: tuple[float, float] = Field((0.0, 0.0), description="The physically possible range of the vital")
    news2_bands: list[ScoreBand] = Field(default_factory=list, description="The NEWS2 chart's bands for this vital "
                                         "and patient (SpO2 on the patient's scale); empty if NEWS2 does not score it")
    unconfirmed: UnconfirmedReading | None = Field(
        None, description="A reading the twin refused and no later reading has confirmed or refuted: shown, "
        "not yet believed; one scoring 3 raises an 'unconfirmed' re-measure alert")


class HistoryPoint(BaseModel):
    at: int
    metric: str
    raw: float
    estimate: float
    sd: float
    outcome: str


class PatientDetail(BaseModel):
    summary: PatientSummary
    age_band: str | None
    conditions: list[str]
    targets: dict[str, tuple[float, float]]
    spo2_scale: Literal[1, 2] = Field(1, description="NEWS2 SpO2 scale: 2 for hypercapnic respiratory failure")
    vitals: list[Vital]
    history: list[HistoryPoint]
    alerts: list[Alert]
    policy_id: str | None = Field(None, description="Id of the policy file whose thresholds evaluate this patient "
                                  "(docs/policy.md); null before a worker that keeps it has evaluated the patient")


class PatientTrend(BaseModel):
    """A patient's vitals over the last hours, coarsely, for the ward board's sparklines."""

    patient_id: str
    vitals: dict[str, list[tuple[int, float]]] = Field(
        description="By metric: (epoch ms, mean estimate) per time bucket, oldest first; empty buckets left out")
