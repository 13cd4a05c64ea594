"""Bearer tokens of the care-team feed: issued once, stored only as SHA-256, mapped to a user and a care team.

Tokens are ``secrets.token_urlsafe(32)`` (256 random bits). For a secret with that much entropy a fast hash is
the right choice: nobody can guess or brute-force a 256-bit random value, so a slow password hash (bcrypt,
argon2) would add cost per request and no protection. The file holds the hashes, never a token, and is written
with mode 0600. Lookup hashes the presented token and compares with ``hmac.compare_digest``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.schema import ID_PATTERN
from twin_state.errors import TwinmonError


class TokenError(TwinmonError, ValueError):
    """A problem with the tokens file or a request to it, worded for a person."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    id: str
    """Public handle for revoking (the first 12 hex digits of the hash): not enough to authenticate."""
    sha256: str
    user: str
    team: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    team: str


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_id(what: str, value: str) -> None:
    if not ID_PATTERN.fullmatch(value):
        raise TokenError(f"{what} {value!r} must be 1-64 characters of letters, digits and . _ : - "
                         "(starting with a letter or digit)")


def load(path: Path) -> list[TokenEntry]:
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
        return [TokenEntry(**e) for e in doc["tokens"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TokenError(f"cannot read tokens file {path}: {type(exc).__name__}") from None


def save(path: Path, entries: list[TokenEntry]) -> None:
    """Write atomically with mode 0600 (the file never exists with wider permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"v": 1, "tokens": [asdict(e) for e in entries]}, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def issue(path: Path, user: str, team: str, now_ms: int) -> tuple[str, TokenEntry]:
    """A new token for ``user`` in ``team``: returns the token (to show once) and what was stored."""
    _check_id("user", user)
    _check_id("team", team)
    token = secrets.token_urlsafe(32)
    h = digest(token)
    entry = TokenEntry(id=h[:12], sha256=h, user=user, team=team, created_at=now_ms)
    save(path, [*load(path), entry])
    return token, entry


def revoke(path: Path, token_id: str | None = None, user: str | None = None) -> list[TokenEntry]:
    """Remove tokens by id or every token of a user; returns the removed entries."""
    if (token_id is None) == (user is None):
        raise TokenError("revoke by --id or by --user (one of them)")
    entries = load(path)
    gone = [e for e in entries if e.id == token_id or e.user == user]
    if gone:
        save(path, [e for e in entries if e not in gone])
    return gone


def lookup(entries: list[TokenEntry], token: str) -> Principal | None:
    """Who holds ``token``, or None. Compares every stored hash in constant time."""
    h = digest(token)
    found: Principal | None = None
    for e in entries:
        if hmac.compare_digest(e.sha256, h):
            found = Principal(e.user, e.team)
    return found


class TokenBook:
    """The tokens file as the API sees it: re-read when it changes, so issuing or revoking needs no restart."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._entries: list[TokenEntry] = []

    def principal(self, token: str) -> Principal | None:
        try:
            st = self._path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            self._entries = load(self._path) if stamp is not None else []
            self._stamp = stamp
        return lookup(self._entries, token)
