"""``twinmon profiles reconcile``: each care team's set of patients made to match the stored profiles."""

from __future__ import annotations

from typing import Any

import click

from cli.common import load_settings, redis_call


@click.group()
def profiles() -> None:
    """Enrolment profiles in Redis."""


@profiles.command("reconcile")
@click.option("--dry-run", is_flag=True, help="Count what would change, change nothing.")
def profiles_reconcile(dry_run: bool) -> None:
    """Remove from every team set the patients whose profile is not enrolled in that team (discharged or moved
    on) and add enrolled patients missing from theirs. Prints counts only; safe to run while workers run."""
    from twin_state.redis_store import RedisProfileStore

    settings = load_settings()

    async def run(client: Any) -> tuple[int, int]:
        return await RedisProfileStore(client, settings.redis_prefix).reconcile(dry_run)

    added, removed = redis_call(settings, run)
    verb = "would be" if dry_run else "were"
    click.echo(f"team sets: {added} membership(s) {verb} added, {removed} {verb} removed")
