"""A patient's alert state as compact versioned MessagePack (stored beside the twin, written with it)."""

from __future__ import annotations

from typing import Any

import msgpack

from alerts.policy import Condition, Level, OpenAlert, PatientAlerts, Pending
from twin_state.errors import CorruptAlertState

FORMAT = 1


def pack(state: PatientAlerts) -> bytes:
    blob: bytes = msgpack.packb(
        [
            FORMAT,
            state.patient_id,
            state.evaluated_at,
            [[c.value, a.alert_id, int(a.level), a.raised_at, a.escalated_at, a.events, a.acknowledged_by,
              a.acknowledged_at, a.worse_since, a.clear_since, int(a.held_level), a.held_since]
             for c, a in state.open.items()],
            [[c.value, int(p.level), p.since] for c, p in state.pending.items()],
            # Optional trailing fields: states written before a field existed simply end earlier.
            state.policy_id,
            state.exertion_at,
        ],
        use_bin_type=True,
    )
    return blob


def unpack(blob: bytes) -> PatientAlerts:
    data: Any = msgpack.unpackb(blob, raw=False)
    if not isinstance(data, list) or not data or data[0] != FORMAT:
        raise CorruptAlertState(f"stored alert state has format {data[0] if data else None!r}; "
                                f"this twinmon reads {FORMAT}")
    _, pid, evaluated_at, opened, pending, *trailing = data
    return PatientAlerts(
        patient_id=pid,
        open={Condition(o[0]): OpenAlert(o[1], Condition(o[0]), Level(o[2]), *o[3:10],
                                         *([Level(o[10]), *o[11:12]] if len(o) > 10 else [])) for o in opened},
        pending={Condition(p[0]): Pending(Level(p[1]), p[2]) for p in pending},
        evaluated_at=evaluated_at,
        policy_id=trailing[0] if trailing else None,
        exertion_at=trailing[1] if len(trailing) > 1 else None,
    )


def event_to_wire(e: Any, policy_id: str | None = None) -> dict[str, Any]:
    """An ``AlertEvent`` as the JSON published on the ``alerts`` topic, with the id of the policy that raised
    it (``alerts.config.policy_id``; null when not known)."""
    return {
        "v": 1, "event_id": e.event_id, "alert_id": e.alert_id, "patient_id": e.patient_id, "kind": e.kind.value,
        "condition": e.condition.value, "level": e.level.name.lower(), "at": e.at, "reason": e.reason,
        "user": e.user, "policy_id": policy_id,
    }
