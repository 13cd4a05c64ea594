"""A patient's enrolment profile: who looks after them and what counts as normal for them.

Set by clinicians through enrolment (``twinmon enrol``; the feed's API later), carried to workers on the
``enrolments`` topic, kept in Redis. Pure data: the risk model reads it, nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from twin_state.catalogue import Metric

HYPERCAPNIC = "hypercapnic_respiratory_failure"
"""Confirmed hypercapnic respiratory failure: NEWS2 scores SpO2 on scale 2 (target 88-92%)."""
KNOWN_CONDITIONS = frozenset({HYPERCAPNIC, "copd", "heart_failure", "atrial_fibrillation", "beta_blocker",
                              "pacemaker", "chronic_kidney_disease", "pregnancy"})
AGE_BANDS = ("16-39", "40-64", "65-79", "80+")


class Status(StrEnum):
    ENROLLED = "enrolled"
    DISCHARGED = "discharged"


@dataclass(frozen=True, slots=True)
class Profile:
    patient_id: str
    care_team: str
    updated_at: int
    """Epoch ms of the change; a change older than the stored profile is ignored."""
    status: Status = Status.ENROLLED
    age_band: str | None = None
    conditions: frozenset[str] = frozenset()
    targets: Mapping[Metric, tuple[float, float]] = field(default_factory=dict)
    """Clinician-set target ranges (e.g. SpO2 88-92 %) that replace population norms in predicted risk."""
    last_discharged_at: int = 0
    """Epoch ms of the patient's last discharge (0: never), kept by the store: the feed shows a team nothing
    from before it, so a new enrolment of the id does not reveal an earlier episode."""

    @property
    def spo2_scale2(self) -> bool:
        return HYPERCAPNIC in self.conditions
