"""Offline replay: the same validation and twin core as the worker, over a JSON-lines file, with no I/O services.

Each line's number is its log position, so replaying a file twice, or a file with repeated lines, behaves
exactly as Kafka redelivery does in the worker.

A file has no record timestamps, so its lines are given ingest times by the recording clock
(``recording_clock``; docs/event-schema.md, "Timestamps and the ingest clock"): deterministic, no wall clock, so
that a replay's twins and alerts equal the worker's for the same log. ``replay_alerts`` runs the worker's own
``BatchProcessor`` over the file and returns the alert events it would publish.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from alerts.codec import event_to_wire
from alerts.policy import AlertEvent
from streams.processor import AlertingConfig, BatchProcessor, RawMessage
from streams.schema import Rejected, decode
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Outcome, Position, Twin, new_twin, step

RECORDING_LOOKAHEAD = 127
"""A line and the lines after it whose lower quartile of measured-at its ingest time may advance to."""
SWEEP_EVERY_MS = 30_000
"""The no-data sweep's period on the recording clock, as the worker's timer on the wall clock."""
BATCH_LINES = 500
_UNBOUNDED = 2**62


def recording_clock(lines: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
    """Each line of a recording (stripped of its line end) with its ingest time on the recording clock.

    The ingest time of a line is the later of the latest measured-at among the readings accepted before it and
    the earlier of its own measured-at and the lower quartile of the measured-at of the valid readings among the
    next ``RECORDING_LOOKAHEAD - 1`` lines (the last reading of a file has none and cannot move the clock); a
    reading more than the allowance ahead of that is refused as ``future_timestamp``. So the first reading
    starts the clock; readings stamped hours ahead cannot move it unless three quarters of the lines after them
    follow them (one per patient in a row, as a wrong clock on a shared gateway would send, does not); a
    recording that goes quiet and resumes (hourly spot checks) is followed, because the readings after the gap
    agree with each other; and the clock never runs ahead of the readings it has reached. Lines that are not
    valid readings get the clock as it stands."""
    window: deque[tuple[bytes, int | None]] = deque()
    ordered: list[int] = []  # the valid measured-at of the window, sorted
    accepted = 0

    def stamp() -> tuple[bytes, int]:
        nonlocal accepted
        line, measured = window.popleft()
        if measured is None:
            return line, accepted
        del ordered[bisect.bisect_left(ordered, measured)]
        # Nothing after it to agree with: the last reading of a recording cannot move the clock on alone.
        quartile = ordered[(len(ordered) - 1) // 4] if ordered else (accepted or measured)
        ingest = max(accepted, min(measured, quartile))
        if not isinstance(decode(line, None, ingest), Rejected):
            accepted = max(accepted, measured)
        return line, ingest

    for raw in lines:
        line = raw.rstrip(b"\r\n")
        decoded = decode(line, None, _UNBOUNDED)
        measured = None if isinstance(decoded, Rejected) else decoded.measured_at
        window.append((line, measured))
        if measured is not None:
            bisect.insort(ordered, measured)
        if len(window) == RECORDING_LOOKAHEAD:
            yield stamp()
    while window:
        yield stamp()


@dataclass(slots=True)
class ReplayResult:
    twins: dict[str, Twin] = field(default_factory=dict)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    lines: int = 0


def replay(lines: Iterable[bytes], now_ms: int | None = None) -> ReplayResult:
    """The twins of a recording. Ingest times come from the recording clock, or are all ``now_ms`` if given (a log
    just produced to Kafka, compared with what the worker made of it)."""
    result = ReplayResult()
    twins = result.twins
    stamped = recording_clock(lines) if now_ms is None else ((ln.rstrip(b"\r\n"), now_ms) for ln in lines)
    for number, (raw, ingest) in enumerate(stamped):
        result.lines += 1
        decoded = decode(raw, None, ingest)
        if isinstance(decoded, Rejected):
            result.rejected[decoded.reason.value] += 1
            continue
        twin = twins.get(decoded.patient_id) or new_twin(decoded.patient_id)
        twin, outcome = step(twin, decoded, Position(0, number))
        twins[decoded.patient_id] = twin
        result.outcomes[outcome] += 1
    return result


def replay_alerts(lines: Iterable[bytes], evaluation: AlertingConfig | None = None) -> list[AlertEvent]:
    """The alert events the worker would publish for this log, in order: its ``BatchProcessor`` (twin, risk, alert
    policy) with an in-memory store, ingest times from the recording clock, and the no-data sweep every
    ``SWEEP_EVERY_MS`` of it. Event ids depend on event times, not on batching, so they are the worker's ids."""
    return asyncio.run(_replay_alerts(lines, evaluation or AlertingConfig()))


async def _replay_alerts(lines: Iterable[bytes], evaluation: AlertingConfig) -> list[AlertEvent]:
    events: list[AlertEvent] = []

    async def publish(batch: Sequence[AlertEvent]) -> None:
        events.extend(batch)

    proc = BatchProcessor(InMemoryTwinStore(history_length=1), publish=publish, evaluation=evaluation)
    batch: list[RawMessage] = []
    clock = 0
    next_sweep: int | None = None
    for number, (raw, ingest) in enumerate(recording_clock(lines)):
        if not raw.strip():
            continue
        clock = max(clock, ingest)
        if next_sweep is None:
            next_sweep = (clock // SWEEP_EVERY_MS + 1) * SWEEP_EVERY_MS
        while clock >= next_sweep:
            if batch:
                await proc.process(batch, next_sweep)
                batch.clear()
            await proc.sweep(next_sweep)
            next_sweep += SWEEP_EVERY_MS
        decoded = decode(raw, None, ingest)
        key = decoded.patient_id.encode() if not isinstance(decoded, Rejected) else None
        batch.append(RawMessage(0, number, key, raw, ingest))
        if len(batch) >= BATCH_LINES:
            await proc.process(batch, clock)
            batch.clear()
    if batch:
        await proc.process(batch, clock)
    return events


def alert_wire(event: AlertEvent, policy_id: str | None = None) -> dict[str, Any]:
    """An alert event as the worker publishes it on the alerts topic, with the id of the policy it ran; offline
    there is no enrolment profile, so no care team."""
    return {**event_to_wire(event, policy_id), "care_team": None}


def read_lines(stream: IO[bytes]) -> Iterable[bytes]:
    for line in stream:
        if line.strip():
            yield line
