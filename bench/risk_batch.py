"""Cost of a risk evaluation: the scalar ``risk`` one at a time against ``risk_many`` over batches of 1 to 10,000, on
the same evaluations in the same run (simulated patients, half deteriorating, each taken at 40 moments). Prints
figures; asserts nothing (timings are noisy here). ``python -m bench.risk_batch``."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from simulation.simulator import simulate
from twin_state.profile import Profile
from twin_state.risk import risk
from twin_state.risk_batch import risk_many
from twin_state.twin import Position, Twin, new_twin, step

T0 = 1_763_942_400_000


def evaluations(patients: int = 250, moments: int = 40) -> list[tuple[Twin, Profile | None, int]]:
    at = [T0 + (k + 1) * 6 * 60_000 for k in range(moments)]
    twins: dict[str, Twin] = {}
    out: list[tuple[Twin, Profile | None, int]] = []
    k = 0
    for i, (_, r) in enumerate(simulate(patients, moments * 360.0, 0.05, 17, T0, 0.5)):
        while k < len(at) and r.measured_at >= at[k]:
            out += [(twins[pid], None, at[k]) for pid in sorted(twins)]
            k += 1
        twins[r.patient_id] = step(twins.get(r.patient_id) or new_twin(r.patient_id), r, Position(0, i))[0]
    return out


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    pool = evaluations()
    print(f"risk per evaluation, us (best of 3; {len(pool)} evaluations; one core, this machine, noisy)")
    print("  batch size   scalar risk   risk_many   speed-up")
    gc.collect()
    for size in (1, 3, 10, 100, 1_000, 10_000):
        items = pool[: max(size, 1_000)] if size < 1_000 else pool[:size]
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        scalar = best(lambda: [risk(t, p, n) for t, p, n in items], 3) / len(items) * 1e6  # noqa: B023
        many = best(lambda: [risk_many(b) for b in batches], 3) / len(items) * 1e6  # noqa: B023
        print(f"  {size:10d} {scalar:13.1f} {many:11.1f} {scalar / many:9.1f}x")


if __name__ == "__main__":
    main()
