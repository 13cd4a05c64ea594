"""The care-team feed: HTTP API, Server-Sent Events and the web page, built by ``create_api(settings)``.

Edges only: every figure comes from the pure core (``feed.presenters``, ``twin_state``, ``alerts``); changes go to
the workers through Kafka (``enrolments``, ``alert-actions``), each preceded by an audit record on ``audit``.
Team scoping: the team comes from the bearer token; another team's patient or alert answers 404, exactly as a
patient that does not exist.
"""


import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path as FsPath
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alerts import codec as alert_codec
from alerts.config import load_policy
from alerts.policy import PatientAlerts
from feed import models, presenters
from feed.audit import audit_key
from feed.index import FeedIndex
from feed.kafka import AuditWriter, Producer, alert_history_indexer, audit_indexer, live_alerts
from feed.limits import RateLimiter, Slot, StreamSlots
from feed.live import Hub
from feed.single_flight import SharedByTeam
from feed.tokens import Principal, TokenBook, digest
from streams.actions import AlertActionV1
from streams.enrolment import ANCHORED_ID, EnrolmentV1, profile_to_wire
from streams.kafka_io import producer, start_producer
from streams.logsafety import exception_summary
from streams.security import redis_client
from streams.settings import Settings
from twin_state.errors import TwinmonError
from twin_state.profile import Profile, Status
from twin_state.redis_store import RedisProfileStore, RedisTwinStore

log = logging.getLogger("twinmon.feed")
STATIC = FsPath(__file__).with_name("static")
PatientId = Annotated[str, Path(pattern=ANCHORED_ID, description="Patient id")]
AlertId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="Alert id")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "Missing or unknown bearer token"},
    404: {"model": models.Error, "description": "No such patient or alert in your care team"},
    422: {"model": models.Error, "description": "Malformed request"},
    429: {"model": models.Error, "description": "This token's request rate is used up (TWINMON_API_RATE_PER_S, "
          "_BURST)", "headers": models.RETRY_AFTER},
}
WITH_BODY: dict[int | str, dict[str, Any]] = {
    **ERRORS, 413: {"model": models.Error, "description": "Request body too large"},
}


