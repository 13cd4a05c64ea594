"""What the worker writes to Kafka: alert lifecycle events (``alerts``) and dead letters (``vitals.dlq``).

Each sender awaits the broker's acknowledgement of everything it sent before it returns, so that a caller that
returns (and so lets its batch be acknowledged) knows the broker has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson

from alerts.codec import event_to_wire
from alerts.policy import AlertEvent
from streams.metrics import Metrics
from streams.processor import BatchResult, RawMessage
from streams.schema import Reason, Rejected
from twin_state.profile import Profile, Status


@dataclass(frozen=True, slots=True)
class AlertPublisher:
    """The processor's ``publish``: alert events to ``topic``, each naming its patient's care team."""

    app: faust.App
    topic: str
    policy_id: str
    metrics: Metrics
    profile_of: Callable[[str], Profile | None]
    """The patient's profile as the processor holds it."""

    async def __call__(self, events: Sequence[AlertEvent]) -> None:
        # Keyed by patient: one patient's alert lifecycle stays in order on one partition. Awaited before the
        # twins are written (see streams.processor).
        futures = []
        for e in events:
            wire = event_to_wire(e, self.policy_id)
            profile = self.profile_of(e.patient_id)
            # A discharged patient belongs to no team: its alerts reach no team's page.
            wire["care_team"] = (profile.care_team if profile is not None and profile.status is Status.ENROLLED
                                 else None)
            futures.append(await self.app.producer.send(
                self.topic, e.patient_id.encode(), orjson.dumps(wire), None, None, None))
        for fut in futures:
            await fut
        self.metrics.alerts_published(self.topic, events, time.time())


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """The dead-letter topic: each message as it arrived, with why it was refused and where it came from in its
    headers (``twinmon-reason``, ``twinmon-detail``, ``twinmon-source``)."""

    app: faust.App
    topic: str
    metrics: Metrics

    async def send(self, source_topic: str, result: BatchResult) -> None:
        """Dead-letter a batch's refused messages (the processor has counted them)."""
        if not result.dead_letters:
            return
        futures = []
        for msg, rejected in result.dead_letters:
            headers = [
                ("twinmon-reason", rejected.reason.value.encode()),
                ("twinmon-detail", rejected.detail.encode("utf-8", "replace")),
                ("twinmon-source", f"{source_topic}/{msg.partition}/{msg.offset}".encode()),
            ]
            futures.append(await self.app.producer.send(self.topic, msg.key, msg.value, None, None, headers))
        for fut in futures:
            await fut

    async def reject_one(self, msg: Any, reason: Reason, detail: str, source_topic: str) -> None:
        """Dead-letter one message of a low-volume topic (enrolments, alert actions) and count it."""
        raw = RawMessage(msg.partition, msg.offset, msg.key, msg.value)
        await self.send(source_topic, BatchResult(dead_letters=[(raw, Rejected(reason, detail))]))
        self.metrics.dead_lettered.labels(reason.value).inc()
        self.metrics.events_produced.labels(self.topic).inc()
