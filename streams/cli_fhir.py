"""``twinmon fhir``: FHIR R4 as a second input format for the ``vitals`` topic (mapping in feed/fhir.py)."""

from __future__ import annotations

import time
from typing import Any

import click

from streams.cli_common import load_settings, run_kafka


@click.group()
def fhir() -> None:
    """FHIR R4 vital-sign Observations in, as v1 vitals messages."""


@fhir.command("ingest")
@click.argument("file", type=click.File("rb"))
@click.option("--dry-run", is_flag=True, help="Convert and check, print the messages, send nothing.")
def fhir_ingest(file: Any, dry_run: bool) -> None:
    """Send the Observation or Bundle of Observations in FILE (JSON; - for stdin) to the vitals topic.

    All or nothing: one entry twinmon cannot take refuses the whole file, naming the entry and the reason.
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
    from streams.kafka_io import produce_all

    settings = load_settings()
    sent = run_kafka(produce_all(settings, settings.topic_vitals, keyed), settings)
    click.echo(f"sent {sent} readings to {settings.topic_vitals}")
