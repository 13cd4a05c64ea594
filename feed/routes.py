"""The feed's routes, one router per topic (``create_api`` includes them in this order): health, patients and
enrolment, alerts, the audit trail, the live stream and the web page. Each route reads and writes through
``feed.service.Feed`` and sees only the token's team."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path as FsPath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import Receive, Scope, Send

from alerts import codec as alert_codec
from feed import models, presenters
from feed.deps import FeedDep, Who, bearer
from feed.errors import ERRORS, WITH_BODY, ApiError
from feed.limits import Slot
from feed.service import Feed
from feed.tokens import digest
from streams.enrolment import ANCHORED_ID
from twin_state.profile import Status

STATIC = FsPath(__file__).with_name("static")
PatientId = Annotated[str, Path(pattern=ANCHORED_ID, description="Patient id")]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="Alert id")]

health_routes = APIRouter()
patients_routes = APIRouter()
alerts_routes = APIRouter()
audit_routes = APIRouter()
stream_routes = APIRouter()
page_routes = APIRouter()
ROUTERS = (health_routes, patients_routes, alerts_routes, audit_routes, stream_routes, page_routes)
"""In the order ``create_api`` includes them (the OpenAPI lists paths in this order)."""


@health_routes.get("/healthz", response_model=models.Health, tags=["health"])
async def healthz() -> models.Health:
    """The process is up."""
    return models.Health(status="ok")

@health_routes.get("/readyz", response_model=models.Health, tags=["health"],
         responses={503: {"model": models.Health, "description": "Redis or Kafka not reachable"}})
async def readyz(feed: FeedDep) -> Any:
    """Redis answers a ping and the Kafka producer is connected (and the live alert consumer is running)."""
    checks = await feed.ready()
    ok = all(checks.values())
    body = models.Health(status="ok" if ok else "unavailable", checks=checks)
    return body if ok else JSONResponse(body.model_dump(), status_code=503)

@health_routes.get("/api/me", response_model=models.Me, responses=ERRORS, tags=["health"])
async def me(who: Who) -> models.Me:
    """Who the token belongs to (the page shows it)."""
    return models.Me(user=who.user, team=who.team)


@patients_routes.get("/api/patients", response_model=list[models.PatientSummary], responses=ERRORS, tags=["patients"])
async def list_patients(feed: FeedDep, who: Who) -> list[models.PatientSummary]:
    """My team's patients with NEWS2 now, predicted risk, data quality and staleness; highest risk first."""
    return await feed.patient_lists.get(who.team)

@patients_routes.get("/api/trends", response_model=list[models.PatientTrend], responses=ERRORS, tags=["patients"])
async def trends(feed: FeedDep, who: Who,
                 hours: Annotated[float, Query(gt=0, le=24, description="How far back")] = 6.0,
                 ) -> list[models.PatientTrend]:
    """My team's patients' vitals over the last hours, the mean estimate of each vital in each 36th of the window:
    the ward board's sparklines. As far back as the history kept beside each twin goes (TWINMON_HISTORY_LENGTH)."""
    return await feed.trends(who.team, hours, int(time.time() * 1000))

@patients_routes.get("/api/patients/{patient_id}", response_model=models.PatientDetail, responses=ERRORS,
         tags=["patients"])
async def get_patient(feed: FeedDep, who: Who, patient_id: PatientId,
                      history: Annotated[int, Query(ge=0, le=5000, description="History points")] = 600,
                      ) -> models.PatientDetail:
    """One patient's twin: estimates with uncertainty, last raw reading, trend, baseline, forecast bands,
    NEWS2 subscores, open alerts and recent history for charts."""
    profile = await feed.require(who, patient_id)
    alert_state = await feed.twins.get_alert_state(patient_id)
    twin, state, points = presenters.this_episode(
        profile, await feed.twins.get(patient_id), alert_codec.unpack(alert_state) if alert_state else None,
        await feed.twins.history(patient_id, history) if history else [])
    return presenters.detail(patient_id, twin, profile, state, points, int(time.time() * 1000), feed.policy.risk,
                              feed.policy.calibration)

@patients_routes.post("/api/patients", response_model=models.Accepted, status_code=202, tags=["enrolment"],
          responses={**WITH_BODY, 409: {"model": models.Error, "description": "Id not available"}})
