"""The simulator is realistic where it matters and reproducible; replay matches the worker's core."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from click.testing import CliRunner

from cli.main import main
from simulation.replay import replay
from simulation.simulator import simulate
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
