"""Offline replay: the same validation and twin core as the worker, over a JSON-lines file, with no I/O services.

Each line's number is its log position, so replaying a file twice, or a file with repeated lines, behaves
exactly as Kafka redelivery does in the worker.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from streams.schema import Rejected, decode
from twin_state.twin import Outcome, Position, Twin, new_twin, step


@dataclass(slots=True)
class ReplayResult:
    twins: dict[str, Twin] = field(default_factory=dict)
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    lines: int = 0


def replay(lines: Iterable[bytes], now_ms: int) -> ReplayResult:
    result = ReplayResult()
    twins = result.twins
    for number, line in enumerate(lines):
        result.lines += 1
        raw = line.rstrip(b"\r\n")
        decoded = decode(raw, None, now_ms)
        if isinstance(decoded, Rejected):
            result.rejected[decoded.reason.value] += 1
            continue
        twin = twins.get(decoded.patient_id) or new_twin(decoded.patient_id)
        twin, outcome = step(twin, decoded, Position(0, number))
        twins[decoded.patient_id] = twin
        result.outcomes[outcome] += 1
    return result


def read_lines(stream: IO[bytes]) -> Iterable[bytes]:
    for line in stream:
        if line.strip():
            yield line
