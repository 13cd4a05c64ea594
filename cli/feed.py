"""``twinmon serve`` and ``twinmon token``: the care-team feed's process and its bearer tokens (package feed)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from cli.common import load_settings, require_audit_key, run_kafka


@click.command()
@click.option("--host", default=None, help="Override TWINMON_API_HOST.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Override TWINMON_API_PORT.")
def serve(host: str | None, port: int | None) -> None:
    """Serve the care-team feed: HTTP API (OpenAPI at /openapi.json), live stream and the web page at /."""
    from redis.exceptions import RedisClusterException, RedisError

    from feed.server import preflight
    from feed.server import serve as run

    settings = load_settings()
    updates = {k: v for k, v in (("api_host", host), ("api_port", port)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    from alerts.config import ConfigError, load_policy

    try:
        load_policy(settings.policy_file)  # the feed computes the risk it shows with the workers' policy
    except ConfigError as exc:
        raise click.ClickException(f"bad policy file (TWINMON_POLICY_FILE): {exc}") from None
    require_audit_key(settings)
    tokens = Path(settings.tokens_file)
    if not tokens.exists():
        click.echo(f"warning: no tokens file at {tokens}; issue one with `twinmon token issue`", err=True)
    try:
        run_kafka(preflight(settings), settings)
    except (RedisError, RedisClusterException) as exc:  # a cluster client's own errors are not RedisErrors
        from streams.connect_check import explain_redis

        refusal = explain_redis(exc)
        raise click.ClickException(refusal.message if refusal is not None and refusal.definitive
                                   else "cannot reach Redis (check TWINMON_REDIS_URL)") from None
    click.echo(f"feed: http://{settings.api_host}:{settings.api_port}/", err=True)
    run(settings)


@click.group()
def token() -> None:
    """Bearer tokens for the care-team feed (stored as SHA-256 hashes only)."""


def _tokens_path(tokens_file: Path | None) -> Path:
    return tokens_file if tokens_file is not None else Path(load_settings().tokens_file)


@token.command("issue")
@click.option("--user", required=True, help="Who holds the token (recorded in the audit trail).")
@click.option("--team", required=True, help="The care team whose patients the token sees.")
@click.option("--tokens-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Override TWINMON_TOKENS_FILE.")
def token_issue(user: str, team: str, tokens_file: Path | None) -> None:
    """Issue a token and print it once (only its hash is kept)."""
    from feed.tokens import TokenError, issue

    path = _tokens_path(tokens_file)
    try:
        secret, entry = issue(path, user, team, int(time.time() * 1000))
    except TokenError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"token id {entry.id} for {user} ({team}) stored in {path}; the token, shown only now:", err=True)
    click.echo(secret)


@token.command("revoke")
@click.option("--id", "token_id", default=None, help="The token id printed at issue.")
@click.option("--user", default=None, help="Revoke every token of this user.")
@click.option("--tokens-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Override TWINMON_TOKENS_FILE.")
def token_revoke(token_id: str | None, user: str | None, tokens_file: Path | None) -> None:
    """Revoke tokens by id or by user (the API notices at the next request)."""
    from feed.tokens import TokenError, revoke

    try:
        gone = revoke(_tokens_path(tokens_file), token_id, user)
    except TokenError as exc:
        raise click.UsageError(str(exc)) from None
    if not gone:
        raise click.ClickException("no matching token")
    for e in gone:
        click.echo(f"revoked {e.id} ({e.user}, {e.team})")
