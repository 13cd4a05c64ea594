"""The care-team page in real headless Chromium (Debian's, driven by Playwright through executable_path): a
patient deteriorates live, the alert shows on the team's page within 2 s of the event that raised it,
acknowledging it on the page changes it in the API and on the `alerts` topic, and another team's page never
shows it. Writes a screenshot for a person to look at."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.schema import encode
from tests.conftest import ROOT, Deployment, Services
from tests.support.feed_helpers import ApiProcess, wait_until
from tests.support.helpers import consume_all
from twin_state.catalogue import Metric
from twin_state.twin import Reading

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
SCREENSHOT = ROOT / ".twinmon" / "artifacts" / "feed.png"
PATIENT, THEIRS = "bt-0001", "bt-0002"
# Values that score NEWS2 3+3+3+3+2: the patient is deteriorating badly.
BAD = {Metric.HEART_RATE: 142.0, Metric.SPO2: 86.0, Metric.RESP_RATE: 30.0, Metric.BP_SYSTOLIC: 88.0,
       Metric.TEMPERATURE: 39.4}
CALM = {Metric.HEART_RATE: 72.0, Metric.SPO2: 97.0, Metric.RESP_RATE: 15.0, Metric.BP_SYSTOLIC: 124.0,
        Metric.TEMPERATURE: 36.8}


class LiveReadings(threading.Thread):
    """A calm quarter of an hour for both patients (stamped in the past, for the charts), then readings stamped
    with the wall clock, once a second, until stopped: our patient deteriorates, the other team's stays calm."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._go())
        except BaseException as exc:  # reported by the test
            self.error = exc

    async def _go(self) -> None:
        prod = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=0)
        await prod.start()
        try:
            seq = 0
            start = int(time.time() * 1000) - 15 * 60_000
            for seq in range(1, 31):
                for pid in (PATIENT, THEIRS):
                    for metric, value in CALM.items():
                        r = Reading(pid, f"dev-{metric.value}", metric, value + (seq % 3) * 0.5, start + seq * 29_000,
                                    seq, 0.95)
                        await prod.send(self.topic, encode(r), key=pid.encode())
            await prod.flush()
            while not self.halt.is_set():
                seq += 1
                now = int(time.time() * 1000)
                for pid, values in ((PATIENT, BAD), (THEIRS, CALM)):
                    for metric, value in values.items():
                        r = Reading(pid, f"dev-{metric.value}", metric, value, now, seq, 0.95)
                        await prod.send(self.topic, encode(r), key=pid.encode())
                await prod.flush()
                await asyncio.sleep(1.0)
        finally:
            await prod.stop()


def _alert_events(services: Services, topic: str, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    # Playwright's sync API keeps an event loop running in this thread: read Kafka from another one.
    with ThreadPoolExecutor(1) as pool:
        records = pool.submit(consume_all, services.bootstrap, topic, expected, timeout_s).result()
    return [orjson.loads(r.value) for r in records]


def _open_page(browser: Any, api: ApiProcess, token: str) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(api.url + "/")
    page.fill("#token", token)
    page.click("#token-form button")
    page.wait_for_selector("#live.on", timeout=20_000)
    return page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is missing: run deploy/local/chromium.sh")
def test_alert_reaches_the_teams_page_live_and_is_acknowledged_there(services: Services,
                                                                     deployment: Deployment) -> None:
    from playwright.sync_api import sync_playwright

    nurse = deployment.token("nurse-a", "ward-7")
    other = deployment.token("nurse-b", "ward-9")
    worker = deployment.start_worker()
    api = deployment.start_api()
    feeder = LiveReadings(services.bootstrap, deployment.topic_vitals)
    try:
        api.call("POST", "/api/patients", nurse, json={"patient_id": PATIENT}, expect=202)
        api.call("POST", "/api/patients", other, json={"patient_id": THEIRS}, expect=202)
        for token in (nurse, other):
            wait_until("the enrolments applied", lambda t=token: api.call("GET", "/api/patients", t).json())
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                mine = _open_page(browser, api, nurse)
                theirs = _open_page(browser, api, other)
                feeder.start()
                item = mine.wait_for_selector(".alert[data-alert-id]", timeout=120_000)
                assert item is not None
                alert_id = item.get_attribute("data-alert-id")
                seen_at = mine.evaluate(f"window.__twinmonSeen['{alert_id}']")
                events = _alert_events(services, deployment.env["TWINMON_TOPIC_ALERTS"], 1, 20)
                raised = next(e for e in events if e["alert_id"] == alert_id and e["kind"] == "raised")
                delay_ms = seen_at - raised["at"]
                print(f"\nalert {raised['level']} {raised['condition']} on the page {delay_ms} ms after its event")
                assert 0 <= delay_ms < 2000, f"the alert appeared {delay_ms} ms after its event"

                mine.click(f".alert[data-alert-id='{alert_id}'] button.ack")
                wait_until("the acknowledgement in the API", lambda: any(
                    a["alert_id"] == alert_id and a["acknowledged_by"] == "nurse-a"
                    for a in api.call("GET", "/api/alerts", nurse, expect=200).json()), timeout=30)
                mine.wait_for_selector(f".alert[data-alert-id='{alert_id}'][data-state='acknowledged']",
                                       timeout=10_000)
                topic = deployment.env["TWINMON_TOPIC_ALERTS"]
                acked = wait_until("the acknowledged event on the alerts topic", lambda: [
                    e for e in _alert_events(services, topic, 2, 5)
                    if e["alert_id"] == alert_id and e["kind"] == "acknowledged"], timeout=30)
                assert acked[0]["user"] == "nurse-a" and acked[0]["care_team"] == "ward-7"

                # The patient view: charts of raw readings, estimate and band, and the forecast cone.
                mine.click(f"#patients tr[data-patient-id='{PATIENT}']")
                mine.wait_for_selector("#pv-charts svg[data-metric='heart_rate'] path.cone", timeout=10_000)
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                mine.screenshot(path=str(SCREENSHOT), full_page=True)
                print(f"screenshot: {SCREENSHOT}")

                # Resolve from the page, with a reason: the alert leaves the page and the API's open list.
                row = f".alert[data-alert-id='{alert_id}']"
                mine.fill(f"{row} input.reason", "reviewed at the bedside")
                mine.click(f"{row} button.resolve")
                mine.wait_for_selector(row, state="detached", timeout=15_000)
                assert all(a["alert_id"] != alert_id for a in api.call("GET", "/api/alerts", nurse, expect=200).json())
                resolved = wait_until("the resolved event on the alerts topic", lambda: [
                    e for e in _alert_events(services, topic, 3, 5)
                    if e["alert_id"] == alert_id and e["kind"] == "resolved"], timeout=30)
                assert resolved[0]["reason"] == "reviewed at the bedside" and resolved[0]["user"] == "nurse-a"

                # The other team's page, open all along, never showed it (nor our patient).
                assert theirs.evaluate("Object.keys(window.__twinmonSeen)") == []
                assert theirs.query_selector_all(".alert") == []
                assert theirs.query_selector(f"#patients tr[data-patient-id='{PATIENT}']") is None
                assert theirs.query_selector(f"#patients tr[data-patient-id='{THEIRS}']") is not None
            finally:
                browser.close()
    finally:
        feeder.halt.set()
        if feeder.is_alive():
            feeder.join(10)
        api.stop()
        worker.stop()
    assert feeder.error is None, f"the live readings failed: {feeder.error!r}"
    assert Path(SCREENSHOT).stat().st_size > 10_000
