"""Per-token limits of a running ``twinmon serve`` on the real Kafka and Redis (issue 13, finding 12): a token over
its request rate gets 429 with Retry-After while another token of the same user and team does not; a token holds
at most its live streams, and a stream its client closes frees the slot. Every answer is validated against the
served OpenAPI document."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Deployment
from tests.support.feed_helpers import ApiProcess, wait_until

pytestmark = pytest.mark.integration

TEAM = "ward-7"


def test_a_token_over_its_rate_gets_429_with_retry_after_and_another_token_does_not(deployment: Deployment) -> None:
    mine = deployment.token("nurse-1", TEAM)
    mine_too = deployment.token("nurse-1", TEAM)  # the same user and team: a token of its own, a bucket of its own
    # 0.5/s: the three quick requests and the fourth fit well inside the 2 s one request takes to refill.
    api = deployment.start_api(TWINMON_API_RATE_PER_S="0.5", TWINMON_API_RATE_BURST="3")
    try:
        for _ in range(3):
            api.call("GET", "/api/me", mine, expect=200)
        r = api.call("GET", "/api/patients", mine, expect=429)
        wait = int(r.headers["Retry-After"])
        assert 1 <= wait <= 2 and r.json()["error"].startswith("too many requests")
        r = api.call("GET", "/fhir/Flag", mine, params={"patient": "p-1"}, expect=429)
        assert r.json()["issue"][0]["code"] == "throttled" and int(r.headers["Retry-After"]) >= 1
        api.call("GET", "/api/me", mine_too, expect=200)
        for template in ("/healthz", "/readyz"):  # the probes are never limited, even with a throttled token
            api.call("GET", template, mine, expect=200)
        assert httpx.get(f"{api.url}/", headers={"Authorization": f"Bearer {mine}"}, timeout=10).status_code == 200
        time.sleep(wait)
        api.call("GET", "/api/me", mine, expect=200)  # refilled after Retry-After
    finally:
        api.stop()
    log = api.log.read_text()
    assert "/api/patients 429" in log and mine not in log


@contextlib.contextmanager
def _stream(api: ApiProcess, token: str) -> Iterator[httpx.Response]:
    with httpx.stream("GET", f"{api.url}/api/stream", headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as resp:
        # Kept until the end: an abandoned line iterator, once collected, closes the connection.
        lines = resp.iter_lines()
        if resp.status_code == 200:
            assert next(lines) == "retry: 3000"  # the server holds the stream, and its slot
        else:
            resp.read()
        yield resp
        del lines


def test_a_token_holds_at_most_its_streams_and_a_closed_stream_frees_its_slot(deployment: Deployment) -> None:
    mine = deployment.token("nurse-1", TEAM)
    mine_too = deployment.token("nurse-1", TEAM)
    api = deployment.start_api(TWINMON_API_STREAMS_PER_TOKEN="2")
    try:
        with contextlib.ExitStack() as held:
            first = held.enter_context(_stream(api, mine))
            second = held.enter_context(_stream(api, mine))
            assert first.status_code == second.status_code == 200
            with _stream(api, mine) as third:
                assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1
                api.validate("/api/stream", "GET", third)
                assert "live streams open" in third.json()["error"]
            with _stream(api, mine_too) as other:
                assert other.status_code == 200
            first.close()  # the client goes away; the server notices at its next poll and frees the slot

            def reopened() -> bool:
                resp = held.enter_context(_stream(api, mine))
                return resp.status_code == 200

            wait_until("a new stream in the freed slot", reopened, timeout=30, every=0.5)
            with _stream(api, mine) as again:
                assert again.status_code == 429  # two open again: the slot was freed once, not twice
    finally:
        api.stop()
