"""The simulator is realistic where it matters and reproducible; replay matches the worker's core."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import default_start_ms, main, wall_offset_s
from simulation.replay import replay
from simulation.simulator import _make_patient, simulate
from streams.schema import decode, encode
from twin_state.catalogue import Metric

T0 = 1_763_942_400_000


def test_same_seed_same_stream_and_rate_is_per_patient() -> None:
    a = list(simulate(20, 600, rate=1.0, seed=9, start_ms=T0))
    assert a == list(simulate(20, 600, rate=1.0, seed=9, start_ms=T0))
    assert a != list(simulate(20, 600, rate=1.0, seed=10, start_ms=T0))
    assert 0.85 * 20 * 600 < len(a) < 1.1 * 20 * 600
    delivered = [d for d, _ in a]
    assert delivered == sorted(delivered)


def test_every_simulated_reading_passes_validation() -> None:
    for _, r in simulate(10, 900, seed=2, start_ms=T0):
        assert decode(encode(r), r.patient_id.encode(), T0 + 10**7) == r


def test_deteriorating_patients_drift_and_stable_ones_do_not() -> None:
    readings = [r for _, r in simulate(40, 7200, rate=0.5, seed=4, start_ms=T0, deteriorating_share=0.5)]
    end = T0 + 6_600_000

    def late_hr(pid: str) -> float:
        vals = [r.value for r in readings if r.patient_id == pid and r.metric is Metric.HEART_RATE
                and r.device_id.endswith("patch") and r.measured_at > end]
        return statistics.median(vals)

    def early_hr(pid: str) -> float:
        vals = [r.value for r in readings if r.patient_id == pid and r.metric is Metric.HEART_RATE
                and r.device_id.endswith("patch") and r.measured_at < T0 + 300_000]
        return statistics.median(vals)

    rises = sorted(late_hr(f"sim-{i:06d}") - early_hr(f"sim-{i:06d}") for i in range(40))
    assert rises[-5] > 30  # the deteriorating share shows up clearly
    assert rises[5] < 15  # the stable ones stay within their circadian and activity swing


def test_stream_has_artefacts_late_uploads_and_several_devices() -> None:
    stream = list(simulate(50, 3600, seed=1, start_ms=T0))
    readings = [r for _, r in stream]
    assert any(r.value == 0.0 and r.quality == 0.05 for r in readings)  # probe-off zeros
    late = sum(1 for delivered_s, r in stream if T0 + delivered_s * 1000 > r.measured_at + 1000)
    devices = Counter(r.device_id.rsplit("-", 1)[1] for r in readings if r.metric is Metric.HEART_RATE)
    assert set(devices) == {"wrist", "patch"}
    result = replay((encode(r) for r in readings), T0 + 10**8)
    assert late > 0  # buffered uploads reach the gateway after they were measured
    assert result.outcomes["implausible"] > 0 and result.outcomes["innovation"] > 0
    assert result.outcomes["late"] > 0


def test_replay_cli_writes_one_twin_per_patient(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    twins = tmp_path / "twins.jsonl"
    runner = CliRunner()
    out = runner.invoke(main, ["simulate", "--patients", "7", "--duration", "120", "--out", str(events),
                               "--start-ms", str(T0)])
    assert out.exit_code == 0, out.output
    with events.open("ab") as fh:
        fh.write(b"{broken\n")
    out = runner.invoke(main, ["replay", "--input", str(events), "--output", str(twins)])
    assert out.exit_code == 0, out.output
    assert "rejected: not_json=1" in out.output
    lines = twins.read_text().splitlines()
    assert len(lines) == 7 and all('"patient_id":"sim-' in line for line in lines)


def test_a_share_already_deteriorating_is_evenly_spread_and_well_into_its_decline() -> None:
    plain = [_make_patient(i, 3, 1800.0, 0.1) for i in range(40)]
    early = [_make_patient(i, 3, 1800.0, 0.1, already_deteriorating=0.1) for i in range(40)]
    ahead = [p.patient_id for p in early if p.onset_s is not None and p.onset_s < 0]
    assert ahead == [f"sim-{i:06d}" for i in (9, 19, 29, 39)]  # one in every ten beds
    for p in early:
        if p.onset_s is not None and p.onset_s < 0:
            assert 0.5 <= p.deterioration(0.0) <= 0.8
    # Nothing else moves: the others are the same people, and their readings draw the same numbers.
    for a, b in zip(plain, early, strict=True):
        if b.patient_id not in ahead:
            assert (a.hr, a.spo2, a.onset_s, a.ramp_s) == (b.hr, b.spo2, b.onset_s, b.ramp_s)
    assert list(simulate(3, 600.0, seed=5)) == list(simulate(3, 600.0, seed=5, already_deteriorating=0.0))


def test_a_simulation_until_stopped_keeps_event_time_at_or_behind_the_wall_clock() -> None:
    now0, duration, speed = 1_800_000_000_000, 600.0, 20.0
    start = default_start_ms(now0, duration, speed)
    readings = simulate(2, math.inf, seed=4, start_ms=start, course_s=duration)
    late = 0
    for delivered_s, r in itertools.islice(readings, 4000):
        # The reading is sent when the wall clock reaches now0 + wall_offset_s: it must not be stamped later.
        assert r.measured_at <= now0 + wall_offset_s(delivered_s, duration, speed) * 1000 + 1
        late += delivered_s > duration
    assert late > 1000  # it went on past the simulated duration, in real time
    with pytest.raises(ValueError, match="course_s"):
        next(iter(simulate(2, math.inf)))


def test_the_demo_has_clinical_alerts_within_its_first_minutes() -> None:
    # The demo's defaults: every tenth patient already declining at the start. Through the worker's own batch
    # processor (replay_alerts), offline: each of them raises a clinical alert within five minutes.
    from simulation.replay import replay_alerts

    readings = simulate(20, 600.0, seed=1, start_ms=T0, already_deteriorating=0.1)
    events = replay_alerts([encode(r) for _, r in readings])
    raised = {e.patient_id: e.at for e in events if e.kind.value == "raised" and e.condition.value == "clinical"}
    assert {"sim-000009", "sim-000019"} <= raised.keys()
    assert all(raised[p] - T0 <= 5 * 60_000 for p in ("sim-000009", "sim-000019")), raised
