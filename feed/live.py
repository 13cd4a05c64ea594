"""The live side of the feed without Kafka: the hub of connected SSE clients by care team, and the parsing of
alert events and audit records as they arrive (a forged or malformed record is never passed on)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from feed import models
from feed.audit_chain import mac_ok

log = logging.getLogger("twinmon.feed")
RETRY_S = 2.0
QUEUE_MAX = 1000


class Hub:
    """Connected SSE clients by care team; each has a bounded queue (a client that stops reading is dropped)."""

    def __init__(self) -> None:
        self._clients: dict[str, set[asyncio.Queue[dict[str, Any] | None]]] = defaultdict(set)
        self.live = asyncio.Event()
        """Set once the live consumer has its partitions and positions: events after that reach clients."""

    def subscribe(self, team: str) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_MAX)
        self._clients[team].add(q)
        return q

    def unsubscribe(self, team: str, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._clients[team].discard(q)
        if not self._clients[team]:
            del self._clients[team]

    def publish(self, team: str, event: dict[str, Any]) -> int:
        sent = 0
        for q in list(self._clients.get(team, ())):
            try:
                q.put_nowait(event)
                sent += 1
            except asyncio.QueueFull:
                self.unsubscribe(team, q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)  # tells the stream to close
        return sent

    def has(self, team: str) -> bool:
        return bool(self._clients.get(team))

    def clients(self) -> int:
        return sum(len(v) for v in self._clients.values())


def _parse(model: type[BaseModel], raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw).model_dump()
    except ValidationError:
        return None


def parse_alert_event(raw: bytes | None) -> dict[str, Any] | None:
    return _parse(models.AlertEvent, raw)


def parse_audit(raw: bytes | None, key: bytes) -> dict[str, Any] | None:
    """The record, or None when malformed or not signed with ``key`` (a forged record is never indexed)."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return _parse(models.AuditRecord, raw) if isinstance(doc, dict) and mac_ok(doc, key) else None


