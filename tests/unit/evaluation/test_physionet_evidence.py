"""Issue 16 part 4: the alert replay of a charted stay, the vectorised AUROC, the training-set overlap warning and
``--model``, and the Kalman noise estimate on the real trace (``../shared/data``; PhysioNet, ODC-By 1.0)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from alerts.policy import Kind, Level
from cli.main import main
from evaluation import physionet as pn
from evaluation import physionet_evidence as pe
from evaluation.datasets import DEFAULT_START_MS
from evaluation.kalman_noise import evaluate_noise
from evaluation.physionet_model import shipped

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
SET_A = DATA / "physionet2012-set-a.tar.gz"
MIMIC = DATA / "mimic3wdb-s25047-numerics-per-minute.csv"


def _stay(rows: list[str]) -> str:
    return "Time,Parameter,Value\n00:00,RecordID,900001\n00:00,Age,81\n" + "\n".join(rows) + "\n"


def test_a_charted_stay_that_reaches_news2_7_raises_one_high_alert_at_once() -> None:
    normal = ["{t},HR,80", "{t},RespRate,16", "{t},NISysABP,125", "{t},Temp,37.0", "{t},GCS,15", "{t},FiO2,0.21"]
    sick = ["{t},HR,135", "{t},RespRate,26", "{t},NISysABP,88", "{t},Temp,37.0", "{t},GCS,15", "{t},FiO2,0.21"]
    rows = [r.format(t=f"{h:02d}:00") for h in range(1, 4) for r in normal]
    rows += [r.format(t=f"{h:02d}:00") for h in range(4, 7) for r in sick]
    _rid, readings = pn.parse_stay(io.StringIO(_stay(rows)), DEFAULT_START_MS)
    events = pe.alert_replay(readings)
    raised = [e for e in events if e.kind is Kind.RAISED]
    assert len(raised) == 1 and raised[0].level is Level.HIGH
    # Raised at persistence (30 s) after the 04:00 chart entry, not an hour later at the next one.
    assert raised[0].at - DEFAULT_START_MS == 4 * 3_600_000 + 30_000
    assert pe._static(_stay([*rows, "02:00,MechVent,1"])) == (81.0, None, True)


def test_vectorised_auroc_equals_the_exact_one_with_ties() -> None:
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 8, 300).astype(float)
    labels = rng.integers(0, 2, 300)
    assert pe.auroc_np(scores, labels) == pytest.approx(pn.auroc(scores.tolist(), labels.tolist()))
    assert pe.auroc_np(scores, np.zeros(300, dtype=np.int64)) is None


def test_training_ids_are_set_a_and_a_new_set_is_not_called_the_training_set(tmp_path: Path) -> None:
    ids = pn.training_ids()
    assert len(ids) == 3996 and "132539" in ids
    stays = tmp_path / "stays"
    stays.mkdir()
    (stays / "900001.txt").write_text(_stay(["01:00,HR,80"]))
    (stays / "132539.txt").write_text(_stay(["01:00,HR,90"]).replace("900001", "132539"))
    (tmp_path / "Outcomes.txt").write_text("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n"
                                           "900001,1,1,1,-1,0\n132539,1,1,1,-1,1\n")
    model_file = tmp_path / "model.json"
    model_file.write_text(shipped().to_json())
    result = pn.evaluate_stays(stays, tmp_path / "Outcomes.txt", workers=1, model_file=model_file)
    assert result["stays_in_training_set"] == 1
    assert "1 of 2 stays are among the 3996" in result["warnings"][0]  # type: ignore[index]
    assert result["model"]["file"] == str(model_file)  # type: ignore[index]
    out = CliRunner().invoke(main, ["evaluate", "physionet2012", "--stays", str(stays), "--outcomes",
                                    str(tmp_path / "Outcomes.txt"), "--json", str(tmp_path / "r.json"),
                                    "--model", str(model_file), "--workers", "1"])
    assert out.exit_code == 0, out.output
    assert "warning: 1 of 2 stays" in out.output
    assert json.loads((tmp_path / "r.json").read_text())["stays_in_training_set"] == 1


def test_alert_burden_and_model_figures_on_real_stays(tmp_path: Path) -> None:
    result = pe.evaluate_physionet_evidence(SET_A, SET_A, limit=120, workers=1, reps=100)
    assert result["n"] == 120 and result["stays_in_training_set"] == 120 and result["warnings"]
    burden = result["alert_burden"]
    assert burden["survivors"]["stays"] + burden["died"]["stays"] == 120
    for group in burden.values():
        assert group["alerts_per_patient_day"] >= group["high_alerts_per_patient_day"] >= 0
    cal = result["headline"]["calibration"]
    assert 0 < cal["brier"] < 0.25 and cal["slope"] is not None
    assert set(result["subgroups"]) == {"age <50", "age 50-64", "age 65-79", "age >=80", "ventilated",
                                        "not ventilated"}
    assert "without_sao2_cross_validated" in result
    paths = pe.write_physionet_report(result, tmp_path, "test")
    assert "Alert burden" in paths[0].read_text()


def test_kalman_noise_on_the_real_trace_brings_mean_nis_towards_one() -> None:
    result = evaluate_noise(MIMIC, None)
    rows = result["sources"]["mimic"]
    assert {"heart_rate", "spo2", "resp_rate"} <= set(rows)
    for vital in ("heart_rate", "spo2", "resp_rate"):
        before, after = rows[vital]["nis_before"]["mean_nis"], rows[vital]["nis_after"]["mean_nis"]
        assert before > 10  # the hand-set noise is far too small for this monitor
        assert abs(after - 1) < abs(before - 1)
        assert rows[vital]["nll_improvement"] > 0