async def enrol(feed: FeedDep, who: Who, body: models.EnrolmentIn) -> models.Accepted:
    """Enrol a patient into my team with a profile; the workers use it within seconds."""
    current = await feed.profiles.get(body.patient_id)
    if current is not None and current.status is Status.ENROLLED and current.care_team != who.team:
        # Patient ids are global, so that the id is taken cannot be hidden; nothing else is said (not the
        # team, not since when), and the attempt is in the trail for whoever reviews it.
        await feed.audit_record(who, "enrol-refused", body.patient_id)
        raise ApiError(409, "this patient id is not available to your team")
    audit_id = await feed.enrol(who, "enrol", body.patient_id, Status.ENROLLED, body.age_band,
                                body.conditions, body.targets)
    return models.Accepted(audit_id=audit_id, detail=f"enrolment of {body.patient_id} sent to the workers")

@patients_routes.put("/api/patients/{patient_id}", response_model=models.Accepted, status_code=202, responses=WITH_BODY,
         tags=["enrolment"])
async def update(feed: FeedDep, who: Who, patient_id: PatientId, body: models.ProfileUpdate) -> models.Accepted:
    """Replace an enrolled patient's profile."""
    await feed.require(who, patient_id)
    audit_id = await feed.enrol(who, "update", patient_id, Status.ENROLLED, body.age_band, body.conditions,
                                body.targets)
    return models.Accepted(audit_id=audit_id, detail=f"profile of {patient_id} sent to the workers")

@patients_routes.delete("/api/patients/{patient_id}", response_model=models.Accepted, status_code=202, responses=ERRORS,
            tags=["enrolment"])
async def discharge(feed: FeedDep, who: Who, patient_id: PatientId) -> models.Accepted:
    """Discharge: the patient leaves my team's lists (as `twinmon discharge`)."""
    await feed.require(who, patient_id)
    audit_id = await feed.enrol(who, "discharge", patient_id, Status.DISCHARGED, None, [], {})
    return models.Accepted(audit_id=audit_id, detail=f"discharge of {patient_id} sent to the workers")


@alerts_routes.get("/api/alerts", response_model=list[models.Alert], responses=ERRORS, tags=["alerts"])
async def list_alerts(feed: FeedDep, who: Who) -> list[models.Alert]:
    """My team's open alerts, highest level first, then newest."""
    _, _, states = await feed.team_states(who.team)
    return presenters.open_alerts(list(states.values()))

@alerts_routes.post("/api/alerts/{alert_id}/acknowledge", response_model=models.Accepted, status_code=202,
          responses=ERRORS, tags=["alerts"])
async def acknowledge(feed: FeedDep, who: Who, alert_id: AlertId) -> models.Accepted:
    """Acknowledge an open alert of my team (someone is on it: it stops escalating)."""
    _, audit_id = await feed.act(who, alert_id, "acknowledge")
    return models.Accepted(audit_id=audit_id, detail="acknowledgement sent to the worker")

@alerts_routes.post("/api/alerts/{alert_id}/resolve", response_model=models.Accepted, status_code=202,
          responses=WITH_BODY, tags=["alerts"])
async def resolve(feed: FeedDep, who: Who, alert_id: AlertId, body: models.ResolveIn) -> models.Accepted:
    """Resolve an open alert of my team, with a reason."""
    _, audit_id = await feed.act(who, alert_id, "resolve", body.reason.strip())
    return models.Accepted(audit_id=audit_id, detail="resolution sent to the worker")

@alerts_routes.get("/api/patients/{patient_id}/alerts", response_model=models.Page[models.AlertEvent], responses=ERRORS,
         tags=["alerts"])
async def alert_history(feed: FeedDep, who: Who, patient_id: PatientId,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100,
                        offset: Annotated[int, Query(ge=0)] = 0,
                        since: Annotated[int | None, Query(ge=0, description="Epoch ms, inclusive")] = None,
                        until: Annotated[int | None, Query(ge=0, description="Epoch ms, inclusive")] = None,
                        ) -> models.Page[models.AlertEvent]:
    """One patient's alert events (raised, escalated, acknowledged, resolved), newest first."""
    profile = await feed.require(who, patient_id)
    if profile.last_discharged_at:  # nothing of an earlier episode
        since = max(since or 0, profile.last_discharged_at + 1)
    items, more = await feed.index.alert_history(patient_id, since, until, offset, limit)
    return models.Page[models.AlertEvent](items=[models.AlertEvent.model_validate(i) for i in items],
                                          next_offset=offset + limit if more else None)