class ApiError(TwinmonError):
    def __init__(self, status: int, message: str, detail: list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or []
        self.headers = headers or {}


FHIR_PREFIX = "/fhir/"
_ISSUE_CODE = {401: "login", 404: "not-found", 409: "conflict", 413: "too-costly", 422: "invalid", 429: "throttled"}


def _error(status: int, message: str, detail: list[str] | None = None, headers: dict[str, str] | None = None,
           path: str = "") -> JSONResponse:
    if path.startswith(FHIR_PREFIX):
        # The FHIR endpoints answer errors as FHIR does: an OperationOutcome.
        outcome = models.OperationOutcome(issue=[models.OutcomeIssue(
            severity="error", code=_ISSUE_CODE.get(status, "exception"),
            diagnostics="; ".join([message, *(detail or [])]))])
        return JSONResponse(outcome.model_dump(), status_code=status, headers=headers,
                            media_type="application/fhir+json")
    return JSONResponse(models.Error(error=message, detail=detail or []).model_dump(), status_code=status,
                        headers=headers)


def _not_found(what: str = "patient") -> ApiError:
    return ApiError(404, f"no such {what} in your care team")


def _validation_lines(errors: Any) -> list[str]:
    lines = []
    for e in errors:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        lines.append(f"{loc}: {e.get('msg', 'invalid')}")
    return lines


SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    # The page loads only its own script and style sheet and talks only to this origin; nothing may frame it
    # (clickjacking a nurse's "Acknowledge"), and no URL, which can carry a patient id, leaks as a referrer.
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                                 b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class _HttpMiddleware:
    """An ASGI middleware for HTTP requests (``http``); anything else (lifespan, websocket) passes through."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class SecurityHeaders(_HttpMiddleware):
    """Adds ``SECURITY_HEADERS`` to every HTTP response: the page, static files, the API and its errors."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in SECURITY_HEADERS if k not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)


class CatchAll(_HttpMiddleware):
    """Answers any exception a route or middleware lets through with a 500 that names a request id, and logs only
    that id and ``exception_summary`` (type and where). It does not re-raise: Starlette's ServerErrorMiddleware
    would, and uvicorn would then log the exception's message, which can quote a patient."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            request_id = uuid.uuid4().hex[:16]
            log.error("request %s failed: %s", request_id, exception_summary(exc))
            if not started:  # else the client sees its response cut short, as a server crash would
                await _error(500, f"internal error (request id {request_id}, in the server log)",
                             headers={"X-Request-Id": request_id}, path=scope.get("path", ""))(
                    scope, receive, send)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, by header or, for a chunked body, by reading it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = _error(413, f"request body larger than {self.limit} bytes", path=scope.get("path", ""))
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:  # then the server holds the body to its Content-Length
            await self.app(scope, receive, send)
            return
        # A chunked body (whatever Content-Length says) is read whole, up to the limit, before the app sees it.
        # Counted while the app read it, an oversized body would fail inside the app (a 400 from FastAPI's body
        # parser), or after the answer where a route never reads its body (a traceback in the log).
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away before its body was complete: nobody to answer
            chunks.append(msg.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                await too_large(scope, receive, send)
                return
            if not msg.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


class Feed:
    """What one API process holds: Redis, a Kafka producer, the indexes and the SSE hub."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The same policy file as the workers, so the risk shown is computed with the thresholds that alert.
        self.policy = load_policy(settings.policy_file)[1]
        self.tokens = TokenBook(FsPath(settings.tokens_file))
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
            raise _not_found()
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
        return presenters.by_risk([presenters.summary(pid, twins.get(pid), p, alerts.get(pid), now_ms, self.policy.risk)
                              for pid, p in profiles.items()])

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
            raise ApiError(422, "invalid enrolment", _validation_lines(exc.errors())) from None
        return await self.audited(who, action, patient_id, self.settings.topic_enrolments,
                                  profile_to_wire(model.to_profile()))

    async def act(self, who: Principal, alert_id: str, action: str, reason: str = "") -> tuple[str, str]:
        _, _, states = await self.team_states(who.team)
        owner = next((pid for pid, s in states.items() if any(a.alert_id == alert_id for a in s.open.values())),
                     None)
        if owner is None:
            raise _not_found("open alert")
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


def create_api(settings: Settings) -> FastAPI:
    feed = Feed(settings)
    bearer = HTTPBearer(auto_error=False, description="A token from `twinmon token issue`")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()

    # No /docs or /redoc: their pages load scripts from a CDN, and the feed works with no internet.
    api = FastAPI(title="twinmon care-team feed", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Each team sees and changes only its own patients and alerts. Every request needs "
                              "`Authorization: Bearer <token>` (issued by `twinmon token issue`).")
    api.state.feed = feed

    async def principal(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        if creds is None:
            raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        who = feed.tokens.principal(creds.credentials)
        if who is None:
            raise ApiError(401, "unknown or revoked token")
        return who

    async def within_limits(who: Annotated[Principal, Depends(principal)],
                            creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        """The principal, once its token's request rate allows one more request (else 429 with Retry-After)."""
        wait = feed.rate.take(digest(creds.credentials if creds is not None else ""))
        if wait:
            raise ApiError(429, f"too many requests with this token: try again in {wait} s",
                           headers={"Retry-After": str(wait)})
        return who

    Who = Annotated[Principal, Depends(within_limits)]

    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {**({"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}), **exc.headers}
        return _error(exc.status, exc.message, exc.detail, headers or None, request.url.path)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
            return _error(404, "no such resource", path=request.url.path)  # a malformed id names nothing
        return _error(422, "invalid request", _validation_lines(exc.errors()), path=request.url.path)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.status_code != 404 else "not found"
        if exc.status_code == 400 and message == "There was an error parsing the body":
            # FastAPI's words for a body json.loads could not take (not UTF-8, or nested too deeply).
            message = "the request body is not readable JSON (it must be UTF-8 and not nested too deeply)"
        return _error(exc.status_code, message, path=request.url.path)

    @api.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        # Method, route template, status and duration only: never the query string or headers (tokens).
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "(unmatched)")
        log.info("%s %s %s %.1fms", request.method, template, response.status_code,
                 (time.perf_counter() - started) * 1000)
        return response

    api.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    api.add_middleware(CatchAll)  # inside SecurityHeaders, so a 500 carries them too
    api.add_middleware(SecurityHeaders)  # added last: outermost, so even a refused body's 413 carries them

    # --- health ---
    @api.get("/healthz", response_model=models.Health, tags=["health"])
    async def healthz() -> models.Health:
        """The process is up."""
        return models.Health(status="ok")

    @api.get("/readyz", response_model=models.Health, tags=["health"],
             responses={503: {"model": models.Health, "description": "Redis or Kafka not reachable"}})
    async def readyz() -> Any:
        """Redis answers a ping and the Kafka producer is connected (and the live alert consumer is running)."""
        checks = await feed.ready()
        ok = all(checks.values())
        body = models.Health(status="ok" if ok else "unavailable", checks=checks)
        return body if ok else JSONResponse(body.model_dump(), status_code=503)

    @api.get("/api/me", response_model=models.Me, responses=ERRORS, tags=["health"])
    async def me(who: Who) -> models.Me:
        """Who the token belongs to (the page shows it)."""
        return models.Me(user=who.user, team=who.team)

    # --- patients ---
    @api.get("/api/patients", response_model=list[models.PatientSummary], responses=ERRORS, tags=["patients"])
    async def list_patients(who: Who) -> list[models.PatientSummary]:
        """My team's patients with NEWS2 now, predicted risk, data quality and staleness; highest risk first."""
        return await feed.patient_lists.get(who.team)

    @api.get("/api/patients/{patient_id}", response_model=models.PatientDetail, responses=ERRORS,
             tags=["patients"])
    async def get_patient(who: Who, patient_id: PatientId,
                          history: Annotated[int, Query(ge=0, le=5000, description="History points")] = 600,
                          ) -> models.PatientDetail:
        """One patient's twin: estimates with uncertainty, last raw reading, trend, baseline, forecast bands,
        NEWS2 subscores, open alerts and recent history for charts."""
        profile = await feed.require(who, patient_id)
        alert_state = await feed.twins.get_alert_state(patient_id)
        twin, state, points = presenters.this_episode(
            profile, await feed.twins.get(patient_id), alert_codec.unpack(alert_state) if alert_state else None,
            await feed.twins.history(patient_id, history) if history else [])
        return presenters.detail(patient_id, twin, profile, state, points, int(time.time() * 1000), feed.policy.risk)

    @api.post("/api/patients", response_model=models.Accepted, status_code=202, tags=["enrolment"],
              responses={**WITH_BODY, 409: {"model": models.Error, "description": "Id not available"}})
    async def enrol(who: Who, body: models.EnrolmentIn) -> models.Accepted:
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

    @api.put("/api/patients/{patient_id}", response_model=models.Accepted, status_code=202, responses=WITH_BODY,
             tags=["enrolment"])
    async def update(who: Who, patient_id: PatientId, body: models.ProfileUpdate) -> models.Accepted:
        """Replace an enrolled patient's profile."""
        await feed.require(who, patient_id)
        audit_id = await feed.enrol(who, "update", patient_id, Status.ENROLLED, body.age_band, body.conditions,
                                    body.targets)
        return models.Accepted(audit_id=audit_id, detail=f"profile of {patient_id} sent to the workers")

    @api.delete("/api/patients/{patient_id}", response_model=models.Accepted, status_code=202, responses=ERRORS,
                tags=["enrolment"])
    async def discharge(who: Who, patient_id: PatientId) -> models.Accepted:
        """Discharge: the patient leaves my team's lists (as `twinmon discharge`)."""
        await feed.require(who, patient_id)
        audit_id = await feed.enrol(who, "discharge", patient_id, Status.DISCHARGED, None, [], {})
        return models.Accepted(audit_id=audit_id, detail=f"discharge of {patient_id} sent to the workers")

    # --- alerts ---
    @api.get("/api/alerts", response_model=list[models.Alert], responses=ERRORS, tags=["alerts"])
    async def list_alerts(who: Who) -> list[models.Alert]:
        """My team's open alerts, highest level first, then newest."""
        _, _, states = await feed.team_states(who.team)
        return presenters.open_alerts(list(states.values()))

    @api.post("/api/alerts/{alert_id}/acknowledge", response_model=models.Accepted, status_code=202,
              responses=ERRORS, tags=["alerts"])
    async def acknowledge(who: Who, alert_id: AlertId) -> models.Accepted:
        """Acknowledge an open alert of my team (someone is on it: it stops escalating)."""
        _, audit_id = await feed.act(who, alert_id, "acknowledge")
        return models.Accepted(audit_id=audit_id, detail="acknowledgement sent to the worker")

    @api.post("/api/alerts/{alert_id}/resolve", response_model=models.Accepted, status_code=202,
              responses=WITH_BODY, tags=["alerts"])
    async def resolve(who: Who, alert_id: AlertId, body: models.ResolveIn) -> models.Accepted:
        """Resolve an open alert of my team, with a reason."""
        _, audit_id = await feed.act(who, alert_id, "resolve", body.reason.strip())
        return models.Accepted(audit_id=audit_id, detail="resolution sent to the worker")

    @api.get("/api/patients/{patient_id}/alerts", response_model=models.Page[models.AlertEvent], responses=ERRORS,
             tags=["alerts"])
    async def alert_history(who: Who, patient_id: PatientId,
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

    # --- audit ---
    @api.get("/api/audit", response_model=models.Page[models.AuditRecord], responses=ERRORS, tags=["audit"])
    async def audit(who: Who, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                    offset: Annotated[int, Query(ge=0)] = 0,
                    since: Annotated[int | None, Query(ge=0, description="Epoch ms, inclusive")] = None,
                    until: Annotated[int | None, Query(ge=0, description="Epoch ms, inclusive")] = None,
                    ) -> models.Page[models.AuditRecord]:
        """My team's audit trail (enrolment changes, acknowledgements, resolutions, readings entered through FHIR),
        newest first."""
        items, more = await feed.index.audit(who.team, since, until, offset, limit)
        return models.Page[models.AuditRecord](items=[models.AuditRecord.model_validate(i) for i in items],
                                               next_offset=offset + limit if more else None)

    # --- live stream ---
    @api.get("/api/stream", tags=["stream"], responses={**ERRORS, 200: {
        "description": "text/event-stream: `alert` events (an AlertEvent), `patients` events (changed "
                       "PatientSummary list) and heartbeat comments", "content": {"text/event-stream": {}}},
        429: {**ERRORS[429], "description": "This token's request rate is used up, or it already holds "
              "TWINMON_API_STREAMS_PER_TOKEN streams open"}})
    async def stream(who: Who, request: Request,
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> StreamingResponse:
        """Server-Sent Events of my team's alert events and twin summaries (closed when the token is revoked)."""
        token = creds.credentials if creds is not None else ""
        slot = feed.streams.acquire(digest(token))
        if slot is None:
            # By then the server has noticed a stream whose client went away (it checks at every twin poll).
            wait = max(1, math.ceil(settings.api_twin_poll_s))
            raise ApiError(429, f"this token already has {feed.streams.per_key} live streams open: close one, "
                           f"or try again in {wait} s", headers={"Retry-After": str(wait)})

        def still_valid() -> bool:
            return feed.tokens.principal(token) == who

        return _SlotStreamingResponse(slot, _events(feed, who.team, request, still_valid),
                                      media_type="text/event-stream",
                                      headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # --- web page ---
    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    from feed.fhir_routes import add_fhir_routes

    add_fhir_routes(api, feed, within_limits, lambda: int(time.time() * 1000), _not_found,
                    lambda message: ApiError(422, message))
    return api


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
