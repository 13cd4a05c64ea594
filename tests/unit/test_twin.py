"""The twin's transition: what each kind of reading does, and that the same input always gives the same twin."""

from __future__ import annotations

import pytest

from streams.simulator import simulate
from twin_state import codec
from twin_state.catalogue import CATALOGUE, Metric
from twin_state.errors import CorruptTwin
from twin_state.twin import Outcome, Position, Reading, Twin, measurement_variance, new_twin, step

T0 = 1_763_942_400_000


def hr(value: float, t_s: float, seq: int, device: str = "wrist", quality: float | None = 0.9) -> Reading:
    return Reading("p-1", device, Metric.HEART_RATE, value, T0 + int(t_s * 1000), seq, quality)


def run(readings: list[Reading], twin: Twin | None = None, start: int = 0) -> tuple[Twin, list[Outcome]]:
    twin = twin or new_twin("p-1")
    outcomes = []
    for i, r in enumerate(readings):
        twin, outcome = step(twin, r, Position(0, start + i))
        outcomes.append(outcome)
    return twin, outcomes


def test_first_reading_starts_the_filter_at_the_reading() -> None:
    twin, outcomes = run([hr(72, 0, 0)])
    v = twin.vitals[Metric.HEART_RATE]
    assert outcomes == [Outcome.APPLIED]
    assert v.filter.level == 72.0 and v.filter.trend == 0.0 and v.accepted == 1 and v.last_raw == 72.0
    assert (twin.partition, twin.offset) == (0, 0)


def test_a_sustained_rise_is_tracked_with_a_positive_trend() -> None:
    twin, _ = run([hr(70 + 0.5 * i, 10 * i, i) for i in range(60)])  # +3 bpm/min for 10 minutes
    v = twin.vitals[Metric.HEART_RATE]
    assert v.filter.level == pytest.approx(99.5, abs=2.0)
    assert v.filter.trend == pytest.approx(3.0, abs=0.6)


def test_redelivered_position_is_a_no_op() -> None:
    twin, _ = run([hr(72, 0, 0), hr(74, 5, 1)])
    again, outcome = step(twin, hr(74, 5, 1), Position(0, 1))
    assert outcome is Outcome.REDELIVERED and again is twin
    older, outcome = step(twin, hr(90, 9, 7), Position(0, 0))
    assert outcome is Outcome.REDELIVERED and older is twin


def test_new_partition_position_is_applied() -> None:
    twin, _ = run([hr(72, 0, 0)], start=500)
    moved, outcome = step(twin, hr(73, 5, 1), Position(3, 2))
    assert outcome is Outcome.APPLIED and (moved.partition, moved.offset) == (3, 2)


def test_device_retransmission_is_a_counted_duplicate() -> None:
    twin, outcomes = run([hr(72, 0, 5), hr(72, 0, 5), hr(80, 0, 4)])
    assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert twin.counts.duplicate == 2 and twin.vitals[Metric.HEART_RATE].accepted == 1
    assert twin.offset == 2  # the position advanced: a replay of these messages is a no-op too


def test_device_reboot_restarting_its_sequence_is_accepted() -> None:
    _, outcomes = run([hr(72, 0, 900), hr(73, 60, 0)])
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED]


@pytest.mark.parametrize("value", [0.0, 24.9, 230.1, 277.0])
def test_implausible_values_are_artefacts_that_do_not_move_the_estimate(value: float) -> None:
    twin, outcomes = run([hr(72, 0, 0), hr(value, 5, 1)])
    assert outcomes[-1] is Outcome.ARTEFACT
    assert twin.vitals[Metric.HEART_RATE].filter.level == 72.0 and twin.counts.artefact == 1


@pytest.mark.parametrize("value", [25.0, 230.0])
def test_plausible_range_edges_are_accepted(value: float) -> None:
    _, outcomes = run([hr(value, 0, 0)])
    assert outcomes == [Outcome.APPLIED]


def test_late_reading_is_counted_and_not_applied() -> None:
    twin, outcomes = run([hr(72, 60, 0, device="patch"), hr(90, 30, 0, device="wrist")])
    assert outcomes == [Outcome.APPLIED, Outcome.LATE]
    assert twin.counts.late == 1 and twin.vitals[Metric.HEART_RATE].last_raw == 72.0


def test_two_devices_at_the_same_instant_are_fused() -> None:
    twin, outcomes = run([hr(70, 0, 0, device="wrist"), hr(76, 0, 0, device="patch")])
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED]
    assert 70 < twin.vitals[Metric.HEART_RATE].filter.level < 76


def test_low_quality_and_movement_make_a_reading_count_for_less() -> None:
    spec = CATALOGUE[Metric.HEART_RATE]
    assert measurement_variance(spec, 1.0, 0.0) == spec.measurement_noise
    assert measurement_variance(spec, 0.5, 0.0) == 2 * spec.measurement_noise
    assert measurement_variance(spec, 0.0, 0.0) == spec.measurement_noise / 0.05
    assert measurement_variance(spec, 1.0, 120.0) == 3 * spec.measurement_noise
    assert measurement_variance(CATALOGUE[Metric.TEMPERATURE], 1.0, 120.0) == CATALOGUE[
        Metric.TEMPERATURE
    ].measurement_noise


def test_same_readings_give_bit_identical_twins_and_codec_round_trips_exactly() -> None:
    readings = [r for _, r in simulate(5, 600, rate=2.0, seed=3, start_ms=T0)]
    twins_a: dict[str, Twin] = {}
    twins_b: dict[str, Twin] = {}
    for i, r in enumerate(readings):
        for twins in (twins_a, twins_b):
            twins[r.patient_id] = step(twins.get(r.patient_id) or new_twin(r.patient_id), r, Position(0, i))[0]
    assert twins_a == twins_b
    for twin in twins_a.values():
        assert codec.from_dict(codec.to_dict(twin)) == twin


def test_codec_refuses_unknown_formats_and_damaged_twins() -> None:
    twin, _ = run([hr(72, 0, 0)])
    data = codec.to_dict(twin)
    with pytest.raises(CorruptTwin, match="format"):
        codec.from_dict({**data, "format": 99})
    with pytest.raises(CorruptTwin):
        codec.from_dict({k: v for k, v in data.items() if k != "vitals"})