@audit_routes.get("/api/audit", response_model=models.Page[models.AuditRecord], responses=ERRORS, tags=["audit"])
async def audit(feed: FeedDep, who: Who, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                offset: Annotated[int, Query(ge=0)] = 0,
                since: Annotated[int | None, Query(ge=0, description="Epoch ms, inclusive")] = None,
                until: Annotated[int | None, Query(ge=0, description="Epoch ms, inclusive")] = None,
                ) -> models.Page[models.AuditRecord]:
    """My team's audit trail (enrolment changes, acknowledgements, resolutions, readings entered through FHIR),
    newest first."""
    items, more = await feed.index.audit(who.team, since, until, offset, limit)
    return models.Page[models.AuditRecord](items=[models.AuditRecord.model_validate(i) for i in items],
                                           next_offset=offset + limit if more else None)


@stream_routes.get("/api/stream", tags=["stream"], responses={**ERRORS, 200: {
    "description": "text/event-stream: `alert` events (an AlertEvent), `patients` events (changed "
                   "PatientSummary list) and heartbeat comments", "content": {"text/event-stream": {}}},
    429: {**ERRORS[429], "description": "This token's request rate is used up, or it already holds "
          "TWINMON_API_STREAMS_PER_TOKEN streams open"}})
async def stream(feed: FeedDep, who: Who, request: Request,
                 creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> StreamingResponse:
    """Server-Sent Events of my team's alert events and twin summaries (closed when the token is revoked)."""
    token = creds.credentials if creds is not None else ""
    slot = feed.streams.acquire(digest(token))
    if slot is None:
        # By then the server has noticed a stream whose client went away (it checks at every twin poll).
        wait = max(1, math.ceil(feed.settings.api_twin_poll_s))
        raise ApiError(429, f"this token already has {feed.streams.per_key} live streams open: close one, "
                       f"or try again in {wait} s", headers={"Retry-After": str(wait)})

    def still_valid() -> bool:
        return feed.tokens.principal(token) == who

    return _SlotStreamingResponse(slot, _events(feed, who.team, request, still_valid),
                                  media_type="text/event-stream",
                                  headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@page_routes.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


class _SlotStreamingResponse(StreamingResponse):
    """Frees its token's stream slot however the stream ends: the events run out (token revoked, fell behind,
    client gone), or the client disconnects mid-send (this call is cancelled or raises), even before the events'
    generator started (whose own ``finally`` would then never run)."""

    def __init__(self, slot: Slot, content: AsyncIterator[bytes], media_type: str, headers: dict[str, str]) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _events(feed: Feed, team: str, request: Request, still_valid: Callable[[], bool]
                  ) -> AsyncIterator[bytes]:
    settings = feed.settings
    queue = feed.hub.subscribe(team)
    sent: dict[str, str] = {}
    try:
        yield b"retry: 3000\n: connected\n\n"
        next_poll = 0.0
        next_beat = time.monotonic() + settings.api_heartbeat_s
        while True:
            now = time.monotonic()
            if now >= next_poll:
                next_poll = now + settings.api_twin_poll_s
                changed = []
                for s in await feed.live_summaries.get(team):
                    blob = s.model_dump_json()
                    if sent.get(s.patient_id) != blob:
                        sent[s.patient_id] = blob
                        changed.append(s.model_dump())
                if changed:
                    yield _sse("patients", changed)
            if now >= next_beat:
                if not still_valid():
                    return  # revoked while connected: the stream ends, the reconnect gets 401
                next_beat = now + settings.api_heartbeat_s
                yield b": heartbeat\n\n"
            timeout = max(min(next_poll, next_beat) - time.monotonic(), 0.01)
            try:
                event = await asyncio.wait_for(queue.get(), timeout)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if event is None:
                return  # fell too far behind: the client reconnects and reloads
            yield _sse("alert", event)
    finally:
        feed.hub.unsubscribe(team, queue)
