"""The latency stage's steady state: what a worker sees an hour into a shift, not the first minute of a cold start.

* Every patient is enrolled (a profile in Redis, in ``CARE_TEAMS`` care teams) and has a twin in Redis already,
  aged ``AGED_MINUTES`` of data (copies of ``TEMPLATES`` simulated patients' twins under the patients' ids), in
  its partition's index: the worker preloads them when it is assigned the partitions (``bench.pipeline.seed``).
* One reading a second from each patient, stamped on the wall clock; one patient in ``SICK_EVERY`` unwell from the
  first reading, so that alerts are raised (and stay open) within the run.
* One message in ``INVALID_EVERY`` invalid (not JSON, an impossible value, an unknown metric: dead-lettered), one
  in ``DUPLICATE_EVERY`` sent twice (the gateway retried), and one patient in ``MANUAL_EVERY`` gets a nurse's
  consciousness entry during the run.

Only ``plan``'s readings marked ``sample`` are timed (a valid, first-sent vital reading), so the latency is that of
the readings a clinician waits for, in the mix that slows them down.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import islice

from simulation.simulator import simulate
from streams.enrolment import profile_to_wire
from streams.schema import encode
from twin_state.catalogue import Metric
from twin_state.profile import Profile
from twin_state.twin import Position, Reading, Twin, new_twin, step

SEED = 1
AGED_MINUTES = 60.0
TEMPLATES = 40
INVALID_EVERY = 100
DUPLICATE_EVERY = 100
MANUAL_EVERY = 10
CARE_TEAMS = 20
SICK_EVERY = 50
"""One patient in this many is unwell from the first reading (NEWS2 well above 7), so that alerts are raised
(after the policy's 30 s persistence) within the run and their latency can be timed."""
SICK_VALUES = {Metric.HEART_RATE: 138.0, Metric.SPO2: 86.0, Metric.RESP_RATE: 31.0, Metric.TEMPERATURE: 39.6,
               Metric.BP_SYSTOLIC: 88.0}


@dataclass(frozen=True, slots=True)
class Planned:
    at_s: float
    """When to send it, seconds after the start."""
    key: bytes
    value: bytes
    reading: Reading | None
    """The reading sent (None for an invalid message); its measured_at is relative to the plan's start."""
    sample: bool
    """Whether its reading-to-twin latency is timed."""


def sick(r: Reading) -> Reading:
    value = SICK_VALUES.get(r.metric)
    if value is None or int(r.patient_id.rsplit("-", 1)[-1]) % SICK_EVERY:
        return r
    return replace(r, value=value)


def _invalid(i: int, r: Reading) -> bytes:
    kind = i % 3
    if kind == 0:
        return b'{"v": 1, "patient_id": "' + r.patient_id.encode() + b'", "metric": '  # cut off: not JSON
    if kind == 1:
        return encode(replace(r, metric=Metric.HEART_RATE, value=-40.0))  # impossible value
    return encode(r).replace(r.metric.value.encode(), b"heart_rhythm", 1)  # unknown metric


def plan(patients: int, seconds: float, start_ms: int) -> list[Planned]:
    """What to send, in send order: ``patients`` patients, one reading a second each, for ``seconds``."""
    simulated = islice(simulate(patients, seconds * 1.05, 1.0, SEED, start_ms), int(patients * seconds))
    out: list[Planned] = []
    for i, (at_s, r) in enumerate(simulated):
        r = sick(r)
        key = r.patient_id.encode()
        if i % INVALID_EVERY == INVALID_EVERY - 1:
            out.append(Planned(at_s, key, _invalid(i // INVALID_EVERY, r), None, False))
            continue
        value = encode(r)
        out.append(Planned(at_s, key, value, r, True))
        if i % DUPLICATE_EVERY == DUPLICATE_EVERY // 2:
            out.append(Planned(at_s, key, value, r, False))
    for n in range(0, patients, MANUAL_EVERY):
        pid = f"sim-{n:06d}"
        at_s = (n * 7.919) % seconds
        entry = Reading(pid, "nurse-station", Metric.CONSCIOUSNESS, 0.0, start_ms + int(at_s * 1000), 1, None)
        out.append(Planned(at_s, pid.encode(), encode(entry), entry, False))
    out.sort(key=lambda p: p.at_s)
    return out


def patient_ids(planned: Sequence[Planned]) -> list[str]:
    return sorted({p.key.decode() for p in planned})


def profile(patient_id: str, i: int, now_ms: int) -> Profile:
    """Patient ``i``'s enrolment, in one of ``CARE_TEAMS`` teams."""
    return Profile(patient_id, f"bench-ward-{i % CARE_TEAMS:02d}", now_ms, age_band="65-79")


def profiles(ids: Sequence[str], now_ms: int) -> list[tuple[bytes, bytes]]:
    """An enrolment per patient on the wire (``profile``)."""
    return [(pid.encode(), profile_to_wire(profile(pid, i, now_ms))) for i, pid in enumerate(ids)]


def aged_twins(ids: Sequence[str], minutes: float = AGED_MINUTES, templates: int = TEMPLATES) -> list[Twin]:
    """A twin per id with ``minutes`` of data ending 30 s ago: copies of ``templates`` simulated patients' twins."""
    seconds = minutes * 60.0
    start_ms = int(time.time() * 1000) - int(seconds * 1000) - 30_000
    made: dict[str, Twin] = {}
    for i, (_, r) in enumerate(simulate(templates, seconds, 1.0, SEED + 1, start_ms)):
        twin = made.get(r.patient_id) or new_twin(r.patient_id)
        made[r.patient_id], _ = step(twin, r, Position(-1, i))
    bases = list(made.values())
    return [replace(bases[i % len(bases)], patient_id=pid) for i, pid in enumerate(ids)]
