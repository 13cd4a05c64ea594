"""The ``alert-actions`` topic: people acknowledging and resolving alerts, on their way to the worker that owns
the patient (key = patient id, so an action lands on the same partition number as the patient's vitals and the
same worker applies both, one at a time). The topic is also the audit trail of who did what, when.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streams.enrolment import ANCHORED_ID


class AlertActionV1(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    action: Literal["acknowledge", "resolve"]
    patient_id: str = Field(pattern=ANCHORED_ID)
    alert_id: str = Field(pattern=r"^[0-9a-f]{24}$")
    user: str = Field(pattern=ANCHORED_ID)
    reason: str = Field("", max_length=500)
    at: int = Field(ge=0, description="Epoch ms when the person acted; the policy's clock for this action")


def decode_action(raw: bytes | None, key: bytes | None) -> AlertActionV1 | str:
    if raw is None:
        return "empty message"
    try:
        action = AlertActionV1.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc']) or 'message'}: {first['msg']}"
    if key is not None and key != action.patient_id.encode():
        return "message key is not the patient_id"
    if action.action == "resolve" and not action.reason.strip():
        return "reason: a resolution needs a reason"
    return action
