"""The phenotype cohort: each way to deteriorate reaches NEWS2 5, shapes and recovery behave, mimics stay mimics,
the noise is heavy-tailed; and the original simulator's output is unchanged by the hooks it gained."""

from __future__ import annotations

import hashlib
import random
import statistics

import pytest

from simulation import phenotypes
from simulation.phenotypes import PHENOTYPES, PhenotypePatient, heavy_tailed_noise, make_patient
from simulation.simulator import simulate_with_truth
from twin_state.catalogue import ACVPU, Metric
from twin_state.news2 import Inputs, score

DAY = 86_400.0


def test_original_simulator_output_is_bit_identical_to_before_the_phenotypes() -> None:
    # Digest of simulate_with_truth(6, 3600, seed=3, deteriorating_share=0.5) computed with the simulator as it was
    # before generate_readings and the noise hook existed (main at 143ebf8).
    h = hashlib.sha256()
    for item in simulate_with_truth(6, 3600, seed=3, deteriorating_share=0.5):
        h.update(repr(item).encode())
    assert h.hexdigest() == "283f510965373ade2de5d7bc7b341a97a22d8135a3de9dc84ece9cf4fed9d40c"


def _true_news2(p: PhenotypePatient, t: float) -> int:
    v = {m: p.truth(m, t) for m in (Metric.HEART_RATE, Metric.RESP_RATE, Metric.SPO2, Metric.TEMPERATURE,
                                    Metric.BP_SYSTOLIC)}
    return score(Inputs(rr=v[Metric.RESP_RATE], spo2=v[Metric.SPO2], on_oxygen=False, sbp=v[Metric.BP_SYSTOLIC],
                        pulse=v[Metric.HEART_RATE], temp=v[Metric.TEMPERATURE],
                        acvpu=ACVPU[p.consciousness(t)])).total


def _patient(phenotype: str, shape: str = "ramp", **kw: object) -> PhenotypePatient:
    base = make_patient(0, 1, DAY, 0.0)
    fields = {"phenotype": phenotype, "shape": shape, "onset_s": 3600.0, "ramp_s": 7200.0, "severity": 1.0,
              "treated_s": None, "mimics": (), **kw}
    for k, v in fields.items():
        setattr(base, k, v)
    return base


@pytest.mark.parametrize("phenotype", sorted(PHENOTYPES))
def test_every_phenotype_reaches_news2_5_at_full_severity_and_not_before_onset(phenotype: str) -> None:
    p = _patient(phenotype)
    assert p.deterioration(3599.0) == 0.0
    assert _true_news2(p, 3600.0 + 7200.0 + 60) >= 5


def test_shapes_step_curve_plateau_and_recovery() -> None:
    step, curve, plateau = _patient("sepsis", "step"), _patient("sepsis", "curve"), _patient(
        "sepsis", "plateau", plateau_level=0.5, plateau_s=3600.0)
    assert step.deterioration(3600.0) == 1.0
    assert curve.deterioration(3600 + 3600) == pytest.approx(0.25)  # half-way through the ramp: a quarter
    assert plateau.deterioration(3600 + 3600) == pytest.approx(0.5)
    assert plateau.deterioration(3600 + 3600 + 3000) == pytest.approx(0.5)  # still on the plateau
    assert plateau.deterioration(3600 + 3600 + 3600 + 3600) == pytest.approx(1.0)
    treated = _patient("haemorrhage", "ramp", treated_s=12_000.0, recovery_tau_s=3600.0)
    assert treated.deterioration(12_000.0) == pytest.approx(1.0)
    assert treated.deterioration(12_000.0 + 3600) == pytest.approx(1 / 2.718281828, rel=1e-3)


def test_opioid_drowsiness_is_charted_not_streamed() -> None:
    p = _patient("opioid_hypoventilation")
    assert p.consciousness(3600.0) == 0
    assert p.consciousness(3600 + 0.59 * 7200) == 0
    assert p.consciousness(3600 + 0.61 * 7200) == 2
    assert _patient("sepsis").consciousness(20_000.0) == 0


def test_mimics_move_vitals_but_only_inside_their_interval() -> None:
    m = phenotypes.Mimic("postop_hypotension", 1000.0, 3000.0, {Metric.BP_SYSTOLIC: -30.0})
    with_it, without = _patient("stable", onset_s=None, mimics=(m,)), _patient("stable", onset_s=None)
    # Same generator, same activity chain: the difference is the mimic's alone.
    diffs = [without.truth(Metric.BP_SYSTOLIC, t) - with_it.truth(Metric.BP_SYSTOLIC, t)
             for t in (900.0, 2500.0, 4100.0)]
    assert diffs == pytest.approx([0.0, 30.0, 0.0])
    assert m.level(1000.0) == 0.0 and m.level(2500.0) == 1.0 and m.level(4000.0) == 0.0


def test_cohort_is_seeded_has_every_phenotype_and_stable_patients_have_mimics() -> None:
    a = phenotypes.cohort(300, DAY, 11, 0.5)
    b = phenotypes.cohort(300, DAY, 11, 0.5)
    assert [(p.phenotype, p.onset_s, p.mimics) for p in a] == [(p.phenotype, p.onset_s, p.mimics) for p in b]
    assert {p.phenotype for p in a} == {*PHENOTYPES, "stable"}
    assert all(p.shape == "step" for p in a if p.phenotype == "fast_af")
    stable = [p for p in a if p.onset_s is None]
    assert all(not p.mimics for p in a if p.onset_s is not None)
    kinds = {m.kind for p in stable for m in p.mimics}
    assert kinds == set(phenotypes.MIMICS)
    first = list(phenotypes.simulate_phenotypes(4, 600, 0.55, 3, 0))
    assert first == list(phenotypes.simulate_phenotypes(4, 600, 0.55, 3, 0))


def test_heavy_tailed_noise_has_the_scale_asked_and_fat_tails() -> None:
    rng = random.Random(5)
    xs = [heavy_tailed_noise(rng, 2.0) for _ in range(60_000)]
    sd = statistics.pstdev(xs)
    assert 1.6 < sd < 2.6
    tail = sum(1 for x in xs if abs(x) > 4 * 2.0) / len(xs)
    assert tail > 0.004  # a Gaussian puts 6e-5 beyond 4 SD
