"""Per-token limits of the care-team feed: a request rate (token bucket) and a cap on open live streams.

Pure: no I/O, and the clock is passed in, so the bucket arithmetic is tested without waiting. The keys are what
the caller chooses; the feed uses ``feed.tokens.digest`` of the bearer token, so no map here holds a token.

Memory stays bounded without a sweeper task: a bucket left alone for ``burst / rate_per_s`` seconds is full
again, exactly as a bucket never seen, so it is forgotten at the next call; a stream count is forgotten when it
falls to zero. ``max_keys`` caps the buckets even if that many tokens were busy at once (the idlest goes first).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, refilled at ``rate_per_s``."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        if rate_per_s <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be > 0, burst and max_keys >= 1")
        self.rate_per_s, self.burst, self.max_keys, self._clock = rate_per_s, burst, max_keys, clock
        self.full_after_s = burst / rate_per_s
        # key -> (tokens, when counted); least recently touched first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> int:
        """Spend one request of ``key``'s bucket: 0 if it may go ahead; if not, nothing is spent and the answer
        is the whole seconds (at least 1, rounded up) until the bucket holds a request again, for Retry-After."""
        now = self._clock()
        self._forget_idle(now)
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(now - at, 0.0) * self.rate_per_s)
        wait = 0 if tokens >= 1.0 else max(1, math.ceil((1.0 - tokens) / self.rate_per_s))
        self._buckets[key] = (tokens - 1.0 if wait == 0 else tokens, now)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_idle(self, now: float) -> None:
        while self._buckets:
            key, (_, at) = next(iter(self._buckets.items()))
            if now - at < self.full_after_s and len(self._buckets) < self.max_keys:
                return
            del self._buckets[key]


class StreamSlots:
    """At most ``per_key`` open streams per key; ``acquire`` hands out a slot that ``Slot.release`` frees."""

    def __init__(self, per_key: int) -> None:
        if per_key < 1:
            raise ValueError("per_key must be >= 1")
        self.per_key = per_key
        self._open: dict[str, int] = {}

    def acquire(self, key: str) -> Slot | None:
        """A slot for one more stream of ``key``, or None when it already has ``per_key`` open."""
        n = self._open.get(key, 0)
        if n >= self.per_key:
            return None
        self._open[key] = n + 1
        return Slot(self, key)

    def in_use(self, key: str) -> int:
        return self._open.get(key, 0)

    def __len__(self) -> int:
        return len(self._open)

    def _release(self, key: str) -> None:
        n = self._open.get(key, 0) - 1
        if n > 0:
            self._open[key] = n
        else:
            self._open.pop(key, None)


class Slot:
    """One open stream's place; releasing it twice frees it once (a stream can end by several paths)."""

    __slots__ = ("_key", "_owner")

    def __init__(self, owner: StreamSlots, key: str) -> None:
        self._owner: StreamSlots | None = owner
        self._key = key

    def release(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._release(self._key)
