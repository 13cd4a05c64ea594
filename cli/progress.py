"""Live progress for people watching a worker: reads its Prometheus endpoint, prints one line per interval."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import click
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, token: str | None = None) -> dict[str, float]:
    """Sum every sample of each metric family (over labels), keyed by sample name."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310 - operator-supplied local URL
    with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 - operator-supplied local URL
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def watch(url: str, interval: float, count: int, token: str | None = None) -> None:
    prev: dict[str, float] | None = None
    prev_t = 0.0
    printed = 0
    while count == 0 or printed < count:
        try:
            cur = scrape(url, token)
        except (urllib.error.URLError, OSError):
            click.echo(f"waiting for the worker's metrics at {url} ...")
            time.sleep(interval)
            continue
        now = time.monotonic()
        if prev is not None:
            dt = max(now - prev_t, 1e-6)
            rate = (cur.get("twinmon_events_consumed_total", 0) - prev.get("twinmon_events_consumed_total", 0)) / dt
            click.echo(
                f"{time.strftime('%H:%M:%S')}  events/s {rate:8.0f}   "
                f"events {cur.get('twinmon_events_consumed_total', 0):10.0f}   "
                f"twins updated {cur.get('twinmon_twins_persisted_total', 0):10.0f}   "
                f"resident {cur.get('twinmon_twins_resident', 0):6.0f}   "
                f"dead-lettered {cur.get('twinmon_events_dead_lettered_total', 0):6.0f}   "
                f"alerts {cur.get('twinmon_alerts_total', 0):5.0f}   "
                f"lag {cur.get('twinmon_consumer_lag', 0):6.0f}"
            )
            printed += 1
        prev, prev_t = cur, now
        time.sleep(interval)
