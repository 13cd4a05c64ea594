"""The care-team page in real headless Chromium (Debian's, driven by Playwright through executable_path): a
patient deteriorates live, the alert shows on the team's page within 2 s of the event that raised it and says why,
acknowledging it on the page changes it in the API and on the `alerts` topic, and another team's page never
shows it. The ward board colours the patient by NEWS2 band, with sparklines, trend arrows and ticking ages; the
patient view shades the NEWS2 bands, keeps forecasts within the possible and shows who acknowledged what. axe-core
(from npm, package-lock.json) finds no WCAG 2.1 A/AA violation on either; the page is used by keyboard; and
screenshots of both at phone, tablet and desktop widths are written for a person to look at."""

from __future__ import annotations

import asyncio
import re
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
SCREENSHOTS = ROOT / ".twinmon" / "screenshots"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"phone": (390, 844), "tablet": (820, 1180), "desktop": (1440, 900)}
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


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA rules on the page as it is now (contrast, names, labels, roles, ...)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP allows no inline script
    found: list[dict[str, Any]] = page.evaluate("""async () => (await axe.run(document, {runOnly: {type: 'tag',
        values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})).violations.map((v) => ({id: v.id, impact: v.impact,
        nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ') + ': ' + n.failureSummary)}))""")
    return found


def layout_problems(page: Any) -> list[str]:
    """What a narrow or wide window must not do: a patient id broken over two lines, an alert's buttons or a tile
    cut off at the card's edge, the page scrolling sideways."""
    problems: list[str] = page.evaluate("""() => {
        const out = [];
        for (const id of document.querySelectorAll('.tile .pid, .alert .patient')) {
            if (id.getClientRects().length > 1) out.push(`id wraps: ${id.textContent}`);
        }
        for (const card of document.querySelectorAll('.alert, .tile')) {
            const box = card.getBoundingClientRect();
            for (const c of card.querySelectorAll('button:not([hidden]), input, a, .score')) {
                const r = c.getBoundingClientRect();
                if (r.width && (r.right > box.right + 0.5 || r.left < box.left - 0.5)) {
                    const which = card.dataset.alertId || card.dataset.patientId;
                    out.push(`${c.className || c.tagName} outside its card ${which}`);
                }
            }
        }
        if (document.documentElement.scrollWidth > window.innerWidth + 1) out.push('the page scrolls sideways');
        return out;
    }""")
    return problems


