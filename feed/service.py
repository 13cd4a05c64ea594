"""What one feed process holds and does: Redis, the Kafka producer, the indexes, the SSE hub and the limits; the
team-scoped reads and the audited writes the routes call."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alerts import codec as alert_codec
from alerts.config import load_policy
from alerts.policy import PatientAlerts
from feed import models, presenters
from feed.audit import audit_key
from feed.errors import ApiError, not_found, validation_lines
from feed.index import FeedIndex
from feed.kafka import AuditWriter, Producer, alert_history_indexer, audit_indexer, live_alerts
from feed.limits import RateLimiter, StreamSlots
from feed.live import Hub
from feed.single_flight import SharedByTeam
from feed.tokens import Principal, TokenBook
from streams.actions import AlertActionV1
from streams.enrolment import EnrolmentV1, profile_to_wire
from streams.kafka_io import producer, start_producer
from streams.security import redis_client
from streams.settings import Settings
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore, RedisTwinStore


class Feed:
    """What one API process holds: Redis, a Kafka producer, the indexes and the SSE hub."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The same policy file as the workers, so the risk shown is computed with the thresholds that alert.
        self.policy = load_policy(settings.policy_file)[1]
        self.tokens = TokenBook(Path(settings.tokens_file))
        self.redis = redis_client(settings)
        self.twins = RedisTwinStore(self.redis, settings.redis_prefix)
        self.profiles = RedisProfileStore(self.redis, settings.redis_prefix)
        self.index = FeedIndex(self.redis, settings.redis_prefix)
        self.hub = Hub()
        # The live streams' summaries, computed once per team however many pages the team has open.
        self.live_summaries: SharedByTeam[list[models.PatientSummary]] = SharedByTeam(
            lambda team: self.summaries(team, int(time.time() * 1000)), settings.api_twin_poll_s / 2)
        # GET /api/patients: callers of one team that arrive while its list is being computed share that
        # computation; one arriving after it computes afresh (max age 0): nothing is kept between requests.
        self.patient_lists: SharedByTeam[list[models.PatientSummary]] = SharedByTeam(
            lambda team: self.summaries(team, int(time.time() * 1000)), 0.0)
        # Per bearer token, keyed by its SHA-256 (never the token): the request rate and the open live streams.
        self.rate = RateLimiter(settings.api_rate_per_s, settings.api_rate_burst)
        self.streams = StreamSlots(settings.api_streams_per_token)
        self._producer: Producer | None = None  # made in start(): aiokafka needs the running loop
        self.producer_started = False
        self._audit: AuditWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("the feed is not started")
        return self._producer

    async def start(self) -> None:
        key = audit_key(self.settings)  # before any connection: no key, no feed
        self._producer = producer(self.settings)
        await start_producer(self._producer)
        self.producer_started = True
        self._audit = AuditWriter(self._producer, self.settings.topic_audit, key, "feed")
        for name, work in (("audit", audit_indexer(self.settings, self.index, key)),
                           ("alert-history", alert_history_indexer(self.settings, self.index)),
                           ("live", live_alerts(self.settings, self.hub, self.in_team))):
            self.tasks.append(asyncio.create_task(work, name=f"feed-{name}"))

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.producer_started:
            await self.producer.stop()
        await self.redis.aclose()

    # --- reads, team-scoped ---
    async def in_team(self, team: str, patient_id: str) -> Profile | None:
        """The patient's profile if it is enrolled in ``team`` now. Decided by the profile, not the team set (an
        index that a crash between its two writes can leave behind)."""
        return (await self.profiles.enrolled_in(team, [patient_id])).get(patient_id)

    async def require(self, who: Principal, patient_id: str) -> Profile:
        profile = await self.in_team(who.team, patient_id)
        if profile is None:
            raise not_found()
        return profile

    async def team_states(self, team: str) -> tuple[dict[str, Profile], dict[str, Any], dict[str, PatientAlerts]]:
        """The team's patients (their profiles), twins and alert states, each of the current episode only."""
        profiles = await self.profiles.enrolled_in(team, await self.profiles.team(team))
        records = await self.twins.load_records(list(profiles))
        twins, alerts = {}, {}
        for pid, (twin, alert_state) in records.items():
            unpacked = alert_codec.unpack(alert_state) if alert_state else None
            twin_now, state, _ = presenters.this_episode(profiles[pid], twin, unpacked)
            if twin_now is not None:
                twins[pid] = twin_now
            if state is not None:
                alerts[pid] = state
        return profiles, twins, alerts

    async def summaries(self, team: str, now_ms: int) -> list[models.PatientSummary]:
        profiles, twins, alerts = await self.team_states(team)
        return presenters.by_risk([presenters.summary(pid, twins.get(pid), p, alerts.get(pid), now_ms, self.policy.risk,
                                                       self.policy.calibration)
                              for pid, p in profiles.items()])

    async def trends(self, team: str, hours: float, now_ms: int) -> list[models.PatientTrend]:
        profiles = await self.profiles.enrolled_in(team, await self.profiles.team(team))
        ids = sorted(profiles)
        histories = await asyncio.gather(*(self.twins.history(pid, self.settings.history_length) for pid in ids))
        # Of the current episode only, as every other view.
        return [presenters.sparklines(pid, presenters.this_episode(profiles[pid], None, None, h)[2], now_ms, hours)
                for pid, h in zip(ids, histories, strict=True)]

    # --- writes: audit first (acks=all), then the change ---
    async def audit_record(self, who: Principal, action: str, patient_id: str, alert_id: str | None = None,
                           reason: str = "") -> str:
        """Append one signed, chained record to the audit topic and wait for the broker's acknowledgement; its id."""
        record = models.AuditRecord(id=uuid.uuid4().hex, at=int(time.time() * 1000), user=who.user, team=who.team,
                                    action=action, patient_id=patient_id, alert_id=alert_id,
                                    reason=reason)
        if self._audit is None:
            raise RuntimeError("the feed is not started")
        await self._audit.append(record)
        return record.id

    async def audited(self, who: Principal, action: str, patient_id: str, topic: str, value: bytes,
                      alert_id: str | None = None, reason: str = "") -> str:
        record_id = await self.audit_record(who, action, patient_id, alert_id, reason)
        await (await self.producer.send(topic, value, key=patient_id.encode()))
        return record_id

    async def enrol(self, who: Principal, action: str, patient_id: str, status: Status, age_band: str | None,
                    conditions: list[str], targets: dict[str, tuple[float, float]]) -> str:
        try:
            model = EnrolmentV1(patient_id=patient_id, care_team=who.team, status=status, age_band=age_band,
                                conditions=conditions, targets=targets, updated_at=int(time.time() * 1000))
        except ValidationError as exc:
            raise ApiError(422, "invalid enrolment", validation_lines(exc.errors())) from None
        return await self.audited(who, action, patient_id, self.settings.topic_enrolments,
                                  profile_to_wire(model.to_profile()))

    async def act(self, who: Principal, alert_id: str, action: str, reason: str = "") -> tuple[str, str]:
        _, _, states = await self.team_states(who.team)
        owner = next((pid for pid, s in states.items() if any(a.alert_id == alert_id for a in s.open.values())),
                     None)
        if owner is None:
            raise not_found("open alert")
        msg = AlertActionV1(action=action, patient_id=owner, alert_id=alert_id,
                            user=who.user, reason=reason, at=int(time.time() * 1000))
        audit_id = await self.audited(who, "acknowledge" if action == "acknowledge" else "resolve", owner,
                                      self.settings.topic_alert_actions, msg.model_dump_json().encode(),
                                      alert_id=alert_id, reason=reason)
        return owner, audit_id

    async def ready(self) -> dict[str, bool]:
        checks = {"redis": False, "kafka": False, "live_alerts": self.hub.live.is_set()}
        with contextlib.suppress(Exception):
            checks["redis"] = bool(await asyncio.wait_for(self.redis.ping(), 2.0))
        if self.producer_started:
            with contextlib.suppress(Exception):
                parts = await asyncio.wait_for(self.producer.partitions_for(self.settings.topic_audit), 2.0)
                checks["kafka"] = bool(parts)
        return checks
