"""The policy file (alerts/config.py): every key read and validated, its id stable, the shipped default equal to the
code's, and the id carried by the worker's alert events, the stored alert state, the feed's view and the reports."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import msgpack
import pytest
from click.testing import CliRunner

from alerts import codec
from alerts.config import (
    CALIBRATION_SECTION,
    ID_PREFIX,
    SECTIONS,
    AlertingConfig,
    ConfigError,
    load_config,
    parse_config,
    policy_id,
    settings_json,
)
from alerts.policy import Condition, Kind, Level, OpenAlert, PatientAlerts, PolicySettings, TechnicalSettings
from cli.main import main
from evaluation.cohort import compare, evaluate_recorded, write_comparison
from feed import presenters
from simulation.simulator import simulate
from streams.processor import BatchProcessor, RawMessage
from streams.schema import encode
from twin_state.catalogue import Metric
from twin_state.risk import RiskSettings
from twin_state.store import InMemoryTwinStore
from twin_state.twin import Position, Reading, new_twin, step

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_FILE = ROOT / "deploy" / "policy" / "default.toml"
T0 = 1_763_942_400_000

# (section, key, a valid value other than the default, a value that must be refused)
CASES: list[tuple[str, str, Any, Any]] = [
    ("policy", "persist_ms", 45_000, 1.5),
    ("policy", "clear_ms", 300_000, 0),
    ("policy", "escalate_after_ms", {"high": 120_000}, {"high": -1}),
    ("policy", "single_three", "medium", "urgent"),
    ("policy", "predicted_medium", 0.8, 0),
    ("policy", "predicted_high", 0.9, 1.01),
    ("policy", "predicted_horizon_min", 30.0, -5),
    ("policy", "drift_medium", 0.0, -1),
    ("policy", "confirm_medium_ms", 600_000, -1),
    ("policy", "unconfirmed_level", "high", "none"),
    ("policy", "unconfirmed_min_gap_ms", 300_000, 0),
    ("policy", "exertion_hold_max_ms", 600_000, -1),
    ("policy", "exertion_activity", 80.0, 0),
    ("policy", "exertion_recovery_ms", 300_000, "5 min"),
    ("risk", "horizons_min", [15.0, 60.0], [60, "x"]),
    ("risk", "manual_max_age_min", 240.0, 0),
    ("risk", "acvpu_max_age_min", 120.0, -1.0),
    ("risk", "single_three", "medium", "high"),
    ("risk", "stale_after_ms", {"spo2": 120_000}, {"spo2": 0}),
    ("risk", "slow_persistence_min", 30.0, math.inf),
    ("technical", "no_data_after_ms", 600_000, "15 min"),
    ("technical", "quality_floor", 0.7, 1.5),
    ("technical", "quality_min_readings", 10.0, -1),
    ("evaluation", "every_ms", 5_000, True),
]


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# --- every field has exactly one key, and every key is tested ---------------------------------------------------


def test_every_settings_field_has_a_key_and_every_key_a_test_case() -> None:
    owners = {"policy": PolicySettings, "risk": RiskSettings, "technical": TechnicalSettings}
    for section, (attr, keys) in SECTIONS.items():
        cls = owners.get(section, AlertingConfig)
        # The calibration is a section of its own, read and tested in tests/unit/alerts/test_calibration.py.
        nested = {"policy", "risk", "technical", CALIBRATION_SECTION}
        names = {f.name for f in fields(cls)} - (nested if cls is AlertingConfig else set())
        assert set(keys) == names, f"[{section}]: fields without a key {names - set(keys)}, keys without a field " \
                                   f"{set(keys) - names}"
        assert attr == ("" if cls is AlertingConfig else section)
    assert {(s, k) for s, k, _, _ in CASES} == {(s, k) for s, (_, keys) in SECTIONS.items() for k in keys}


def test_a_field_without_a_key_is_named_not_silently_skipped() -> None:
    @dataclass(frozen=True, slots=True)
    class WiderRisk(RiskSettings):
        gcs_max_age_min: float = 60.0

    with pytest.raises(TypeError, match=r"WiderRisk\.gcs_max_age_min has no key in alerts\.config"):
        settings_json(AlertingConfig(risk=WiderRisk()))
    with pytest.raises(ConfigError, match=r"risk: unknown key\(s\) gcs_max_age_min"):
        parse_config({"risk": {"gcs_max_age_min": 60.0}}, "a.toml")


@pytest.mark.parametrize(("section", "key", "good", "bad"), CASES, ids=[f"{s}.{k}" for s, k, _, _ in CASES])
def test_each_key_sets_only_its_setting_and_refuses_a_bad_value(section: str, key: str, good: Any, bad: Any) -> None:
    defaults = flat(settings_json(AlertingConfig()))
    _, e = parse_config({section: {key: good}}, "a.toml")
    changed = {k for k, v in flat(settings_json(e)).items() if defaults[k] != v}
    assert changed and all(k == f"{section}.{key}" or k.startswith(f"{section}.{key}.") for k in changed), changed
    assert policy_id(e) != policy_id(AlertingConfig())
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: bad}}, "dir/b.toml")
    message = str(info.value)
    assert message.startswith("dir/b.toml: ") and f"{section}.{key}" in message and "\n" not in message


@pytest.mark.parametrize("section", list(SECTIONS))
def test_unknown_keys_are_refused_in_every_section(section: str) -> None:
    with pytest.raises(ConfigError, match=rf"b\.toml: {section}: unknown key\(s\) thresholdd; expected some of"):
        parse_config({section: {"thresholdd": 1}}, "b.toml")


def test_settings_json_reads_back_as_the_same_settings() -> None:
    doc: dict[str, Any] = {}
    for section, key, good, _ in CASES:
        if key != "predicted_horizon_min":  # 30 is not among the changed horizons (15, 60)
            doc.setdefault(section, {})[key] = good
    _, e = parse_config(doc, "all.toml")
    assert e != AlertingConfig()
    _, again = parse_config(settings_json(e), "again.toml")
    assert again == e and policy_id(again) == policy_id(e)


# --- the id ------------------------------------------------------------------------------------------------------


def test_the_id_names_the_thresholds_not_the_file(tmp_path: Path) -> None:
    texts = [
        '[policy]\npersist_ms = 45000\n[risk]\nhorizons_min = [30, 60]\n',
        # another name, other key order, inline tables, floats written as integers, defaults written out
        'name = "ward 7 trial"\n[risk]\nmanual_max_age_min = 720\nhorizons_min=[30.0,60.0]\n'
        'stale_after_ms = {heart_rate = 300000}\n[policy]\nescalate_after_ms = {low = 3600000}\npersist_ms=45000\n',
        'policy = { persist_ms = 45000, predicted_medium = 0.70 }\n# a comment\n\n[technical]\nquality_floor = 0.5\n',
    ]
    ids = set()
    for i, text in enumerate(texts):
        path = tmp_path / f"p{i}.toml"
        path.write_text(text)
        ids.add(policy_id(load_config(path)[1]))
    (pid,) = ids
    assert re.fullmatch(rf"{ID_PREFIX}[0-9a-f]{{12}}", pid)
    assert pid == policy_id(parse_config({"policy": {"persist_ms": 45_000}})[1])
    assert pid != policy_id(parse_config({"policy": {"persist_ms": 45_001}})[1]) != policy_id(AlertingConfig())


def test_the_shipped_default_file_is_the_code_defaults_with_every_key_written_out() -> None:
    name, e = load_config(DEFAULT_FILE)
    assert name == "default" and e == AlertingConfig() and policy_id(e) == policy_id(AlertingConfig())
    written = flat(tomllib.loads(DEFAULT_FILE.read_text()))
    assert set(flat(settings_json(AlertingConfig()))) <= set(written), "document every key in the shipped file"
    # its header names its id, so that an id seen on an alert can be matched to the file by eye
    assert f"Its id: {policy_id(e)}" in DEFAULT_FILE.read_text()


def test_load_config_names_a_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.toml: cannot read"):
        load_config("/nonexistent/nowhere.toml")


# --- the id travels: alert state, wire, processor, feed, reports -----------------------------------------------


def test_alert_state_keeps_the_policy_id_and_old_blobs_still_read() -> None:
    alert = OpenAlert("a-1", Condition.CLINICAL, Level.MEDIUM, T0, T0, 1)
    state = PatientAlerts("p-1", {Condition.CLINICAL: alert}, {}, T0, "pol-0123456789ab")
    assert codec.unpack(codec.pack(state)) == state
    old = msgpack.packb([1, "p-1", T0, [["clinical", "a-1", 2, T0, T0, 1, None, None, None, None]], []],
                        use_bin_type=True)
    assert codec.unpack(old) == PatientAlerts("p-1", {Condition.CLINICAL: alert}, {}, T0, None)


def deteriorating() -> list[RawMessage]:
    readings = simulate(6, 3 * 3600.0, rate=0.25, seed=8, start_ms=T0, deteriorating_share=0.5)
    return [RawMessage(0, i, r.patient_id.encode(), encode(r)) for i, (_, r) in enumerate(readings)]


async def test_the_processor_runs_its_policy_and_stamps_its_id_on_every_stored_alert_state() -> None:
    _, strict = parse_config({"policy": {"persist_ms": 120_000}}, "strict.toml")
    batch = deteriorating()
    runs = {}
    for name, evaluation in (("defaults", AlertingConfig()), ("strict", strict)):
        store = InMemoryTwinStore()
        events: list[Any] = []

        async def publish(new: Any, out: list[Any] = events) -> None:
            out.extend(new)

        processor = BatchProcessor(store, publish=publish, evaluation=evaluation)
        await processor.process(batch, T0 + 4 * 3_600_000)
        records = await store.load_records(sorted({m.key.decode() for m in batch if m.key}))
        states = [codec.unpack(extra) for _, extra in records.values() if extra]
        assert states and {s.policy_id for s in states} == {policy_id(evaluation)} == {processor.policy_id}
        runs[name] = events
    assert runs["defaults"] and runs["strict"]
    # the thresholds really ran: a level must persist 4 times as long, so each clinical alert is raised later
    first = {name: {e.alert_id: e.at for e in reversed(evs) if e.kind is Kind.RAISED} for name, evs in runs.items()}
    later = [first["strict"][a] - first["defaults"][a] for a in set(first["strict"]) & set(first["defaults"])]
    assert later and min(later) >= 90_000 - AlertingConfig().every_ms  # evaluated every 10 s of event time
    wire = codec.event_to_wire(runs["strict"][0], policy_id(strict))
    assert wire["policy_id"] == policy_id(strict) and wire["event_id"] == runs["strict"][0].event_id


async def test_a_state_stored_under_another_policy_is_restamped_when_evaluated_again() -> None:
    store = InMemoryTwinStore()
    batch = deteriorating()
    await BatchProcessor(store).process(batch[: len(batch) // 2], T0 + 4 * 3_600_000)
    _, other = parse_config({"technical": {"no_data_after_ms": 600_000}}, "other.toml")
    processor = BatchProcessor(store, evaluation=other)
    await processor.process(batch[len(batch) // 2:], T0 + 4 * 3_600_000)
    records = await store.load_records(["sim-000000"])
    extra = records["sim-000000"][1]
    assert extra is not None and codec.unpack(extra).policy_id == policy_id(other) != policy_id(AlertingConfig())


def test_the_feed_patient_view_carries_the_policy_id() -> None:
    twin = new_twin("p-1")
    d = presenters.detail("p-1", twin, None, PatientAlerts("p-1", policy_id="pol-0123456789ab"), [], T0)
    assert d.policy_id == "pol-0123456789ab"
    assert presenters.detail("p-1", twin, None, None, [], T0).policy_id is None


def test_the_feed_computes_the_risk_it_shows_with_the_policy_it_is_given() -> None:
    twin = new_twin("p-1")
    for i, (metric, value) in enumerate([(Metric.HEART_RATE, 72.0), (Metric.RESP_RATE, 16.0)]):
        twin, _ = step(twin, Reading("p-1", "dev-1", metric, value, T0 + i * 1000, i), Position(0, i))
    later = T0 + 4 * 60_000  # 4 min on: fresh under the defaults (5 min for heart rate), stale under a 2 min limit
    _, strict = parse_config({"risk": {"stale_after_ms": {"heart_rate": 120_000}}}, "strict.toml")
    assert presenters.detail("p-1", twin, None, None, [], later).summary.stale == []
    shown = presenters.detail("p-1", twin, None, None, [], later, strict.risk)
    assert shown.summary.stale == ["heart_rate"] and next(v for v in shown.vitals if v.metric == "heart_rate").stale
    assert shown.summary.news2 is not None and "pulse" in shown.summary.news2.missing
    assert presenters.summary("p-1", twin, None, None, later, strict.risk).stale == ["heart_rate"]


def test_a_bad_policy_file_stops_the_feed_at_start_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[technical]\nquality_floor = 2\n")
    out = CliRunner().invoke(main, ["serve", "--port", "0"], env={
        "TWINMON_POLICY_FILE": str(path), "TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "TWINMON_TOKENS_FILE": str(tmp_path / "t.json")})
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert f"bad policy file (TWINMON_POLICY_FILE): {path}: technical.quality_floor must be" in out.output


def test_evaluate_reports_carry_the_policy_id(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(encode(r) for _, r in simulate(2, 600, seed=4, start_ms=T0)) + b"\n")
    _, e = parse_config({"policy": {"persist_ms": 60_000}}, "b.toml")
    assert evaluate_recorded(events, e)["policy_id"] == policy_id(e)
    assert evaluate_recorded(events)["policy_id"] == policy_id(AlertingConfig())
    a, b = parse_config({}, "a.toml"), parse_config({"policy": {"persist_ms": 60_000}}, "b.toml")
    cmp = compare(a, b, lambda ev: evaluate_recorded(events, ev))
    write_comparison(cmp, tmp_path / "cmp")
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert f"| policy id | {policy_id(a[1])} | {policy_id(b[1])} |" in md
    summary = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert (summary["a"]["policy_id"], summary["b"]["policy_id"]) == (policy_id(a[1]), policy_id(b[1]))


# --- the worker stops at start on a bad file ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("[policy]\npersist_ms = -1\n", "policy.persist_ms must be a positive whole number of milliseconds"),
    ("[risk]\nhorizons = [30]\n", "risk: unknown key(s) horizons"),
    ("[policy\n", "not valid TOML"),
])
def test_a_bad_policy_file_stops_the_worker_at_start_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    # Unreachable Kafka and Redis: the file must be refused before anything is contacted.
    env = {"TWINMON_POLICY_FILE": str(path), "TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "TWINMON_REDIS_URL": "redis://127.0.0.1:1/0", "TWINMON_METRICS_PORT": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "cli.main", "worker"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert lines[0].startswith(f"Error: bad policy file (TWINMON_POLICY_FILE): {path}: ") and expected in lines[0]


def test_a_missing_policy_file_stops_the_worker_too(tmp_path: Path) -> None:
    env = {"TWINMON_POLICY_FILE": str(tmp_path / "absent.toml"), "TWINMON_METRICS_PORT": "0", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "cli.main", "worker"], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=60, check=False)
    assert out.returncode == 1 and f"{tmp_path / 'absent.toml'}: cannot read" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_loader_is_pure_core_importing_no_edge_or_io_library() -> None:
    import ast

    tree = ast.parse((ROOT / "alerts" / "config.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "hashlib", "json", "math", "tomllib", "collections", "dataclasses", "pathlib",
                        "typing", "alerts", "twin_state"}, imported
