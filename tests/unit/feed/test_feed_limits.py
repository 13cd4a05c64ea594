"""Per-token limits of the feed (issue 13, finding 12): the token bucket and the stream slots on a fake clock, then
the app itself (no Redis or Kafka: the team summaries are a fake) answering 429 with Retry-After, freeing a stream's
slot however it ends, and computing one team's patient list once for concurrent callers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from feed import models, tokens
from feed.api import create_api
from feed.limits import RateLimiter, StreamSlots
from streams.settings import Settings

NOW = 1_763_942_400_000
A, B = tokens.digest("token-a"), tokens.digest("token-b")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the token bucket ---------------------------------------------------------------------------------------

def test_a_full_bucket_allows_the_burst_then_refuses_with_whole_seconds_to_wait() -> None:
    clock = Clock()
    rate = RateLimiter(1.0, 3, clock)
    assert [rate.take(A) for _ in range(3)] == [0, 0, 0]
    assert rate.take(A) == 1  # one request refills in 1 s
    assert rate.take(A) == 1  # a refusal spends nothing, and says the same
    clock.now += 0.25
    assert rate.take(A) == 1  # 0.75 s to go: rounded up, never 0
    slow = RateLimiter(0.1, 2, clock)
    assert [slow.take(A) for _ in range(3)] == [0, 0, 10]
    clock.now += 0.5
    assert slow.take(A) == 10  # 9.5 s rounded up


def test_the_bucket_refills_at_the_rate_and_never_beyond_the_burst() -> None:
    clock = Clock()
    rate = RateLimiter(2.0, 4, clock)
    assert [rate.take(A) for _ in range(5)] == [0, 0, 0, 0, 1]
    clock.now += 0.5  # one request's worth
    assert [rate.take(A), rate.take(A)] == [0, 1]
    clock.now += 1.0  # two
    assert [rate.take(A) for _ in range(3)] == [0, 0, 1]
    clock.now += 3600  # an hour idle: full again, but only to the burst
    assert [rate.take(A) for _ in range(5)] == [0, 0, 0, 0, 1]


def test_each_token_has_its_own_bucket() -> None:
    clock = Clock()
    rate = RateLimiter(1.0, 2, clock)
    assert [rate.take(A) for _ in range(3)] == [0, 0, 1]
    assert [rate.take(B) for _ in range(3)] == [0, 0, 1]
    clock.now += 1.0
    assert rate.take(B) == 0 and rate.take(A) == 0


def test_idle_buckets_are_forgotten_and_a_forgotten_bucket_behaves_as_a_full_one() -> None:
    clock = Clock()
    rate = RateLimiter(1.0, 3, clock)  # full again after 3 s idle
    for i in range(1000):
        rate.take(f"k{i}")
    assert len(rate) == 1000
    rate.take(A)
    rate.take(A)
    clock.now += 2.9
    rate.take(B)
    assert len(rate) == 1002  # nobody idle for 3 s yet
    clock.now += 0.1
    assert rate.take(B) == 0
    assert len(rate) == 1  # the thousand and A, idle 3 s (full again), went at that call; B stays
    assert [rate.take(A) for _ in range(4)] == [0, 0, 0, 1]  # A as a bucket never seen: 3 again, not 1
    clock.now += 3.0
    rate.take(A)
    assert len(rate) == 1  # and now B went


def test_the_number_of_buckets_is_capped_even_when_none_is_idle() -> None:
    clock = Clock()
    rate = RateLimiter(1.0, 3, clock, max_keys=100)
    for i in range(1000):
        rate.take(f"k{i}")
    assert len(rate) == 100


def test_impossible_limits_are_refused() -> None:
    for args in ((0.0, 3), (1.0, 0), (-1.0, 3)):
        with pytest.raises(ValueError, match="must be"):
            RateLimiter(*args)
    with pytest.raises(ValueError, match="must be"):
        StreamSlots(0)


# --- stream slots -------------------------------------------------------------------------------------------

def test_stream_slots_are_capped_per_token_and_freed_once_each() -> None:
    slots = StreamSlots(2)
    first, second = slots.acquire(A), slots.acquire(A)
    assert first is not None and second is not None
    assert slots.acquire(A) is None and slots.in_use(A) == 2
    assert slots.acquire(B) is not None  # another token's slots are its own
    first.release()
    first.release()  # a stream that ends by two paths frees one slot, not two
    assert slots.in_use(A) == 1
    third = slots.acquire(A)
    assert third is not None and slots.acquire(A) is None
    second.release()
    third.release()
    assert slots.in_use(A) == 0 and len(slots) == 1  # A's count is forgotten, B's stream is still open


# --- the app -----------------------------------------------------------------------------------------------

class App:
    """The real app, with a fake in place of the Redis read behind every team summary."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.tokens_file = tmp / "tokens.json"
        self.settings = Settings(redis_url="redis://127.0.0.1:1/0", kafka_bootstrap="127.0.0.1:1",
                                 tokens_file=str(self.tokens_file), **settings)
        self.api = create_api(self.settings)
        self.feed = self.api.state.feed
        self.computed: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.feed.summaries = self.summaries

    async def summaries(self, team: str, now_ms: int) -> list[models.PatientSummary]:
        self.computed.append(team)
        await self.gate.wait()
        return [models.PatientSummary(patient_id=f"{team}-p{len(self.computed)}", news2=None, p_news2_5_60min=None,
                                      p_news2_7_60min=None, data_quality=None, stale=[], last_reading_at=None,
                                      open_alerts=0, highest_alert=None)]

    def token(self, user: str, team: str) -> str:
        return tokens.issue(self.tokens_file, user, team, NOW)[0]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.api), base_url="http://feed")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    yield App(tmp_path, api_rate_per_s=0.5, api_rate_burst=3, api_streams_per_token=2, api_heartbeat_s=0.05,
              api_twin_poll_s=0.05)


