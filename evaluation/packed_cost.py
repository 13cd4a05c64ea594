"""What ``twin_state.packed`` saves: step time, worker memory per resident twin and serialisation, each against the
frozen-dataclass twin (``twin_state.twin``) and ``codec.pack``/``unpack`` in the same run. Prints figures; asserts
only that both forms agree. (Belongs with ``bench/kalman.py``; here while ``bench/`` is being changed elsewhere.)

Run: ``python -m evaluation.packed_cost [--patients 200] [--twins 20000] [--rss twin|packed]``. ``--rss`` prints
only the resident-set growth of holding the twins, in a process of its own (run it once per form).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from simulation.simulator import simulate
from twin_state import codec
from twin_state.packed import PackedTwin, from_twin, frombytes, step_packed, to_twin, tobytes
from twin_state.twin import Position, Reading, Twin, new_twin, step

START_MS = 1_763_942_400_000
MINUTES = 10.0


def readings(patients: int, minutes: float, seed: int = 7) -> list[Reading]:
    return [r for _, r in simulate(patients, minutes * 60.0, 1.0, seed, START_MS)]


def aged(rs: Sequence[Reading]) -> dict[str, Twin]:
    twins: dict[str, Twin] = {}
    for i, r in enumerate(rs):
        twins[r.patient_id] = step(twins.get(r.patient_id) or new_twin(r.patient_id), r, Position(0, i))[0]
    return twins


def step_figures(patients: int) -> None:
    """µs per reading over the second ten minutes of ``patients`` simulated patients, both forms, alternating."""
    rs = readings(patients, 2 * MINUTES)
    half = [r for r in rs if r.measured_at < START_MS + MINUTES * 60_000]
    rest = [r for r in rs if r.measured_at >= START_MS + MINUTES * 60_000]
    base = aged(half)
    positions = [Position(1, i) for i in range(len(rest))]
    oracle_us, packed_us = [], []
    for _ in range(5):
        twins = dict(base)
        start = time.perf_counter()
        for r, pos in zip(rest, positions, strict=True):
            twins[r.patient_id] = step(twins[r.patient_id], r, pos)[0]
        oracle_us.append((time.perf_counter() - start) / len(rest) * 1e6)
        packs = {pid: from_twin(t) for pid, t in base.items()}
        start = time.perf_counter()
        for r, pos in zip(rest, positions, strict=True):
            step_packed(packs[r.patient_id], r, pos)
        packed_us.append((time.perf_counter() - start) / len(rest) * 1e6)
        if any(to_twin(packs[pid]) != t for pid, t in twins.items()):
            raise AssertionError("the packed twins differ from the oracle's")
    print(f"step, {len(rest):,} readings of {patients} patients after {MINUTES:.0f} min of data, 5 rounds:")
    print(f"  twin.step     {min(oracle_us):6.2f} µs best, {statistics.median(oracle_us):6.2f} median")
    print(f"  step_packed   {min(packed_us):6.2f} µs best, {statistics.median(packed_us):6.2f} median"
          f"  ({statistics.median(oracle_us) / statistics.median(packed_us):.1f}x)")


def templates(patients: int) -> list[Twin]:
    return list(aged(readings(patients, MINUTES)).values())


def resident(kind: str, bases: Sequence[Twin], ids: Sequence[str]) -> list[Twin] | list[PackedTwin]:
    """``len(ids)`` independent twins (as a worker holds them after loading each from Redis: nothing shared but
    the patient id), each a copy of one of ``bases``."""
    blobs = [codec.pack(replace(bases[i % len(bases)], patient_id=pid)) for i, pid in enumerate(ids)]
    gc.collect()
    if kind == "twin":
        return [codec.unpack(b) for b in blobs]
    return [from_twin(codec.unpack(b)) for b in blobs]


def memory_figures(patients: int, n: int) -> None:
    bases = templates(patients)
    ids = [f"sim-{i:06d}-copy" for i in range(n)]
    for kind in ("twin", "packed"):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        held = resident(kind, bases, ids)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        print(f"memory, {n:,} ten-minute twins as {kind:6}: {(after - before) / n:7,.0f} B/twin (tracemalloc; "
              "patient id strings excluded, device id strings included)")
        del held


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def rss_figure(kind: str, patients: int, n: int) -> None:
    bases = templates(patients)
    ids = [f"sim-{i:06d}-copy" for i in range(n)]
    blobs = [codec.pack(replace(bases[i % len(bases)], patient_id=pid)) for i, pid in enumerate(ids)]
    gc.collect()
    before = rss_kb()
    if kind == "twin":
        held: list[object] = [codec.unpack(b) for b in blobs]
    else:
        held = [from_twin(codec.unpack(b)) for b in blobs]
    gc.collect()
    print(f"RSS growth, {n:,} ten-minute twins as {kind}: {(rss_kb() - before) * 1024 / n:,.0f} B/twin")
    del held


def per_call(fn: Callable[[], object], seconds: float = 0.5) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            fn()
        n += 50
    return (time.perf_counter() - start) / n * 1e6


def bytes_figures(patients: int) -> None:
    bases = templates(patients)
    packs = [from_twin(t) for t in bases]
    blobs = [codec.pack(t) for t in bases]
    pblobs = [tobytes(p) for p in packs]

    def each(fn: Callable[[object], object], xs: Sequence[object]) -> Callable[[], None]:
        def go() -> None:
            for x in xs:
                fn(x)
        return go

    k = len(bases)
    rows = [
        ("codec.pack", per_call(each(codec.pack, bases)) / k),  # type: ignore[arg-type]
        ("codec.unpack", per_call(each(codec.unpack, blobs)) / k),  # type: ignore[arg-type]
        ("packed.tobytes", per_call(each(tobytes, packs)) / k),  # type: ignore[arg-type]
        ("packed.frombytes", per_call(each(frombytes, pblobs)) / k),  # type: ignore[arg-type]
        ("packed.from_twin", per_call(each(from_twin, bases)) / k),  # type: ignore[arg-type]
        ("packed.to_twin", per_call(each(to_twin, packs)) / k),  # type: ignore[arg-type]
    ]
    print(f"serialisation, {k} ten-minute twins: codec {statistics.mean(map(len, blobs)):,.0f} B, packed "
          f"{statistics.mean(map(len, pblobs)):,.0f} B (of which the bytearray "
          f"{statistics.mean(len(p.buf) for p in packs):,.0f} B)")
    for name, us in rows:
        print(f"  {name:17} {us:6.2f} µs")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.packed_cost", description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--twins", type=int, default=20_000)
    parser.add_argument("--rss", choices=("twin", "packed"))
    args = parser.parse_args(argv)
    if args.rss:
        rss_figure(args.rss, args.patients, args.twins)
        return
    step_figures(args.patients)
    memory_figures(args.patients, args.twins)
    bytes_figures(args.patients)


if __name__ == "__main__":
    main()
