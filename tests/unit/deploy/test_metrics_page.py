"""The metrics page stays small at 100,000 patients."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from alerts.policy import Condition, Level, OpenAlert, PatientAlerts
from streams.metrics import MAX_CARE_TEAMS, Metrics
from twin_state import kalman
from twin_state.profile import Profile, Status
from twin_state.twin import Quality, Twin, VitalState


def vital(updated_at: int) -> VitalState:
    return VitalState(kalman.start(70.0, 25.0, 1.0), updated_at, 1, 70.0, updated_at, "d-1")


def resident(pid: str, last_ms: int | None, team: str | None, *, discharged: bool = False,
             open_levels: tuple[Level, ...] = ()) -> tuple[Twin, PatientAlerts, Profile | None]:
    from twin_state.catalogue import Metric

    vitals = {Metric.HEART_RATE: vital(last_ms)} if last_ms is not None else {}
    twin = Twin(pid, vitals=vitals, quality={Metric.HEART_RATE: Quality(8.0, 10.0, last_ms or 0)} if vitals else {})
    conditions = list(Condition)
    opened = {conditions[i]: OpenAlert(f"a-{pid}-{i}", conditions[i], level, 0, 0, 1)
              for i, level in enumerate(open_levels)}
    profile = None if team is None else Profile(pid, team, 0, Status.DISCHARGED if discharged else Status.ENROLLED)
    return twin, PatientAlerts(pid, opened), profile


def test_census_counts_open_alerts_stale_and_monitored_patients_per_care_team() -> None:
    now = 10_000_000
    limit = 15 * 60_000
    metrics = Metrics(CollectorRegistry())
    residents = [
        resident("p1", now - 1000, "ward-7", open_levels=(Level.HIGH,)),
        resident("p2", now - limit, "ward-7", open_levels=(Level.MEDIUM, Level.LOW)),
        resident("p3", None, None),
        resident("p4", now - 5, "ward-9", discharged=True, open_levels=(Level.HIGH,)),
    ]
    asyncio.run(metrics.census(residents, now, limit))
    value = metrics.registry.get_sample_value
    assert value("twinmon_patients_monitored", {"care_team": "ward-7"}) == 2
    assert value("twinmon_patients_stale", {"care_team": "ward-7"}) == 1
    assert value("twinmon_patients_monitored", {"care_team": "unassigned"}) == 1
    assert value("twinmon_patients_stale", {"care_team": "unassigned"}) == 1
    assert value("twinmon_patients_monitored", {"care_team": "ward-9"}) is None  # discharged: not monitored
    assert value("twinmon_readings_recent", {"care_team": "ward-7"}) == 20
    assert value("twinmon_readings_recent_accepted", {"care_team": "ward-7"}) == 16
    assert value("twinmon_alerts_open", {"condition": "clinical", "level": "high"}) == 2
    assert value("twinmon_alerts_open", {"condition": "no_data", "level": "low"}) == 1
    assert value("twinmon_alerts_open", {"condition": "clinical", "level": "medium"}) == 1
    assert value("twinmon_alerts_open", {"condition": "signal_quality", "level": "low"}) == 0
    assert value("twinmon_twins_resident") == 4

    # A care team that has no resident patient any more disappears from the page.
    asyncio.run(metrics.census(residents[2:], now, limit))
    assert value("twinmon_patients_monitored", {"care_team": "ward-7"}) is None
    assert value("twinmon_alerts_open", {"condition": "clinical", "level": "high"}) == 1


def test_metrics_page_stays_small_at_100000_patients_and_carries_no_patient_ids() -> None:
    now = 10_000_000
    metrics = Metrics(CollectorRegistry())
    residents = [resident(f"patient-{i:06d}", now - (i % 3) * 600_000, f"ward-{i % 300:03d}" if i % 7 else None,
                          open_levels=(Level.HIGH,) if i % 50 == 0 else ())
                 for i in range(100_000)]
    asyncio.run(metrics.census(residents, now, 15 * 60_000))
    for p in range(24):
        metrics.consumer_lag.labels("vitals", str(p)).set(p)
    for level in ("low", "medium", "high"):
        metrics.time_to_acknowledge.labels(level).observe(60)
    page = generate_latest(metrics.registry).decode()
    teams = set(re.findall(r'care_team="([^"]*)"', page))
    assert len(teams) == MAX_CARE_TEAMS and "other" in teams and "unassigned" in teams
    assert len(page.encode()) < 64 * 1024, len(page.encode())
    assert page.count("\n") < 1000
    assert "patient-" not in page
    total = sum(metrics.registry.get_sample_value("twinmon_patients_monitored", {"care_team": t}) or 0 for t in teams)
    assert total == 100_000  # nothing lost by folding the smallest teams into "other"


def test_metric_names_follow_the_conventions_and_labels_carry_no_patient_data() -> None:
    metrics = Metrics(CollectorRegistry())
    for family in metrics.registry.collect():
        assert family.name.startswith(("twinmon_", "process_")), family.name
        if family.type == "histogram" and family.name != "twinmon_batch_size":
            assert family.name.endswith("_seconds"), family.name
    forbidden = {"patient", "patient_id", "value", "device", "device_id", "user", "alert_id"}
    for attr in vars(metrics).values():
        if isinstance(attr, MetricWrapperBase):
            assert not set(attr._labelnames) & forbidden, attr
    page = generate_latest(metrics.registry).decode()
    assert re.search(r'^twinmon_build_info\{version="[^"]+"\} 1\.0$', page, re.M)
    assert "process_start_time_seconds" in page
