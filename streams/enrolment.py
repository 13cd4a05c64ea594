"""The ``enrolments`` topic: wire form (JSON, validated with pydantic) of a patient's enrolment profile.

Key = patient id; the topic is compacted, so the latest profile of every patient is always replayable.
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streams.schema import ID_PATTERN
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.profile import AGE_BANDS, KNOWN_CONDITIONS, Profile, Status

ANCHORED_ID = f"^{ID_PATTERN.pattern}$"  # pydantic searches; the id must match whole


class EnrolmentV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    patient_id: str = Field(pattern=ANCHORED_ID)
    care_team: str = Field(pattern=ANCHORED_ID)
    status: Status = Status.ENROLLED
    age_band: str | None = None
    conditions: list[str] = Field(default_factory=list, max_length=20)
    targets: dict[str, tuple[float, float]] = Field(default_factory=dict)
    updated_at: int = Field(ge=0)

    @field_validator("age_band")
    @classmethod
    def _age_band(cls, v: str | None) -> str | None:
        if v is not None and v not in AGE_BANDS:
            raise ValueError(f"age band must be one of {', '.join(AGE_BANDS)}")
        return v

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - KNOWN_CONDITIONS)
        if unknown:
            raise ValueError(f"unknown condition(s) {unknown}; known: {', '.join(sorted(KNOWN_CONDITIONS))}")
        return v

    @model_validator(mode="after")
    def _targets(self) -> EnrolmentV1:
        for name, (lo, hi) in self.targets.items():
            if name not in {m.value for m in CATALOGUE}:
                raise ValueError(f"targets: {name!r} is not a filtered vital sign")
            plo, phi = CATALOGUE[Metric(name)].plausible
            if not plo <= lo < hi <= phi:
                raise ValueError(f"targets: {name} range {lo}..{hi} must be increasing and within {plo}..{phi}")
        return self

    def to_profile(self) -> Profile:
        return Profile(
            patient_id=self.patient_id,
            care_team=self.care_team,
            updated_at=self.updated_at,
            status=self.status,
            age_band=self.age_band,
            conditions=frozenset(self.conditions),
            targets={Metric(k): (float(lo), float(hi)) for k, (lo, hi) in sorted(self.targets.items())},
        )


def profile_to_wire(p: Profile) -> bytes:
    return orjson.dumps(
        {
            "v": 1, "patient_id": p.patient_id, "care_team": p.care_team, "status": p.status.value,
            "age_band": p.age_band, "conditions": sorted(p.conditions),
            "targets": {m.value: list(r) for m, r in sorted(p.targets.items())}, "updated_at": p.updated_at,
        }
    )


def decode_enrolment(raw: bytes | None, key: bytes | None) -> Profile | str:
    """The profile, or a one-line reason it was refused (never raises on bad input)."""
    if raw is None:
        return "empty message"
    try:
        model = EnrolmentV1.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        return f"{where}: {first['msg']}"
    if key is not None and key != model.patient_id.encode():
        return "message key is not the patient_id"
    return model.to_profile()
