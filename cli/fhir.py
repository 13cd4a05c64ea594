"""``twinmon fhir``: FHIR R4 as a second input format for the ``vitals`` topic (mapping in feed/fhir.py)."""

from __future__ import annotations

import time
from typing import Any

import click

from cli.common import load_settings, redis_call, require_audit_key, run_kafka


@click.group()
def fhir() -> None:
    """FHIR R4 vital-sign Observations in, as v1 vitals messages."""


@fhir.command("ingest")
@click.argument("file", type=click.File("rb"))
@click.option("--dry-run", is_flag=True, help="Convert and check, print the messages, send nothing.")
@click.option("--user", default=None, help="Who enters the readings, recorded in the audit trail as asserted at "
                                           "the CLI, with the OS account [default: the OS account].")
def fhir_ingest(file: Any, dry_run: bool, user: str | None) -> None:
    """Send the Observation or Bundle of Observations in FILE (JSON; - for stdin) to the vitals topic.

    All or nothing: one entry twinmon cannot take refuses the whole file, naming the entry and the reason. Each
    patient's readings are audited first (action observe), in the trail of the team on the patient's profile.
    """
    import orjson

    from feed.fhir import FhirError, observations_to_wire

    try:
        resource = orjson.loads(file.read())
    except orjson.JSONDecodeError as exc:
        raise click.UsageError(f"{file.name} is not JSON: {exc}") from None
    try:
        messages = observations_to_wire(resource, int(time.time() * 1000))
    except FhirError as exc:
        raise click.UsageError(f"{file.name}: {exc}") from None
    keyed = [(orjson.loads(m)["patient_id"].encode(), m) for m in messages]
    if dry_run:
        for _, m in keyed:
            click.echo(m.decode())
        return
    from collections import Counter

    from feed.audit import cli_record
    from feed.kafka import audited_send
    from twin_state.redis_store import RedisProfileStore

    settings = load_settings()
    require_audit_key(settings)
    # Audited first, one record per patient with the count, as the feed's POST /fhir/Observation.
    counts = Counter(k.decode() for k, _ in keyed)
    profiles = redis_call(settings, lambda c: RedisProfileStore(c, settings.redis_prefix).get_many(sorted(counts)))
    records = [cli_record(user, profiles[pid].care_team if pid in profiles else "", "observe", pid,
                          reason=f"{n} readings (FHIR file)") for pid, n in sorted(counts.items())]
    run_kafka(audited_send(settings, records, settings.topic_vitals, keyed), settings)
    click.echo(f"sent {len(keyed)} readings to {settings.topic_vitals} ({len(records)} audit records)")