def screenshots(page: Any, name: str) -> list[Path]:
    """The page at each width, full length; layout checked at each."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    written = []
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        assert layout_problems(page) == [], (name, label, layout_problems(page))
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        written.append(path)
    page.set_viewport_size({"width": 1400, "height": 1000})
    return written


def wait_text(page: Any, selector: str, ok: Any, timeout_s: float) -> str:
    """The element's text once ``ok(text)``; polled from here (the page's CSP forbids the eval that Playwright's
    wait_for_function would need)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = page.text_content(selector) or ""
        if ok(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{selector}: {text!r} after {timeout_s} s")
        page.wait_for_timeout(200)


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

    assert AXE.exists(), "axe-core is missing: run `make node_modules/.installed` (npm ci)"

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

                card = f".alert[data-alert-id='{alert_id}']"
                # Why, in one line: the score, the vitals driving it with value and direction, since when.
                why = wait_text(mine, f"{card} .why", lambda t: "RR 30" in t, 30)
                assert re.fullmatch(r"NEWS2 \d+ high(, P\(≥7 in 1 h\) \d+%)?: .*RR 30 [↑↓→].* · since \d\d:\d\d "
                                    r"\((just now|\d+ s|\d+ min)\)", why), why
                assert mine.get_attribute(f"{card} a.patient", "href") == f"#/patient/{PATIENT}"
                # Its age ticks (it once read "0s" for good).
                age = wait_text(mine, f"{card} .since", lambda t: re.fullmatch(r"\d+ s", t) is not None, 20)
                wait_text(mine, f"{card} .since", lambda t: t != age, 10)  # ticks each second; a loaded page lags
                # New and high: it draws attention until acknowledged, and was announced to screen readers.
                assert "fresh" in (mine.get_attribute(card, "class") or "")
                assert PATIENT in (mine.text_content("#announce") or "")
                assert mine.title().startswith("(1 high)")

                # The board: the patient's tile in the high band, its vitals scored and with their direction.
                tile = f".tile[data-patient-id='{PATIENT}']"
                mine.wait_for_selector(f"{tile}[data-band='high']", timeout=30_000)
                rr = mine.get_attribute(f"{tile} .vital[data-metric='resp_rate']", "aria-label") or ""
                assert re.fullmatch(r"RR 30 /min, (rising|steady|falling), scores 3", rr), rr
                assert "sub-3" in (mine.get_attribute(f"{tile} .vital[data-metric='resp_rate']", "class") or "")
                mine.evaluate("reloadTrends()")  # the minute's refresh, now: the calm quarter of an hour is history
                mine.wait_for_selector(f"{tile} .vital[data-metric='heart_rate'] svg.spark path", timeout=10_000)
                assert re.fullmatch(r"just now|\d+ s ago", mine.text_content(f"{tile} .ago") or "")
                # Filtering and sorting: alerts only keeps ours; by id puts it first.
                mine.check("#f-alerts")
                assert mine.eval_on_selector_all(".tile", "ts => ts.map(t => t.dataset.patientId)") == [PATIENT]
                mine.uncheck("#f-alerts")
                assert axe_violations(mine) == []
                written = screenshots(mine, "board")

                mine.click(f"{card} button.ack")
                wait_until("the acknowledgement in the API", lambda: any(
                    a["alert_id"] == alert_id and a["acknowledged_by"] == "nurse-a"
                    for a in api.call("GET", "/api/alerts", nurse, expect=200).json()), timeout=30)
                mine.wait_for_selector(f"{card}[data-state='acknowledged']", timeout=10_000)
                assert "fresh" not in (mine.get_attribute(card, "class") or "")
                topic = deployment.env["TWINMON_TOPIC_ALERTS"]
                acked = wait_until("the acknowledged event on the alerts topic", lambda: [
                    e for e in _alert_events(services, topic, 2, 5)
                    if e["alert_id"] == alert_id and e["kind"] == "acknowledged"], timeout=30)
                assert acked[0]["user"] == "nurse-a" and acked[0]["care_team"] == "ward-7"

                # The patient view, by keyboard: history at a chosen window with the NEWS2 bands shaded behind,
                # the forecast cone, the profile, and the alert timeline with who acknowledged.
                mine.focus(f"{tile} a.pid")
                mine.keyboard.press("Enter")
                mine.wait_for_selector("#pv-charts svg[data-metric='heart_rate'] path.cone", timeout=10_000)
                assert mine.evaluate("document.activeElement.id") == "pv-title"
                assert mine.query_selector("#pv-charts svg[data-metric='resp_rate'] rect.nb-3") is not None
                assert mine.query_selector("#pv-charts svg[data-metric='activity'] rect.nb") is None  # not scored
                profile = mine.text_content("#pv-profile") or ""
                assert profile.startswith("Age not recorded") and "SpO2 scale 1" in profile and "?" not in profile
                mine.click(".pv-window button[data-window='360']")
                assert mine.get_attribute(".pv-window button[data-window='360']", "aria-pressed") == "true"
                assert "−6 h" in (mine.text_content("#pv-charts svg[data-metric='heart_rate']") or "")
                mine.wait_for_selector("#pv-timeline li.ev-acknowledged", timeout=30_000)
                assert "acknowledged by nurse-a" in (mine.text_content("#pv-timeline li.ev-acknowledged") or "")
                detail = api.call("GET", "/api/patients/{patient_id}", nurse, path={"patient_id": PATIENT},
                                  expect=200).json()
                for v in detail["vitals"]:
                    lo, hi = v["possible"]
                    assert all(lo <= f["low95"] <= f["mean"] <= f["high95"] <= hi for f in v["forecast"]), v["metric"]
                assert axe_violations(mine) == []
                written += screenshots(mine, "patient")
                print("screenshots: " + ", ".join(str(p.relative_to(ROOT)) for p in written))
                mine.keyboard.press("Escape")
                mine.wait_for_selector("#board:not([hidden])", timeout=5_000)
                # Focus comes back to the patient's tile (waited for: a live re-render may run in between).
                focused_tile = "document.activeElement?.closest('.tile')?.dataset.patientId ?? null"
                deadline = time.monotonic() + 5
                while mine.evaluate(focused_tile) != PATIENT and time.monotonic() < deadline:
                    mine.wait_for_timeout(100)
                assert mine.evaluate(focused_tile) == PATIENT

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
                assert theirs.query_selector(f".tile[data-patient-id='{PATIENT}']") is None
                assert theirs.query_selector(f".tile[data-patient-id='{THEIRS}']") is not None
            finally:
                browser.close()
    finally:
        feeder.halt.set()
        if feeder.is_alive():
            feeder.join(10)
        api.stop()
        worker.stop()
    assert feeder.error is None, f"the live readings failed: {feeder.error!r}"
    for name in ("board", "patient"):
        for label in WIDTHS:
            assert (SCREENSHOTS / f"{name}-{label}.png").stat().st_size > 10_000
