"""A simulated ward as a log for processor tests: patients deteriorating and stable, nurses' entries, a refused cuff
reading now and then and a reading from the future; the patients' profiles; a publisher that records."""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

from alerts.policy import AlertEvent
from simulation.simulator import simulate
from streams.processor import RawMessage
from streams.schema import encode
from twin_state.catalogue import Metric
from twin_state.profile import HYPERCAPNIC, Profile
from twin_state.twin import Reading

T0 = 1_763_942_400_000
NOW = T0 + 10**8


class Profiles:
    def __init__(self, profiles: Sequence[Profile]) -> None:
        self.stored = {p.patient_id: p for p in profiles}

    async def get_many(self, patient_ids: Sequence[str]) -> dict[str, Profile]:
        return {pid: self.stored[pid] for pid in patient_ids if pid in self.stored}


@functools.cache
def ward(seed: int = 8, patients: int = 8, hours: float = 3.0) -> tuple[RawMessage, ...]:
    """Simulated patients, half of them deteriorating, with nurses' entries (new confusion, oxygen) now and then, a
    cuff reading the twin refuses (a re-measure prompt) and a reading from the future."""
    readings = [r for _, r in simulate(patients, hours * 3600.0, rate=0.25, seed=seed, start_ms=T0,
                                       deteriorating_share=0.5)]
    rng = random.Random(seed)
    out: list[Reading] = []
    for r in readings:
        out.append(r)
        if rng.random() < 0.002:
            metric, value = rng.choice([(Metric.CONSCIOUSNESS, 1.0), (Metric.CONSCIOUSNESS, 0.0),
                                        (Metric.O2_FLOW, 2.0), (Metric.O2_FLOW, 0.0)])
            out.append(Reading(r.patient_id, "nurse", metric, value, r.measured_at, len(out)))
        if rng.random() < 0.001:
            out.append(Reading(r.patient_id, f"{r.patient_id}-cuff", Metric.BP_SYSTOLIC, 72.0, r.measured_at + 1,
                               10**6 + len(out)))
    out.append(Reading(readings[0].patient_id, "wrist", Metric.HEART_RATE, 80.0, NOW + 10**9, 10**7))
    return tuple(RawMessage(0, i, r.patient_id.encode(), encode(r)) for i, r in enumerate(out))


def profiles(messages: Sequence[RawMessage]) -> Profiles:
    pids = sorted({m.key.decode() for m in messages if m.key})
    return Profiles([
        Profile(pid, "ward-7", T0, conditions=frozenset({HYPERCAPNIC}) if i % 3 == 0 else frozenset(),
                targets={Metric.HEART_RATE: (50.0, 120.0)} if i % 3 == 1 else {})
        for i, pid in enumerate(pids)])


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[AlertEvent]] = []

    async def __call__(self, events: Sequence[AlertEvent]) -> None:
        self.batches.append(list(events))
