"""One computation of a team's patient summaries, shared by every live stream of that team.

Each SSE connection polls its team's summaries every ``api_twin_poll_s``; without sharing, a ward with 30 open
pages made 30 identical Redis reads and 30 summary computations every 2 s. ``SharedByTeam`` returns a result
computed less than ``max_age_s`` ago, and when none is fresh, one computation runs and every caller that asks
meanwhile waits for it (single flight). A failure reaches every waiter and is not kept: the next call retries;
if the computing caller is cancelled (its page closed), a waiter computes instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Abandoned(Exception):
    """The computing caller was cancelled; its waiters compute again."""


class SharedByTeam(Generic[T]):
    def __init__(self, compute: Callable[[str], Awaitable[T]], max_age_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._compute, self.max_age_s, self._clock = compute, max_age_s, clock
        self._fresh: dict[str, tuple[float, T]] = {}
        self._running: dict[str, asyncio.Future[T]] = {}

    async def get(self, team: str) -> T:
        hit = self._fresh.get(team)
        if hit is not None and self._clock() - hit[0] < self.max_age_s:
            return hit[1]
        running = self._running.get(team)
        if running is not None:
            try:
                return await asyncio.shield(running)
            except _Abandoned:  # its caller went away (a page closed) before it finished: compute here
                return await self.get(team)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # no "never retrieved" warning
        self._running[team] = future
        started = self._clock()
        try:
            value = await self._compute(team)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else _Abandoned())
            raise
        finally:
            del self._running[team]
        self._fresh[team] = (started, value)
        self._forget_old(started)
        future.set_result(value)
        return value

    def _forget_old(self, now: float) -> None:
        stale = [team for team, (at, _) in self._fresh.items() if now - at > 10 * self.max_age_s]
        for team in stale:
            del self._fresh[team]
