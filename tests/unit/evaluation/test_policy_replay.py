"""Replaying the clinical policy on recorded risk: the levels equal ``clinical_level`` at every threshold, the replayed
alerts of another policy equal a live run of it, the cache key ignores exactly what is replayed, and the false-alert
split by the TRUE NEWS2."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from alerts.config import AlertingConfig
from alerts.policy import Level, PolicySettings, clinical_level
from cli.main import main
from evaluation import evidence as ev
from evaluation import policy_replay as pr
from evaluation import policy_tuning as pt
from twin_state.news2 import RiskBand, Score
from twin_state.risk import Risk

T0 = 1_763_942_400_000


def _risk(row: np.ndarray) -> Risk:
    band = pr.BANDS[int(row[pr.BAND])]
    p_reach = {(5, 30.0): row[pr.P5_30], (5, 60.0): row[pr.P5_60], (7, 30.0): row[pr.P7_30],
               (7, 60.0): row[pr.P7_60]}
    drift = None if math.isnan(row[pr.DRIFT]) else float(row[pr.DRIFT])
    return Risk(Score(int(row[pr.TOTAL]), {}, False, band, ()), p_reach, {}, drift)


SETTINGS = [
    PolicySettings(),
    PolicySettings(predicted_medium=0.85, predicted_high=0.9, drift_medium=5.0, predicted_horizon_min=30.0,
                   single_three=Level.MEDIUM),
    PolicySettings(drift_medium=0.0),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_levels_equal_clinical_level_on_random_rows_and_at_every_threshold(settings: PolicySettings) -> None:
    rng = np.random.default_rng(3)
    rows = []
    edges = [settings.predicted_medium, settings.predicted_high]
    for _ in range(3000):
        ps = [float(rng.choice([rng.random(), *edges, np.nextafter(edges[0], 0), np.nextafter(edges[1], 0)]))
              for _ in range(4)]
        drift = float(rng.choice([math.nan, rng.random() * 8, settings.drift_medium,
                                  np.nextafter(settings.drift_medium, 0)]))
        rows.append([T0, rng.integers(0, 12), rng.integers(0, len(pr.BANDS)), drift, *ps])
    a = np.array(rows, dtype=np.float64)
    got = pr.clinical_levels(a, settings)
    want = [int(clinical_level(_risk(r), settings)) for r in a]
    assert got.tolist() == want
    assert set(want) >= {0, 2, 3}


def test_a_row_records_what_the_level_rests_on() -> None:
    r = Risk(Score(5, {}, False, RiskBand.MEDIUM, ()), {(5, 30.0): 0.1, (5, 60.0): 0.2, (7, 30.0): 0.3,
                                                         (7, 60.0): 0.4}, {}, None)
    row = pr.risk_row(T0 + 5, r)
    assert row[:3] == (T0 + 5, 5.0, float(pr.BANDS.index(RiskBand.MEDIUM)))
    assert math.isnan(row[pr.DRIFT]) and row[pr.P5_30:pr.ACTIVITY] == (0.1, 0.2, 0.3, 0.4)
    assert math.isnan(row[pr.ACTIVITY]) and row[pr.NEVER_HELD] == 0.0
    assert pr.cause(row, PolicySettings()) == "news2_5"
    assert pr.cause(row, PolicySettings(), Level.HIGH) == "other"
    assert pr.cause(row, PolicySettings(predicted_high=0.4), Level.HIGH) == "predicted_7"
    low = pr.risk_row(T0, dataclasses.replace(r, now=Score(2, {}, False, RiskBand.LOW, ()), drift=4.0))
    assert pr.cause(low, PolicySettings()) == "drift"
    assert pr.cause(low, PolicySettings(predicted_medium=0.2)) == "predicted_5"
    assert pr.cause(low, PolicySettings(drift_medium=0.0)) == "other"
    with pytest.raises(ValueError, match="not recorded"):
        pr.clinical_levels(np.array([row]), PolicySettings(predicted_horizon_min=45.0))


OTHER = dataclasses.replace(AlertingConfig().policy, persist_ms=120_000, clear_ms=20 * 60_000, drift_medium=5.0,
                            predicted_medium=0.8, predicted_horizon_min=30.0)


def test_replayed_alerts_of_another_policy_equal_a_live_run_of_it() -> None:
    spec = [ev.Spec("phenotypes", 6, 4.0, 21, 0.5)]
    recorded = ev.run_cohorts(spec, AlertingConfig())
    other = AlertingConfig(policy=OTHER)
    live = ev.run_cohorts(spec, other)
    assert sum(len(p.alerts) for p in recorded) > sum(len(p.alerts) for p in live) > 0
    # The default's own alerts come back, and the other policy's are those a live run of it raised.
    assert [p.alerts for p in ev.with_policy(recorded, AlertingConfig().policy)] == [p.alerts for p in recorded]
    assert [p.alerts for p in ev.with_policy(recorded, OTHER)] == [p.alerts for p in live]
    assert ev.replay_key(AlertingConfig()) == ev.replay_key(other)


def test_replayed_alerts_with_the_exertion_hold_equal_a_live_run_of_it() -> None:
    spec = [ev.Spec("phenotypes", 6, 4.0, 21, 0.5)]
    recorded = ev.run_cohorts(spec, AlertingConfig())
    hold = dataclasses.replace(AlertingConfig().policy, exertion_hold_max_ms=15 * 60_000, exertion_activity=30.0)
    live = ev.run_cohorts(spec, AlertingConfig(policy=hold))
    walked = [p for p in recorded if np.nanmax(p.risks[:, pr.ACTIVITY], initial=0.0) >= 30.0]
    assert walked and all(p.risks.shape[1] == pr.COLUMNS for p in recorded)
    # The hold changes some alerts (held at LOW, so later at MEDIUM+), and the replay gives those of the live run.
    assert [p.alerts for p in live] != [p.alerts for p in recorded]
    assert [p.alerts for p in ev.with_policy(recorded, hold)] == [p.alerts for p in live]
    old = [dataclasses.replace(p, risks=p.risks[:, :pr.ACTIVITY]) for p in recorded]
    with pytest.raises(ValueError, match="without the activity"):
        ev.with_policy(old, hold)


def test_the_cache_key_keeps_what_changes_the_runs() -> None:
    base = AlertingConfig()
    assert ev.replay_key(base) != ev.replay_key(dataclasses.replace(base, every_ms=20_000))
    assert ev.replay_key(base) != ev.replay_key(
        dataclasses.replace(base, policy=dataclasses.replace(base.policy, unconfirmed_min_gap_ms=1)))
    assert ev.replay_key(base) != ev.replay_key(
        dataclasses.replace(base, risk=dataclasses.replace(base.risk, horizons_min=(30.0, 60.0, 120.0))))


NORMAL = [16.0, 98.0, 125.0, 70.0, 37.0]  # 0
FEVER = [22.0, 98.0, 125.0, 112.0, 39.2]  # 2 + 2 + 2 = 6


def _patient(truth: list[list[float]], rows: list[list[float]], onset_min: int | None = None,
             mimics: tuple[tuple[str, int, int], ...] = ()) -> ev.PatientData:
    n = len(truth)
    return ev.PatientData(key="1:sim-000001", phenotype="stable" if onset_min is None else "sepsis", shape="",
                          treated=False, mimics=mimics, start_ms=T0, end_ms=T0 + n * 60_000,
                          onset_ms=None if onset_min is None else T0 + onset_min * 60_000, alerts=(),
                          raw_reach_ms=None, truth=np.array(truth), acvpu=np.zeros(n, dtype=np.int64),
                          sums=np.zeros((n, 5)), counts=np.zeros((n, 5)), samples=np.zeros((0, 4)),
                          risks=np.array(rows, dtype=np.float64))


def _rows(start_min: int, minutes: int, band: RiskBand, p5: float = 0.0, drift: float = math.nan) -> list[list[float]]:
    """Evaluations every 10 s."""
    return [[T0 + start_min * 60_000 + k * 10_000, 5.0 if band is RiskBand.MEDIUM else 0.0,
             float(pr.BANDS.index(band)), drift, p5, p5, 0.0, 0.0] for k in range(minutes * 6)]


def test_false_alerts_split_by_the_true_news2_at_the_alert() -> None:
    # 6 h: a fever from 1 h to 3 h (true NEWS2 6), the twin at NEWS2 5 from 90 min; a drift alert at 4 h with the
    # patient truly normal.
    truth = [NORMAL] * 60 + [FEVER] * 120 + [NORMAL] * 180
    rows = (_rows(0, 90, RiskBand.LOW) + _rows(90, 30, RiskBand.MEDIUM) + _rows(120, 120, RiskBand.LOW)
            + _rows(240, 5, RiskBand.LOW, drift=4.0) + _rows(245, 115, RiskBand.LOW))
    p = _patient(truth, rows, mimics=(("fever_without_sepsis", T0 + 60 * 60_000, T0 + 180 * 60_000),))
    got = ev.false_alert_causes([p], PolicySettings(), reps=200)
    assert got["false_alerts"] == 2 and got["rcp_mandated"] == 1 and got["spurious"] == 1
    assert got["by_cause"] == {"drift": {"rcp_mandated": 0, "spurious": 1},
                               "news2_5": {"rcp_mandated": 1, "spurious": 0}}
    assert got["by_mimic"] == {"fever_without_sepsis": {"rcp_mandated": 1, "spurious": 0},
                               "none_active": {"rcp_mandated": 0, "spurious": 1}}
    assert got["false_per_patient_day"] == pytest.approx(2 / 0.25)
    assert got["low_or_above_per_patient_day"] == pytest.approx(2 / 0.25)
    # With a confirmation longer than the NEWS2 5 episode, the LOW raise stays and the MEDIUM alert goes.
    confirmed = ev.false_alert_causes([p], PolicySettings(confirm_medium_ms=40 * 60_000), reps=0)
    assert (confirmed["rcp_mandated"], confirmed["low_or_above_per_patient_day"]) == (0, pytest.approx(2 / 0.25))
    # Without the drift rule only the mandated one is left; on a deteriorating patient alerts from the onset on
    # are not false.
    assert ev.false_alert_causes([p], PolicySettings(drift_medium=0.0), reps=0)["spurious"] == 0
    q = dataclasses.replace(p, onset_ms=T0 + 200 * 60_000, phenotype="sepsis", mimics=())
    split = ev.false_alert_causes([q], PolicySettings(), reps=0)
    assert (split["false_alerts"], split["by_mimic"]) == (1, {"before_onset": {"rcp_mandated": 1, "spurious": 0}})


def test_tuning_figures_and_the_choice_rule() -> None:
    truth = [NORMAL] * 60 + [FEVER] * 120 + [NORMAL] * 180
    rows = _rows(0, 240, RiskBand.LOW) + _rows(240, 5, RiskBand.LOW, drift=4.0) + _rows(245, 115, RiskBand.LOW)
    p = _patient(truth, rows)
    res = pt.evaluate_variants([p], [PolicySettings(), PolicySettings(drift_medium=4.5)])
    assert [r["false_per_patient_day"] for r in res] == [4.0, 0.0]
    assert res[0]["spurious_per_patient_day"] == 4.0 and res[1]["settings"]["drift_medium"] == 4.5
    ref = {"detected": 0}
    assert pt.choose(res, ref, lead_target=-math.inf) is res[1]
    assert pt.choose(res, {"detected": 1}, lead_target=-math.inf) is None
    # Within the false-alert target the longer lead wins; outside it, the fewer false alerts.
    a = {"detected": 5, "median_lead_min": 120.0, "false_per_patient_day": 0.19}
    b = {"detected": 5, "median_lead_min": 200.0, "false_per_patient_day": 0.2}
    c = {"detected": 5, "median_lead_min": 300.0, "false_per_patient_day": 0.21}
    d = {"detected": 4, "median_lead_min": 400.0, "false_per_patient_day": 0.0}
    assert pt.choose([a, b, c, d], {"detected": 5}) is b
    assert pt.choose([a, c, d], {"detected": 5}, false_target=0.1) is a
    assert pt.choose([a, b, c], {"detected": 5}, lead_target=250.0) is c
    early = {**b, "median_alert_after_onset_min": 30.0, "false_per_patient_day": 0.1}
    late = {**b, "median_alert_after_onset_min": 60.0, "false_per_patient_day": 0.05}
    assert pt.choose([late, early], {"detected": 5}) is early  # same lead: the earlier alert, not the quieter
    sooner = {**late, "mean_alert_after_onset_min": 40.0}
    assert pt.choose([{**late, "mean_alert_after_onset_min": 50.0}, sooner], {"detected": 5}) is sooner
    assert len(list(pt.grid(PolicySettings(), {"persist_ms": [30_000, 60_000], "drift_medium": [3.5, 4, 5]}))) == 6


def test_the_tune_policy_command_reads_the_tuning_runs_and_names_the_choice(tmp_path: Path) -> None:
    truth = [NORMAL] * 60 + [FEVER] * 120 + [NORMAL] * 180
    rows = _rows(0, 240, RiskBand.LOW) + _rows(240, 5, RiskBand.LOW, drift=4.0) + _rows(245, 115, RiskBand.LOW)
    runs = tmp_path / "runs.pkl"
    runs.write_bytes(pickle.dumps(("key", [_patient(truth, rows)], [])))
    out = tmp_path / "tuning.json"
    res = CliRunner().invoke(main, ["evaluate", "tune-policy", "--runs", str(runs), "--axis", "drift_medium=3.5,4.5",
                                    "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert ("drift_medium=4.5: detected 0/0, median lead None min (first alert None min after onset, mean None), "
            "false 0.0/"
            in res.output)
    assert "chosen: none keeps detection and the lead" in res.output  # no episode: no lead to keep
    assert len(orjson.loads(out.read_bytes())["variants"]) == 2
    bad = CliRunner().invoke(main, ["evaluate", "tune-policy", "--runs", str(runs), "--axis", "nonsense=1"])
    assert bad.exit_code != 0 and "an axis is NAME=V1,V2" in bad.output


def test_evidence_with_another_policy_replays_the_kept_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "runs.pkl"
    first, _ = ev.evaluate_evidence("phenotypes", 4, 3.0, [11], [21], 0.5, reps=100, runs_cache=cache)

    def no_rerun(*_args: object) -> None:
        raise AssertionError("the kept runs should have been replayed")

    monkeypatch.setattr(ev, "run_cohorts", no_rerun)
    other = AlertingConfig(policy=OTHER)
    again, _ = ev.evaluate_evidence("phenotypes", 4, 3.0, [11], [21], 0.5, AlertingConfig(), reps=100,
                                    runs_cache=cache)
    tuned, _ = ev.evaluate_evidence("phenotypes", 4, 3.0, [11], [21], 0.5, other, reps=100, runs_cache=cache)
    assert again["comparators_held_out"] == first["comparators_held_out"]
    assert tuned["policy_id"] != first["policy_id"]
    # The risk is the runs', whatever the thresholds: the same calibration (its provenance names the policy).
    assert {**tuned["calibration"], "fitted_on": ""} == {**first["calibration"], "fitted_on": ""}
    with pytest.raises(AssertionError, match="replayed"):  # other risk settings: the runs do not fit
        ev.evaluate_evidence("phenotypes", 4, 3.0, [11], [21], 0.5, dataclasses.replace(other, every_ms=20_000),
                             reps=100, runs_cache=cache)
