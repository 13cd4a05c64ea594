from __future__ import annotations

from twin_state.catalogue import Metric
from twin_state.twin import Position, Reading, new_twin, step
from twin_state.view import DEFAULT_STALE_AFTER_MS, vital_views

T0 = 1_763_942_400_000


def test_uncertainty_grows_while_no_data_arrives_and_the_vital_turns_stale() -> None:
    twin = new_twin("p-1")
    for i in range(10):
        twin, _ = step(twin, Reading("p-1", "w", Metric.HEART_RATE, 80.0, T0 + i * 5000, i, 1.0), Position(0, i))
    last = T0 + 45_000
    fresh = vital_views(twin, last)[0]
    later = vital_views(twin, last + DEFAULT_STALE_AFTER_MS[Metric.HEART_RATE])[0]
    stale = vital_views(twin, last + DEFAULT_STALE_AFTER_MS[Metric.HEART_RATE] + 1)[0]
    assert fresh.sd < later.sd < stale.sd
    assert fresh.low95 < 80.0 < fresh.high95
    assert not fresh.stale and not later.stale and stale.stale
