"""Team summaries shared by the live streams: one computation per team and freshness window, shared by every
caller meanwhile; failures and cancellations are not kept."""

from __future__ import annotations

import asyncio

import pytest

from feed.single_flight import SharedByTeam


class Source:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.fail = False

    async def __call__(self, team: str) -> list[str]:
        self.calls.append(team)
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("redis down")
        return [f"{team}-{self.calls.count(team)}"]


def test_concurrent_streams_of_a_team_share_one_computation_and_teams_do_not_mix() -> None:
    async def scenario() -> None:
        now = [0.0]
        source = Source()
        shared = SharedByTeam(source, 1.0, clock=lambda: now[0])
        waiting = [asyncio.ensure_future(shared.get("ward-7")) for _ in range(30)]
        other = asyncio.ensure_future(shared.get("ward-9"))
        await asyncio.sleep(0)
        source.gate.set()
        results = await asyncio.gather(*waiting)
        assert source.calls.count("ward-7") == 1 and results == [["ward-7-1"]] * 30
        assert (await other)[0].startswith("ward-9")
        now[0] = 0.99  # still fresh
        assert await shared.get("ward-7") == ["ward-7-1"] and source.calls.count("ward-7") == 1
        now[0] = 1.0  # a window later: computed again
        assert await shared.get("ward-7") == ["ward-7-2"]

    asyncio.run(scenario())


def test_a_failure_reaches_every_waiter_and_the_next_call_retries() -> None:
    async def scenario() -> None:
        source = Source()
        source.fail = True
        shared = SharedByTeam(source, 1.0, clock=lambda: 0.0)
        waiting = [asyncio.ensure_future(shared.get("ward-7")) for _ in range(3)]
        await asyncio.sleep(0)
        source.gate.set()
        for w in waiting:
            with pytest.raises(ConnectionError):
                await w
        source.fail = False
        assert await shared.get("ward-7") == ["ward-7-2"]

    asyncio.run(scenario())


def test_when_the_computing_stream_closes_a_waiting_one_computes_instead() -> None:
    async def scenario() -> None:
        source = Source()
        shared = SharedByTeam(source, 1.0, clock=lambda: 0.0)
        first = asyncio.ensure_future(shared.get("ward-7"))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(shared.get("ward-7"))
        await asyncio.sleep(0)
        first.cancel()  # that page closed mid-computation
        await asyncio.sleep(0)
        source.gate.set()
        assert await second == ["ward-7-2"]
        assert first.cancelled()

    asyncio.run(scenario())


def test_with_max_age_zero_callers_join_a_running_computation_and_a_later_call_computes_afresh() -> None:
    async def scenario() -> None:
        now = [0.0]
        source = Source()
        shared = SharedByTeam(source, 0.0, clock=lambda: now[0])  # GET /api/patients: no cache, single flight
        waiting = [asyncio.ensure_future(shared.get("ward-7")) for _ in range(10)]
        await asyncio.sleep(0)
        source.gate.set()
        assert await asyncio.gather(*waiting) == [["ward-7-1"]] * 10 and source.calls == ["ward-7"]
        assert await shared.get("ward-7") == ["ward-7-2"]  # at the same clock reading: still computed again
        now[0] = 5.0
        assert await shared.get("ward-7") == ["ward-7-3"]
        assert await shared.get("ward-9") == ["ward-9-1"]
        assert len(shared._fresh) <= 2  # nothing piles up: results older than the newest are dropped

    asyncio.run(scenario())
