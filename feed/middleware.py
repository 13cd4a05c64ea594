"""The feed's ASGI middleware: security headers on every response, a 500 with a request id for anything a route
lets through (and nothing of its message in any log), request body limits, and an access log without query
strings or headers."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feed.errors import error_response
from streams.logsafety import exception_summary

log = logging.getLogger("twinmon.feed")


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
                await error_response(500, f"internal error (request id {request_id}, in the server log)",
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
        too_large = error_response(413, f"request body larger than {self.limit} bytes", path=scope.get("path", ""))
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


async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
    """Method, route template, status and duration only: never the query string or headers (tokens)."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "(unmatched)")
    log.info("%s %s %s %.1fms", request.method, template, response.status_code,
             (time.perf_counter() - started) * 1000)
    return response
