"""The twin's transition: what each kind of reading does, and that the same input always gives the same twin."""

from __future__ import annotations

import pytest

from simulation.simulator import simulate
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
    assert outcomes[-1] is Outcome.IMPLAUSIBLE
    assert twin.vitals[Metric.HEART_RATE].filter.level == 72.0 and twin.counts.implausible == 1


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


def steady(n: int = 60, value: float = 72.0, every_s: float = 5.0) -> list[Reading]:
    return [hr(value, every_s * i, i, quality=1.0) for i in range(n)]


def test_innovation_test_rejects_a_believable_number_the_twin_cannot_believe_now() -> None:
    base = steady()
    twin, outcomes = run([*base, hr(150, 300, 60, quality=1.0)])
    assert outcomes[-1] is Outcome.INNOVATION
    assert twin.vitals[Metric.HEART_RATE].filter == run(base)[0].vitals[Metric.HEART_RATE].filter
    assert twin.counts.innovation == 1


def test_a_sustained_change_is_accepted_at_its_second_consistent_reading() -> None:
    readings = [*steady(), *(hr(110 + (i % 2), 300 + 5 * i, 60 + i, quality=1.0) for i in range(4))]
    twin, outcomes = run(readings)
    assert outcomes[-4:] == [Outcome.INNOVATION, Outcome.REINITIALISED, Outcome.APPLIED, Outcome.APPLIED]
    v = twin.vitals[Metric.HEART_RATE]
    assert v.filter.level == pytest.approx(110.5, abs=1.5) and v.run == 0
    assert twin.counts.reinitialised == 1 and twin.counts.innovation == 1


def test_scattered_spikes_do_not_add_up_to_a_change() -> None:
    spikes = [150.0, 200.0, 140.0, 190.0, 130.0]
    readings = [*steady(), *(hr(v, 300 + 5 * i, 60 + i, quality=1.0) for i, v in enumerate(spikes))]
    twin, outcomes = run(readings)
    assert outcomes[-5:] == [Outcome.INNOVATION] * 5
    assert twin.vitals[Metric.HEART_RATE].filter.level == pytest.approx(72.0, abs=0.5)
    assert twin.vitals[Metric.HEART_RATE].streak == 5


def test_a_twin_that_believed_a_wrong_reading_restarts_from_two_consistent_ones() -> None:
    # After a gap the filter believed one wrong reading (127); real readings scatter around 60 since. It restarts
    # from the mean of the first two that agree with each other (66, 58).
    readings = [*steady(value=60.0), hr(127, 2000, 60, quality=1.0),
                *(hr(v, 2060 + 60 * i, 61 + i, quality=1.0) for i, v in enumerate([52, 66, 58]))]
    twin, outcomes = run(readings)
    assert outcomes[-4] is Outcome.APPLIED  # the wrong one, after a 45 minute gap
    assert outcomes[-3:] == [Outcome.INNOVATION, Outcome.INNOVATION, Outcome.REINITIALISED]
    assert twin.vitals[Metric.HEART_RATE].filter.level == 62.0 and twin.vitals[Metric.HEART_RATE].streak == 0


def test_a_twin_that_refuses_everything_for_long_enough_restarts_from_the_data() -> None:
    # No two of the real readings agree closely enough to confirm a step, but every one is refused: after
    # LOST_AFTER of them the filter, not the sensor, is taken to be wrong.
    readings = [*steady(value=60.0), hr(127, 2000, 60, quality=1.0),
                *(hr(v, 2060 + 60 * i, 61 + i, quality=1.0) for i, v in enumerate([52, 70, 50, 71, 53, 68]))]
    twin, outcomes = run(readings)
    assert outcomes[-6:] == [Outcome.INNOVATION] * 5 + [Outcome.REINITIALISED]
    assert twin.vitals[Metric.HEART_RATE].filter.level == 68.0 and twin.vitals[Metric.HEART_RATE].streak == 0


def test_baseline_moves_over_days_not_minutes() -> None:
    usual = [hr(70, 60 * i, i, quality=1.0) for i in range(24 * 60)]  # a day at 70, one a minute
    fever = [hr(70 + min(i, 20), 86_400 + 60 * i, 24 * 60 + i, quality=1.0) for i in range(60)]
    twin, _ = run([*usual, *fever])
    v = twin.vitals[Metric.HEART_RATE]
    assert v.filter.level == pytest.approx(90, abs=2)
    assert v.baseline == pytest.approx(70, abs=1.0)
    assert v.baseline_minutes == pytest.approx(24 * 60 + 59, abs=1)


def test_valid_share_reflects_the_last_hour() -> None:
    good = [hr(72, 10 * i, i, quality=1.0) for i in range(0, 360, 2)]
    bad = [hr(0, 10 * i, i, quality=0.05) for i in range(1, 360, 2)]
    twin, _ = run(sorted([*good, *bad], key=lambda r: r.seq))
    assert twin.quality[Metric.HEART_RATE].valid_share == pytest.approx(0.5, abs=0.02)
    later, _ = run([hr(72, 3600 + 10 * i, 400 + i, quality=1.0) for i in range(360)], twin, start=1000)
    assert later.quality[Metric.HEART_RATE].valid_share > 0.8


def test_manual_observations_keep_the_latest_and_count_late_entries() -> None:
    nurse = [
        Reading("p-1", "nurse-7", Metric.CONSCIOUSNESS, 0.0, T0, 1),
        Reading("p-1", "nurse-7", Metric.O2_FLOW, 2.0, T0 + 1000, 2),
        Reading("p-1", "nurse-9", Metric.CONSCIOUSNESS, 2.0, T0 + 60_000, 1),
        Reading("p-1", "nurse-7", Metric.CONSCIOUSNESS, 0.0, T0 + 30_000, 3),
    ]
    twin, outcomes = run(nurse)
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.APPLIED, Outcome.LATE]
    assert twin.observations[Metric.CONSCIOUSNESS].value == 2.0
    assert twin.observations[Metric.O2_FLOW].value == 2.0
    assert Metric.CONSCIOUSNESS not in twin.vitals
