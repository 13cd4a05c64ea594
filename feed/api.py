"""The care-team feed: HTTP API, Server-Sent Events and the web page, built by ``create_api(settings)``.

Edges only: every figure comes from the pure core (``feed.presenters``, ``twin_state``, ``alerts``); changes go to
the workers through Kafka (``enrolments``, ``alert-actions``), each preceded by an audit record on ``audit``.
Team scoping: the team comes from the bearer token; another team's patient or alert answers 404, exactly as a
patient that does not exist. The routes are in ``feed.routes`` and ``feed.fhir_routes``; what they call, in
``feed.service``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from feed import fhir_routes, routes
from feed.errors import add_error_handlers
from feed.middleware import SECURITY_HEADERS, BodyLimit, CatchAll, SecurityHeaders, access_log
from feed.service import Feed
from streams.settings import Settings

__all__ = ["SECURITY_HEADERS", "create_api"]


def create_api(settings: Settings) -> FastAPI:
    feed = Feed(settings)

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
    add_error_handlers(api)
    api.middleware("http")(access_log)
    api.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    api.add_middleware(CatchAll)  # inside SecurityHeaders, so a 500 carries them too
    api.add_middleware(SecurityHeaders)  # added last: outermost, so even a refused body's 413 carries them
    for router in routes.ROUTERS:
        api.include_router(router)
    api.mount("/static", StaticFiles(directory=routes.STATIC), name="static")
    api.include_router(fhir_routes.router)
    return api
