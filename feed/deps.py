"""What the feed's routes depend on: the process's ``Feed``, and the caller, from a bearer token that is known,
not revoked and within its request rate."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from feed.errors import ApiError
from feed.service import Feed
from feed.tokens import Principal, digest

bearer = HTTPBearer(auto_error=False, description="A token from `twinmon token issue`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def feed_of(request: Request) -> Feed:
    feed: Feed = request.app.state.feed
    return feed


FeedDep = Annotated[Feed, Depends(feed_of)]


async def principal(feed: FeedDep, creds: Credentials) -> Principal:
    if creds is None:
        raise ApiError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
    who = feed.tokens.principal(creds.credentials)
    if who is None:
        raise ApiError(401, "unknown or revoked token")
    return who


async def within_limits(feed: FeedDep, who: Annotated[Principal, Depends(principal)],
                        creds: Credentials) -> Principal:
    """The principal, once its token's request rate allows one more request (else 429 with Retry-After)."""
    wait = feed.rate.take(digest(creds.credentials if creds is not None else ""))
    if wait:
        raise ApiError(429, f"too many requests with this token: try again in {wait} s",
                       headers={"Retry-After": str(wait)})
    return who


Who = Annotated[Principal, Depends(within_limits)]
"""The caller of a team-scoped route."""
