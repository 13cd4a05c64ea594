"""``twinmon audit verify``: the audit trail read from its start and checked (``feed.kafka``)."""

from __future__ import annotations

import sys

import click

from cli.common import load_settings, require_audit_key, run_kafka


@click.group()
def audit() -> None:
    """The clinical audit trail (the `audit` topic)."""


@audit.command("verify")
def audit_verify() -> None:
    """Read the whole audit topic and check every record's MAC and its writer's chain; counts only.

    Exit 0 when intact, 1 on any forged, altered, missing, replayed or malformed record, 3 when the topic could not
    be read.
    """
    from feed.kafka import verify_trail

    settings = load_settings()
    require_audit_key(settings)
    try:
        report = run_kafka(verify_trail(settings), settings)
    except click.ClickException as exc:
        exc.exit_code = 3  # not checked, which is not the same as "not intact"
        raise
    for line in report.lines():
        click.echo(line)
    if report.problems:
        click.echo(f"audit trail NOT intact: {report.problems} problem(s)", err=True)
        sys.exit(1)
    click.echo(f"audit trail intact: {report.records} records from {report.writers} writers", err=True)