async def test_over_the_rate_the_api_and_fhir_answer_429_with_retry_after_and_their_error_bodies(app: App) -> None:
    mine, mine_too = app.token("nurse-1", "ward-7"), app.token("nurse-1", "ward-7")
    async with app.client() as c:
        for _ in range(3):
            assert (await c.get("/api/me", headers=auth(mine))).status_code == 200
        r = await c.get("/api/me", headers=auth(mine))
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        assert r.json() == {"error": "too many requests with this token: try again in 2 s", "detail": []}
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await c.get("/fhir/Flag", params={"patient": "p-1"}, headers=auth(mine))
        assert r.status_code == 429 and r.headers["content-type"] == "application/fhir+json"
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["issue"][0]["code"] == "throttled"
        # The same user and team with another token: its own bucket.
        assert (await c.get("/api/me", headers=auth(mine_too))).status_code == 200
        # Probes, the page and its files are not limited, whoever calls them.
        for path in ("/healthz", "/", "/static/app.js"):
            for _ in range(5):
                assert (await c.get(path, headers=auth(mine))).status_code == 200, path
        # A refused token is refused before any limit, and spends nothing.
        for _ in range(5):
            assert (await c.get("/api/me", headers=auth("not-a-token"))).status_code == 401


async def test_concurrent_patient_lists_of_a_team_are_computed_once_and_a_later_one_afresh(tmp_path: Path) -> None:
    app = App(tmp_path)
    ward7, ward7_other, ward9 = app.token("n-1", "ward-7"), app.token("n-2", "ward-7"), app.token("n-3", "ward-9")
    app.gate.clear()
    looked_up = []
    principal = app.feed.tokens.principal

    def counted(token: str) -> tokens.Principal | None:
        looked_up.append(1)
        return principal(token)

    app.feed.tokens.principal = counted
    async with app.client() as c:
        calls = [asyncio.create_task(c.get("/api/patients", headers=auth(t))) for t in [ward7, ward7_other] * 10]
        nine = asyncio.create_task(c.get("/api/patients", headers=auth(ward9)))
        await _until("every request authenticated", lambda: len(looked_up) == 21)
        await asyncio.sleep(0.05)  # from there to the handler is no I/O: every request waits on the gate by now
        app.gate.set()
        answers = await asyncio.gather(*calls)
        assert {r.status_code for r in answers} == {200}
        assert sorted(app.computed) == ["ward-7", "ward-9"]
        assert {r.json()[0]["patient_id"] for r in answers} == {answers[0].json()[0]["patient_id"]}
        assert (await nine).json()[0]["patient_id"].startswith("ward-9")
        later = await c.get("/api/patients", headers=auth(ward7))
        assert app.computed.count("ward-7") == 2 and later.json()[0]["patient_id"] == "ward-7-p3"


async def _stream(app: App, token: str, gone: asyncio.Event) -> list[dict[str, Any]]:
    """One GET /api/stream as uvicorn drives it (ASGI spec 2.3); ``gone`` is the client disconnecting."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/api/stream", "raw_path": b"/api/stream",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"feed"),
                                                               (b"authorization", f"Bearer {token}".encode())],
             "client": ("127.0.0.1", 5000), "server": ("feed", 80)}
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app.api(scope, receive, send)
    return sent


async def _until(what: str, ok: Any) -> None:
    for _ in range(500):
        if ok():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_token_holds_at_most_its_streams_and_a_closed_stream_frees_its_slot(tmp_path: Path) -> None:
    app = App(tmp_path, api_streams_per_token=2, api_heartbeat_s=0.05, api_twin_poll_s=0.05)
    token = app.token("nurse-1", "ward-7")
    key = tokens.digest(token)
    gone = [asyncio.Event() for _ in range(3)]
    streams = [asyncio.create_task(_stream(app, token, g)) for g in gone[:2]]
    await _until("two streams open", lambda: app.feed.streams.in_use(key) == 2)
    refused = await _stream(app, token, asyncio.Event())
    assert refused[0]["status"] == 429
    assert (b"retry-after", b"1") in refused[0]["headers"]
    assert app.feed.streams.in_use(key) == 2
    gone[0].set()  # a client goes away
    first = await asyncio.wait_for(streams[0], 10)
    assert first[0]["status"] == 200 and app.feed.streams.in_use(key) == 1
    streams.append(asyncio.create_task(_stream(app, token, gone[2])))
    await _until("a new stream in the freed slot", lambda: app.feed.streams.in_use(key) == 2)
    assert not streams[2].done()
    # The token revoked mid-stream: both streams end at their next heartbeat and free their slots.
    tokens.revoke(app.tokens_file, user="nurse-1")
    for s in streams[1:]:
        assert (await asyncio.wait_for(s, 10))[0]["status"] == 200
    assert app.feed.streams.in_use(key) == 0 and len(app.feed.streams) == 0


async def test_a_stream_cancelled_by_the_server_frees_its_slot(tmp_path: Path) -> None:
    app = App(tmp_path, api_streams_per_token=1)
    token = app.token("nurse-1", "ward-7")
    gone = asyncio.Event()
    task = asyncio.create_task(_stream(app, token, gone))
    await _until("the stream open", lambda: app.feed.streams.in_use(tokens.digest(token)) == 1)
    task.cancel()  # the server shutting down, or a cancelled request task
    with pytest.raises(asyncio.CancelledError):
        await task
    assert app.feed.streams.in_use(tokens.digest(token)) == 0
