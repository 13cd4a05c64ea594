"""``twinmon evaluate``: the accounting on hand-made cases, raw NEWS2, configuration files, and the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from alerts.policy import AlertEvent, Condition, Kind, Level
from cli.main import main
from evaluation import cohort
from evaluation.cohort import (
    START_MS,
    ConfigError,
    PatientRun,
    RawNews2,
    account,
    clinical_alert_times,
    compare,
    evaluate_cohort,
    evaluate_recorded,
    figures_json,
    load_config,
    parse_config,
    settings_json,
    write_comparison,
    write_report,
)
from simulation.simulator import BASE_RATE, cohort_truth, simulate
from streams.processor import AlertingConfig
from streams.schema import encode
from twin_state.catalogue import Metric
from twin_state.news2 import Inputs, RiskBand, score
from twin_state.twin import Reading

MIN = 60_000
DAY = 86_400_000
T0 = START_MS


def ev(kind: Kind, level: Level, at_min: float, alert: str = "a1", condition: Condition = Condition.CLINICAL,
       reason: str = "") -> AlertEvent:
    return AlertEvent(f"{alert}-{at_min}", alert, "p", kind, condition, level, T0 + round(at_min * MIN), reason)


# --- which events are clinical alerts -----------------------------------------------------------------------------


def test_clinical_alerts_are_raised_at_medium_or_worsened_to_a_higher_level() -> None:
    events = [
        ev(Kind.RAISED, Level.LOW, 0),  # LOW: not a clinical alert
        ev(Kind.ESCALATED, Level.LOW, 60, reason="unacknowledged"),
        ev(Kind.ESCALATED, Level.MEDIUM, 70, reason="worsened"),  # LOW -> MEDIUM: counts
        ev(Kind.ESCALATED, Level.MEDIUM, 85, reason="unacknowledged"),  # same level again: does not
        ev(Kind.ESCALATED, Level.HIGH, 90, reason="worsened"),  # MEDIUM -> HIGH: counts
        ev(Kind.RAISED, Level.MEDIUM, 91, alert="t1", condition=Condition.NO_DATA),  # technical: never
        ev(Kind.RESOLVED, Level.HIGH, 200, reason="condition_cleared"),
        ev(Kind.RAISED, Level.MEDIUM, 300, alert="a2"),  # a new alert: counts
        ev(Kind.ACKNOWLEDGED, Level.MEDIUM, 301, alert="a2"),
    ]
    assert clinical_alert_times(events) == [T0 + 70 * MIN, T0 + 90 * MIN, T0 + 300 * MIN]
    assert clinical_alert_times(events, Level.LOW) == [T0, T0 + 70 * MIN, T0 + 90 * MIN, T0 + 300 * MIN]


def test_an_escalation_at_the_end_of_an_exertion_hold_is_new_like_a_worsening() -> None:
    assert cohort._is_new(ev(Kind.ESCALATED, Level.HIGH, 10, reason="exertion hold ended (cap reached): NEWS2 7"))
    assert cohort._is_new(ev(Kind.ESCALATED, Level.MEDIUM, 10, reason="exertion hold ended (rest)"))
    assert cohort._is_new(ev(Kind.ESCALATED, Level.HIGH, 10, reason="worsened: NEWS2 7"))
    assert not cohort._is_new(ev(Kind.ESCALATED, Level.HIGH, 10, reason="unacknowledged: NEWS2 7"))


# --- episodes, lead times, false alerts ---------------------------------------------------------------------------


def run(pid: str, onset_min: float | None, alerts_min: list[float], raw_min: float | None = None, all_: int = 0,
        hours: float = 24.0) -> PatientRun:
    return PatientRun(pid, T0, T0 + round(hours * 60 * MIN), None if onset_min is None else T0 + round(onset_min * MIN),
                      tuple(T0 + round(a * MIN) for a in alerts_min), all_,
                      None if raw_min is None else T0 + round(raw_min * MIN))


def test_accounting_on_a_hand_made_cohort() -> None:
    runs = [
        run("stable-1", None, [100.0, 700.0], all_=3),  # two false alerts over a whole day
        run("stable-2", None, [], all_=1),
        # onset at 6 h: the alert at 2 h is false, the one at 6 h 20 detects it (and the one after is not false)
        run("det-1", 360.0, [120.0, 380.0, 500.0], raw_min=410.0, all_=4),
        # detected 5 min before raw NEWS2 reaches 5; its first alert inside the window is the one that counts
        run("det-2", 720.0, [735.0, 740.0], raw_min=740.0),
        run("missed", 600.0, [300.0]),  # only a false alert before the onset
        run("late-onset", 1500.0, [100.0]),  # onset after the end: a stable patient for the accounting
    ]
    f = account(runs)
    assert [(e.patient_id, e.alert_ms) for e in f.episodes] == [
        ("det-1", T0 + 380 * MIN), ("det-2", T0 + 735 * MIN), ("missed", None)]
    assert f.detected == 2 and f.sensitivity == pytest.approx(2 / 3)
    assert f.lead_onset_min == [-20.0, -15.0]
    assert f.lead_raw_min == [30.0, 5.0]
    assert f.false_alerts == 2 + 1 + 1 + 1
    assert f.false_by_patient == (("stable-1", 2), ("det-1", 1), ("late-onset", 1), ("missed", 1))
    # exposure: three whole days (stable-1, stable-2, late-onset) and the time before each onset
    assert f.false_exposure_days == pytest.approx(3 + (360 + 720 + 600) / 1440)
    assert f.patient_days == pytest.approx(6.0)
    assert f.clinical_alerts == 2 + 3 + 2 + 1 + 1 and f.all_alerts == 8
    j = figures_json(f)
    assert j["median_lead_vs_onset_min"] == -17.5 and j["median_lead_vs_raw_news2_5_min"] == 17.5
    assert j["false_alerts_per_patient_day"] == round(5 / (3 + 1680 / 1440), 3)
    assert j["missed"] == ["missed"]


def test_an_early_tolerance_moves_the_window_before_the_onset() -> None:
    runs = [run("d", 360.0, [350.0, 400.0], raw_min=380.0)]
    strict, tolerant = account(runs), account(runs, tolerance_ms=15 * MIN)
    assert strict.episodes[0].alert_ms == T0 + 400 * MIN and strict.false_alerts == 1
    assert tolerant.episodes[0].alert_ms == T0 + 350 * MIN and tolerant.false_alerts == 0
    assert tolerant.lead_onset_min == [10.0] and tolerant.lead_raw_min == [30.0]
    assert tolerant.false_exposure_days == pytest.approx(345 / 1440)


def test_no_episodes_means_no_sensitivity_and_no_lead_times() -> None:
    f = account([run("s", None, [])])
    assert f.sensitivity is None and figures_json(f)["median_lead_vs_raw_news2_5_min"] is None
    assert f.false_per_patient_day == 0.0


# --- raw NEWS2, the naive baseline ----------------------------------------------------------------------------------


def reading(metric: Metric, value: float, at_s: float, seq: int = 0) -> Reading:
    return Reading("p", "dev", metric, value, T0 + round(at_s * 1000), seq, 1.0)


def test_raw_news2_carries_each_vital_forward_and_counts_crossings_of_five() -> None:
    raw = RawNews2(window_ms=T0 + 200_000)
    raw.add(reading(Metric.RESP_RATE, 22, 0))  # 2
    raw.add(reading(Metric.HEART_RATE, 115, 10))  # + 2 = 4
    assert raw.score == 4 and raw.crossings == []
    raw.add(reading(Metric.SPO2, 94, 20))  # + 1 = 5: a crossing, before the window
    raw.add(reading(Metric.TEMPERATURE, 38.5, 30))  # + 1 = 6: no new crossing
    assert raw.score == 6 and raw.crossings == [T0 + 20_000] and raw.first_reach is None
    raw.add(reading(Metric.HEART_RATE, 70, 100))  # 6 - 2 = 4
    raw.add(reading(Metric.HEART_RATE, 200, 50))  # measured before the 70: does not replace it
    assert raw.score == 4
    raw.add(reading(Metric.HEART_RATE, 0, 250))  # a probe-off zero scores 3 raw: 7, a crossing in the window
    assert raw.crossings == [T0 + 20_000, T0 + 250_000] and raw.first_reach == T0 + 250_000
    expected = score(Inputs(rr=22, spo2=94, temp=38.5, pulse=0)).total
    assert raw.score == expected == 7


def test_the_plausible_baseline_ignores_artefacts() -> None:
    raw = RawNews2(plausible_only=True)
    raw.add(reading(Metric.RESP_RATE, 22, 0))
    raw.add(reading(Metric.SPO2, 0, 1))  # probe-off: implausible, dropped
    raw.add(reading(Metric.HEART_RATE, 277, 2))  # off-scale spike: dropped
    assert raw.score == 2 and raw.crossings == []


def test_manual_observations_count_in_raw_news2() -> None:
    raw = RawNews2()
    raw.add(reading(Metric.CONSCIOUSNESS, 1, 0))  # new confusion: 3
    raw.add(reading(Metric.O2_FLOW, 2.0, 1))  # on oxygen: 2
    assert raw.score == 5 and raw.crossings == [T0 + 1000] and raw.first_reach == T0 + 1000


# --- configuration files --------------------------------------------------------------------------------------------


def test_config_overrides_only_what_it_names() -> None:
    doc = {
        "name": "strict",
        "policy": {"persist_ms": 60_000, "predicted_medium": 0.8, "single_three": "medium",
                   "escalate_after_ms": {"medium": 600_000}},
        "risk": {"horizons_min": [30, 90], "single_three": "medium", "stale_after_ms": {"spo2": 120_000}},
        "technical": {"quality_floor": 0.4},
        "evaluation": {"every_ms": 5_000},
    }
    with pytest.raises(ConfigError, match=r"predicted_horizon_min 60 is not one of risk\.horizons_min"):
        parse_config(doc, "strict.toml")
    doc["policy"]["predicted_horizon_min"] = 90  # type: ignore[index]
    name, e = parse_config(doc, "strict.toml")
    d = AlertingConfig()
    assert name == "strict"
    assert e.policy.persist_ms == 60_000 and e.policy.predicted_medium == 0.8 and e.policy.single_three is Level.MEDIUM
    assert e.policy.predicted_high == d.policy.predicted_high and e.policy.clear_ms == d.policy.clear_ms
    assert e.policy.escalate_after_ms == {**d.policy.escalate_after_ms, Level.MEDIUM: 600_000}
    assert e.risk.horizons_min == (30.0, 90.0) and e.risk.single_three is RiskBand.MEDIUM
    assert e.risk.stale_after_ms == {**d.risk.stale_after_ms, Metric.SPO2: 120_000}
    assert e.technical.quality_floor == 0.4 and e.every_ms == 5_000
    s = settings_json(e)
    assert s["policy"]["escalate_after_ms"]["medium"] == 600_000 and s["evaluation"]["every_ms"] == 5_000


def test_an_empty_config_is_the_defaults_named_after_the_file() -> None:
    assert parse_config({}, "dir/current.toml") == ("current", AlertingConfig())


@pytest.mark.parametrize(("doc", "message"), [
    ({"polcy": {}}, "unknown key(s) polcy; expected some of calibration, evaluation, name, policy, risk, technical"),
    ({"policy": {"persist": 1}}, "policy: unknown key(s) persist; expected some of clear_ms"),
    ({"policy": {"escalate_after_ms": {"urgent": 1}}}, "escalate_after_ms: unknown key(s) urgent"),
    ({"risk": {"stale_after_ms": {"glucose": 1}}}, "stale_after_ms: unknown key(s) glucose"),
    ({"evaluation": {"every": 1}}, "evaluation: unknown key(s) every; expected some of every_ms"),
    ({"policy": {"persist_ms": 1.5}}, "policy.persist_ms must be a positive whole number of milliseconds"),
    ({"policy": {"persist_ms": True}}, "policy.persist_ms must be a positive whole number"),
    ({"policy": {"predicted_medium": 1.5}}, "policy.predicted_medium must be > 0 and <= 1, got 1.5"),
    ({"policy": {"single_three": "urgent"}}, "policy.single_three must be one of none, low, medium, high"),
    ({"risk": {"single_three": "high"}}, "risk.single_three must be one of low-medium, medium"),
    ({"risk": {"horizons_min": []}}, "risk.horizons_min must be a non-empty list"),
    ({"policy": 3}, "[policy] must be a table"),
    ({"name": ""}, "name must be a non-empty string"),
])
def test_config_errors_name_the_file_and_the_key(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "b.toml")
    assert str(info.value).startswith("b.toml") and message in str(info.value)


def test_load_config_reads_toml_and_reports_bad_toml(tmp_path: Path) -> None:
    good = tmp_path / "a.toml"
    good.write_text('[policy]\npersist_ms = 45000\n[policy.escalate_after_ms]\nhigh = 120000\n')
    name, e = load_config(good)
    assert name == "a" and e.policy.persist_ms == 45_000 and e.policy.escalate_after_ms[Level.HIGH] == 120_000
    bad = tmp_path / "bad.toml"
    bad.write_text("[policy\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config(bad)


# --- a small cohort end to end --------------------------------------------------------------------------------------

PATIENTS, HOURS, SEED, SHARE = 4, 0.5, 3, 0.5


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    return evaluate_cohort(PATIENTS, HOURS * 3600, SEED, SHARE, workers=1)


def test_cohort_truth_matches_the_simulation() -> None:
    truth = cohort_truth(PATIENTS, HOURS * 3600, SEED, SHARE)
    assert sorted(truth) == sorted({r.patient_id for _, r in simulate(PATIENTS, 600, seed=SEED)})
    assert all(o is None or 0 < o < HOURS * 3600 for o, _ in truth.values())
    assert any(o is not None for o, _ in truth.values()) and any(o is None for o, _ in truth.values())


def test_small_cohort_accounts_every_patient_and_episode(small: dict[str, Any]) -> None:
    truth = cohort_truth(PATIENTS, HOURS * 3600, SEED, SHARE)
    episodes = sum(1 for o, _ in truth.values() if o is not None)
    for system in ("twinmon", "baseline", "baseline_plausible"):
        assert small[system]["patients"] == PATIENTS and small[system]["episodes"] == episodes
        assert small[system]["patient_days"] == pytest.approx(PATIENTS * HOURS / 24, abs=1e-3)
    assert small["cohort"]["deteriorating"] == episodes
    assert len(small["episodes"]) == episodes and small["dead_letters"] == 0
    assert small["messages"] == sum(1 for _ in simulate(PATIENTS, HOURS * 3600, rate=BASE_RATE, seed=SEED,
                                                        start_ms=T0, deteriorating_share=SHARE))
    assert {t["patient_id"] for t in small["timelines"]} == set(truth)
    # the naive baseline alerts on every crossing: at least as often as on plausible readings only
    assert small["baseline"]["all_alerts"] >= small["baseline_plausible"]["all_alerts"]
    assert set(small["targets"]) == {"sensitivity", "median_lead_vs_raw_news2_5_min",
                                     "false_alerts_per_patient_day", "fewer_false_alerts_than_baseline"}


def test_splitting_the_cohort_across_processes_changes_nothing(small: dict[str, Any]) -> None:
    split = evaluate_cohort(PATIENTS, HOURS * 3600, SEED, SHARE, workers=2)
    for key in ("twinmon", "baseline", "baseline_plausible", "episodes", "twinmon_events", "timelines", "messages",
                "twin_outcomes"):
        assert split[key] == small[key], key


def test_report_files_are_written(small: dict[str, Any], tmp_path: Path) -> None:
    paths = write_report(small, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"report.md", "report.json", "lead_times.png", "alert_burden.png", "timelines.png"} <= names
    for p in paths:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| sensitivity |" in md and "![timelines](timelines.png)" in md
    assert json.loads((tmp_path / "out" / "report.json").read_text())["twinmon"] == small["twinmon"]


def test_comparison_reports_both_runs_and_the_settings_that_differ(small: dict[str, Any], tmp_path: Path) -> None:
    def fake_run(e: AlertingConfig) -> dict[str, Any]:
        return {**small, "settings": settings_json(e)}  # the same figures: only the settings differ

    a = parse_config({}, "a.toml")
    b = parse_config({"policy": {"persist_ms": 60_000}}, "b.toml")
    cmp = compare(a, b, fake_run)
    assert cmp["settings_changed"] == [{"setting": "policy.persist_ms", "a": a[1].policy.persist_ms, "b": 60_000}]
    assert all(r["b_minus_a"] in (0, 0.0, None) for r in cmp["rows"])
    paths = write_comparison(cmp, tmp_path / "cmp")
    names = {str(p.relative_to(tmp_path / "cmp")) for p in paths}
    assert {"compare.md", "compare.json", "compare.png", "a/report.md", "b/report.md"} <= names
    assert "policy.persist_ms" in (tmp_path / "cmp" / "compare.md").read_text()


def test_recorded_cohort_reports_burden_without_truth(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [encode(r) for _, r in simulate(2, 1200, seed=4, start_ms=T0, deteriorating_share=0.5)]
    events.write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    result = evaluate_recorded(events)
    assert result["cohort"]["patients"] == 2 and result["targets"] is None
    assert result["twinmon"]["episodes"] == 0 and result["twinmon"]["sensitivity"] is None
    assert result["dead_letters"] == 1 and result["messages"] == len(lines) + 1
    assert write_report(result, tmp_path / "rec")[0].name == "report.md"


# --- the command line ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["evaluate"], ["evaluate", "physionet2012"]], ids=" ".join)
def test_evaluate_has_help(args: list[str]) -> None:
    out = CliRunner().invoke(main, [*args, "--help"])
    assert out.exit_code == 0 and "Usage: " in out.output


def test_evaluate_command_writes_the_report(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["evaluate", "--patients", "2", "--hours", "0.25", "--deteriorating", "0.5",
                                    "--workers", "1", "--out", str(tmp_path / "ev")])
    assert out.exit_code == 0, out.output
    assert "| sensitivity |" in out.output and (tmp_path / "ev" / "report.md").exists()


def test_compare_with_an_unknown_key_is_a_usage_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text("")
    b.write_text("[policy]\npersist_msec = 1\n")
    out = CliRunner().invoke(main, ["evaluate", "--compare", str(a), str(b), "--out", str(tmp_path / "c")])
    assert out.exit_code == 2 and "unknown key(s) persist_msec" in out.output and "Traceback" not in out.output


def test_physionet2012_command_writes_json(tmp_path: Path) -> None:
    stays = tmp_path / "set-a"
    stays.mkdir()
    for rid, hr in (("900001", 80), ("900002", 135)):
        rows = [f"00:00,RecordID,{rid}"] + [f"{h:02d}:00,HR,{hr}" for h in range(1, 48)]
        (stays / f"{rid}.txt").write_text("Time,Parameter,Value\n" + "\n".join(rows) + "\n")
    outcomes = tmp_path / "Outcomes-a.txt"
    outcomes.write_text("RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death\n"
                        "900001,10,2,5,-1,0\n900002,20,8,3,2,1\n")
    result = tmp_path / "physionet.json"
    out = CliRunner().invoke(main, ["evaluate", "physionet2012", "--stays", str(stays), "--outcomes", str(outcomes),
                                    "--json", str(result), "--workers", "1"])
    assert out.exit_code == 0, out.output
    doc = json.loads(result.read_text())
    assert doc["n"] == 2 and doc["deaths"] == 1 and doc["auroc"] == 1.0
    assert "AUROC 1.0" in out.output
