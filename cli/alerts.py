"""``twinmon alert``: list a patient's open alerts, acknowledge or resolve one (through Kafka, to the worker)."""

from __future__ import annotations

import time

import click

from cli.common import load_settings, redis_call, require_audit_key, run_kafka


@click.group()
def alert() -> None:
    """A patient's alerts: list, acknowledge, resolve."""


@alert.command("list")
@click.argument("patient_id")
def alert_list(patient_id: str) -> None:
    """Open alerts of one patient, as the worker last stored them."""
    from alerts import codec
    from twin_state.redis_store import RedisTwinStore

    settings = load_settings()
    blob = redis_call(settings, lambda c: RedisTwinStore(c, settings.redis_prefix).get_alert_state(patient_id))
    state = codec.unpack(blob) if blob else None
    if state is None or not state.open:
        click.echo(f"no open alerts for {patient_id}")
        return
    now = int(time.time() * 1000)
    for a in sorted(state.open.values(), key=lambda a: (-a.level, a.raised_at)):
        acked = f"acknowledged by {a.acknowledged_by}" if a.acknowledged_by else "NOT acknowledged"
        click.echo(f"{a.alert_id}  {a.level.name:6} {a.condition.value:14} raised {(now - a.raised_at) / 60000:5.0f} "
                   f"min ago  {acked}")


def _send(patient_id: str, alert_id: str, user: str, action: str, reason: str = "") -> None:
    from pydantic import ValidationError

    from streams.actions import AlertActionV1

    try:
        msg = AlertActionV1(action=action, patient_id=patient_id, alert_id=alert_id, user=user, reason=reason,
                            at=int(time.time() * 1000))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.UsageError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    settings = load_settings()
    require_audit_key(settings)
    from feed.audit import cli_record
    from feed.kafka import audited_send
    from twin_state.redis_store import RedisProfileStore

    # The audit record goes to the trail of the patient's team on file (none for a patient never enrolled).
    profile = redis_call(settings, lambda c: RedisProfileStore(c, settings.redis_prefix).get(patient_id))
    record = cli_record(user, profile.care_team if profile else "", action, patient_id, alert_id, reason)
    (audit_id,) = run_kafka(audited_send(settings, [record], settings.topic_alert_actions,
                                         [(patient_id.encode(), msg.model_dump_json().encode())]), settings)
    click.echo(f"{action} sent for alert {alert_id} (audit record {audit_id})")


@alert.command("ack")
@click.argument("patient_id")
@click.argument("alert_id")
@click.option("--user", required=True, help="Who acknowledges (recorded in the audit trail).")
def alert_ack(patient_id: str, alert_id: str, user: str) -> None:
    """Acknowledge an alert: someone is on it; it stops escalating (audited as --user, asserted at the CLI)."""
    _send(patient_id, alert_id, user, "acknowledge")


@alert.command("resolve")
@click.argument("patient_id")
@click.argument("alert_id")
@click.option("--user", required=True, help="Who resolves (recorded in the audit trail).")
@click.option("--reason", required=True, help="Why, in words (recorded in the audit trail).")
def alert_resolve(patient_id: str, alert_id: str, user: str, reason: str) -> None:
    """Resolve an alert with a reason."""
    if not reason.strip():
        raise click.BadParameter("a resolution needs a reason", param_hint="--reason")
    _send(patient_id, alert_id, user, "resolve", reason)
