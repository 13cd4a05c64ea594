"""The feed's pure parts: tokens (hashed, 0600, constant-time lookup), what a team sees of twins and alerts, and
the committed OpenAPI document being the one the code generates."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from alerts.policy import Condition, Level, OpenAlert, PatientAlerts
from cli.main import main
from feed import presenters, tokens
from feed.openapi import render
from twin_state.catalogue import Metric
from twin_state.profile import Profile
from twin_state.twin import Position, Reading, Twin, new_twin, step

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_763_942_400_000


def test_committed_openapi_is_what_the_code_generates() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_bytes()
    assert committed == render(), "docs/openapi.json is stale: .venv/bin/python -m feed.openapi > docs/openapi.json"


def test_tokens_are_stored_hashed_in_a_private_file_and_looked_up(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tokens.json"
    secret, entry = tokens.issue(path, "nurse-17", "ward-7", NOW)
    other, _ = tokens.issue(path, "dr-4", "ward-9", NOW)
    assert len(secret) >= 43 and secret != other
    text = path.read_text()
    assert secret not in text and other not in text and entry.sha256 in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    entries = tokens.load(path)
    assert tokens.lookup(entries, secret) == tokens.Principal("nurse-17", "ward-7")
    assert tokens.lookup(entries, other) == tokens.Principal("dr-4", "ward-9")
    assert tokens.lookup(entries, secret[:-1]) is None and tokens.lookup(entries, "") is None
    assert [e.user for e in tokens.revoke(path, token_id=entry.id)] == ["nurse-17"]
    assert tokens.lookup(tokens.load(path), secret) is None
    assert tokens.lookup(tokens.load(path), other) is not None
    with pytest.raises(tokens.TokenError, match="user"):
        tokens.issue(path, "bad user!", "ward-7", NOW)
    with pytest.raises(tokens.TokenError, match="one of them"):
        tokens.revoke(path)


def test_the_token_book_notices_issue_and_revoke_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    book = tokens.TokenBook(path)
    assert book.principal("anything") is None  # no file yet: nobody
    secret, _ = tokens.issue(path, "nurse-1", "ward-1", NOW)
    assert book.principal(secret) == tokens.Principal("nurse-1", "ward-1")
    tokens.revoke(path, user="nurse-1")
    assert book.principal(secret) is None


def test_token_cli_prints_the_token_once_and_refuses_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    out = CliRunner().invoke(main, ["token", "issue", "--user", "nurse-1", "--team", "ward-1",
                                    "--tokens-file", str(path)])
    assert out.exit_code == 0, out.output
    secret = out.stdout.strip()
    assert tokens.lookup(tokens.load(path), secret) == tokens.Principal("nurse-1", "ward-1")
    assert secret not in out.stderr
    bad = CliRunner().invoke(main, ["token", "issue", "--user", "x y", "--team", "w", "--tokens-file", str(path)])
    assert bad.exit_code == 2 and "user 'x y'" in bad.output
    gone = CliRunner().invoke(main, ["token", "revoke", "--user", "nobody", "--tokens-file", str(path)])
    assert gone.exit_code == 1 and "no matching token" in gone.output
    ok = CliRunner().invoke(main, ["token", "revoke", "--user", "nurse-1", "--tokens-file", str(path)])
    assert ok.exit_code == 0 and tokens.load(path) == []


def _alert(aid: str, level: Level, raised: int) -> OpenAlert:
    return OpenAlert(aid, Condition.CLINICAL, level, raised, raised, 1)


def test_open_alerts_are_highest_level_first_then_newest() -> None:
    a = PatientAlerts("p-1", {Condition.CLINICAL: _alert("a" * 24, Level.LOW, NOW)})
    b = PatientAlerts("p-2", {Condition.CLINICAL: _alert("b" * 24, Level.HIGH, NOW - 60_000),
                              Condition.NO_DATA: OpenAlert("c" * 24, Condition.NO_DATA, Level.HIGH, NOW, NOW, 1)})
    shown = presenters.open_alerts([a, b])
    assert [x.alert_id[0] for x in shown] == ["c", "b", "a"]
    assert [x.patient_id for x in shown] == ["p-2", "p-2", "p-1"] and shown[0].level == "high"


def _twin(pid: str, hr: float, rr: float, minutes: int = 20) -> Twin:
    twin = new_twin(pid)
    seq = 0
    for i in range(minutes * 4):
        t = NOW - (minutes * 60_000) + i * 15_000
        for metric, value in ((Metric.HEART_RATE, hr), (Metric.RESP_RATE, rr), (Metric.SPO2, 97.0),
                              (Metric.BP_SYSTOLIC, 120.0), (Metric.TEMPERATURE, 36.8)):
            seq += 1
            twin, _ = step(twin, Reading(pid, "dev", metric, value, t, seq, 0.95), Position(0, seq))
    return twin


def test_patients_sort_by_predicted_risk_and_detail_carries_bands_and_a_widening_cone() -> None:
    calm, sick = _twin("p-calm", 72, 15), _twin("p-sick", 128, 26)
    summaries = [presenters.summary("p-none", None, None, None, NOW),
                 presenters.summary("p-calm", calm, None, None, NOW),
                 presenters.summary("p-sick", sick, None, None, NOW)]
    ordered = [s.patient_id for s in presenters.by_risk(summaries)]
    assert ordered == ["p-sick", "p-calm", "p-none"]
    sick_summary = next(s for s in summaries if s.patient_id == "p-sick")
    assert sick_summary.news2 is not None and sick_summary.news2.subscores["pulse"] == 2
    assert sick_summary.news2.subscores["rr"] == 3 and sick_summary.stale == []
    d = presenters.detail("p-sick", sick, None, None, [(NOW, "heart_rate", 128.0, 127.5, 1.0, "applied")], NOW)
    hr = next(v for v in d.vitals if v.metric == "heart_rate")
    assert hr.low95 < hr.estimate < hr.high95 and hr.last_raw == 128.0
    widths = [f.high95 - f.low95 for f in hr.forecast]
    assert widths == sorted(widths) and widths[-1] > widths[0]
    assert d.history[0].raw == 128.0 and d.alerts == []


def test_serve_says_in_one_line_when_kafka_is_unreachable(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["serve", "--port", "0"], env={
        "TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1", "TWINMON_TOKENS_FILE": str(tmp_path / "t.json"),
        "TWINMON_AUDIT_KEY": "k" * 32})
    assert out.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1 (set TWINMON_KAFKA_BOOTSTRAP)" in out.output
    assert "Traceback" not in out.output


def test_an_acknowledgement_from_before_the_enrolment_is_not_shown() -> None:
    """A re-enrolled id shows nothing of the episode before its discharge: not the readings, not who acknowledged
    what. An alert still open stays shown, unacknowledged: the view never looks calmer than the state."""
    sick = _twin("p-1", 128, 26)  # readings NOW-20 min .. NOW
    discharged_at = NOW - 5 * 60_000
    acked = dataclasses.replace(_alert("a" * 24, Level.HIGH, NOW - 30 * 60_000), acknowledged_by="nurse-of-ward-9",
                                acknowledged_at=NOW - 10 * 60_000)
    later = dataclasses.replace(_alert("b" * 24, Level.LOW, NOW - 60_000), acknowledged_by="nurse-of-ward-7",
                                acknowledged_at=NOW - 30_000)
    state = PatientAlerts("p-1", {Condition.CLINICAL: acked, Condition.NO_DATA: later})
    history = [(NOW - 10 * 60_000, "heart_rate", 120.0, 120.0, 1.0, "applied"),
               (discharged_at, "heart_rate", 121.0, 121.0, 1.0, "applied"),
               (NOW, "heart_rate", 128.0, 127.5, 1.0, "applied")]
    profile = Profile("p-1", "ward-7", NOW - 60_000, last_discharged_at=discharged_at)
    twin, alerts, points = presenters.this_episode(profile, sick, state, history)
    assert twin is not None and set(twin.vitals) == set(sick.vitals), "readings after the discharge are shown"
    assert alerts is not None and set(alerts.open) == {Condition.CLINICAL, Condition.NO_DATA}
    assert alerts.open[Condition.CLINICAL].acknowledged_by is None
    assert alerts.open[Condition.CLINICAL].acknowledged_at is None
    assert alerts.open[Condition.NO_DATA] == later
    assert [p[0] for p in points] == [NOW]
    shown = presenters.detail("p-1", twin, profile, alerts, points, NOW)
    assert "nurse-of-ward-9" not in shown.model_dump_json() and len(shown.alerts) == 2
    # Readings all from before the discharge: no data, never a score from the earlier episode.
    gone, _, _ = presenters.this_episode(dataclasses.replace(profile, last_discharged_at=NOW + 1), sick, None)
    assert gone is None and presenters.summary("p-1", gone, profile, None, NOW).news2 is None
    # Never discharged: everything shown as stored.
    assert presenters.this_episode(Profile("p-1", "ward-7", NOW), sick, state, history) == (sick, state, history)
    assert presenters.this_episode(None, sick, state, history) == (sick, state, history)
