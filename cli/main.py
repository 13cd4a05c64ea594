"""``twinmon``: the command line. Every subcommand has ``--help``; errors are one clear line and exit code 2."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import click
import orjson

from bench.options import STAGES, BenchOptions
from cli.alerts import alert
from cli.audit import audit
from cli.common import load_settings as _settings
from cli.common import redis_call as _redis_call
from cli.common import require_audit_key
from cli.common import run_kafka as _run_kafka
from cli.feed import serve, token
from cli.fhir import fhir
from cli.profiles import profiles
from streams.settings import Settings


def _version() -> str:
    try:
        return pkg_version("twinmon")
    except PackageNotFoundError:
        return "0+unknown"


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        from evaluation import MissingExtra

        try:
            return super().invoke(ctx)
        except MissingExtra as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """twinmon: real-time digital twins of monitored patients.

    Configuration comes from TWINMON_* environment variables (see the README).
    """


@main.command()
def version() -> None:
    """Print twinmon's version."""
    click.echo(_version())


@main.group()
def topics() -> None:
    """Create or check the Kafka topics twinmon uses."""


@topics.command("create")
def topics_create() -> None:
    """Create the vitals, dead-letter and alerts topics if missing (idempotent)."""
    from streams.kafka_io import create_topics

    settings = _settings()
    created = _run_kafka(create_topics(settings), settings)
    click.echo(f"created: {', '.join(created)}" if created else "all topics already exist")


@topics.command("acls")
@click.option("--file", "acl_file", type=click.Path(exists=True, dir_okay=False), default="deploy/kafka-acls.toml",
              show_default=True, help="The principals and their ACLs.")
def topics_acls(acl_file: str) -> None:
    """Add the Kafka ACLs of twinmon's principals for these topic names and TWINMON_APP_ID (idempotent)."""
    from streams.kafka_acls import AclFileError, load
    from streams.kafka_io import apply_acls, topic_names

    settings = _settings()
    try:
        bindings = load(acl_file).bindings(topic_names(settings), settings.app_id)
    except (AclFileError, ValueError) as exc:
        raise click.ClickException(f"bad ACL file {acl_file}: {exc}") from None
    sent = _run_kafka(apply_acls(settings, bindings), settings)
    click.echo(f"{sent} ACLs in place for {len(load(acl_file).principals)} principals")


@topics.command("check")
def topics_check() -> None:
    """Report each topic and its partitions; exit 1 if any is missing or the patient-keyed ones differ."""
    from streams.kafka_io import check_topics, co_partitioned, partition_mismatch

    settings = _settings()
    statuses = _run_kafka(check_topics(settings), settings)
    for s in statuses:
        click.echo(f"{s.name:20} {'ok' if s.exists else 'MISSING':8} partitions={s.partitions}")
    mismatch = partition_mismatch({s.name: s.partitions for s in statuses}, co_partitioned(settings))
    if mismatch:
        click.echo(f"error: {mismatch}", err=True)
    if mismatch or not all(s.exists for s in statuses):
        sys.exit(1)


@main.command()
@click.option("--metrics-port", type=int, default=None, help="Override TWINMON_METRICS_PORT (0 = no endpoint).")
def worker(metrics_port: int | None) -> None:
    """Consume vitals, update twins in Redis, dead-letter bad input. Runs until SIGTERM or Ctrl-C."""
    from alerts.config import ConfigError
    from streams.app import create_app, load_policy, run_worker
    from streams.health import serve

    settings = _settings()
    if metrics_port is not None:
        settings = settings.model_copy(update={"metrics_port": metrics_port})
    try:
        policy = load_policy(settings)
    except ConfigError as exc:
        raise click.ClickException(f"bad policy file (TWINMON_POLICY_FILE): {exc}") from None
    # A wrong password, an untrusted certificate or a missing ACL is said at once, not
    # retried forever; an unreachable broker or Redis is left to the worker's own retries.
    from streams.connect_check import definitive_refusals

    if problems := asyncio.run(definitive_refusals(settings)):
        raise click.ClickException("; ".join(problems))
    built = create_app(settings, policy=policy)
    # The policy's id and name are configuration, not patient data.
    click.echo(f"policy: {built.processor.policy_id} ({built.policy_name}) from "
               f"{settings.policy_file or 'the code defaults'}", err=True)
    if settings.metrics_port:
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        serve(settings.metrics_host, settings.metrics_port, built.metrics.registry, built.status, token)
        click.echo(f"metrics: http://{settings.metrics_host}:{settings.metrics_port}/metrics "
                   f"({'bearer token required; ' if token else ''}health: /healthz, /readyz)", err=True)
    run_worker(built, settings.log_level)


@main.command()
@click.option("--patients", type=click.IntRange(1), default=200, show_default=True, help="Simulated patients.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Readings per second per patient.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True,
              help="Seconds of simulated time.")
@click.option("--deteriorating", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of patients who deteriorate.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--start-ms", type=int, default=None,
              help="Epoch ms of simulated time zero [default: early enough that no reading is stamped after the "
                   "wall clock: now - duration x (1 - 1/speed), now - duration at speed 0].")
@click.option("--speed", type=click.FloatRange(min=0), default=None,
              help="Simulated seconds per wall-clock second; 0 = as fast as possible "
                   "[default: 1 to Kafka, 0 to a file].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSON lines to this file instead of Kafka.")
@click.option("--already-deteriorating", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of patients whose decline began before the start (evenly spread: 0.1 is every tenth).")
@click.option("--until-stopped", is_flag=True,
              help="After the simulated duration, go on in real time (speed 1) until interrupted: event time "
                   "then stays level with the wall clock.")
def simulate(patients: int, rate: float, duration: float, deteriorating: float, seed: int,
             start_ms: int | None, speed: float | None, out: Path | None, already_deteriorating: float,
             until_stopped: bool) -> None:
    """Produce realistic wearable streams for simulated patients, to Kafka or to a file."""
    from simulation.simulator import simulate as generate
    from streams.schema import encode

    pace = speed if speed is not None else (0.0 if out else 1.0)
    if until_stopped and (pace == 0 or out is not None):
        raise click.UsageError("--until-stopped needs a speed above 0 and Kafka (not --out)")
    start = start_ms if start_ms is not None else default_start_ms(int(time.time() * 1000), duration, pace)
    readings = generate(patients, math.inf if until_stopped else duration, rate, seed, start, deteriorating,
                        course_s=duration, already_deteriorating=already_deteriorating)

    def paced() -> Iterator[tuple[bytes, bytes]]:
        wall0 = time.monotonic()
        last_report = wall0
        for n, (delivered_s, reading) in enumerate(readings, start=1):
            if pace > 0:
                ahead = wall_offset_s(delivered_s, duration, pace) - (time.monotonic() - wall0)
                if ahead > 0:
                    time.sleep(ahead)
            now = time.monotonic()
            if now - last_report >= 5:
                click.echo(f"simulate: {n} readings, simulated t={delivered_s:.0f}s", err=True)
                last_report = now
            yield reading.patient_id.encode(), encode(reading)

    if out is not None:
        count = 0
        with out.open("wb") as fh:
            for _, value in paced():
                fh.write(value + b"\n")
                count += 1
        click.echo(f"wrote {count} readings of {patients} patients to {out}", err=True)
        return
    settings = _settings()
    from streams.kafka_io import produce_all

    if pace > 0:
        # Paced output must reach the broker as it is generated, not when a buffer fills.
        count = _run_kafka(_produce_paced(settings, paced()), settings)
    else:
        count = _run_kafka(produce_all(settings, settings.topic_vitals, paced()), settings)
    click.echo(f"sent {count} readings of {patients} patients to {settings.topic_vitals}", err=True)


def wall_offset_s(simulated_s: float, duration_s: float, speed: float) -> float:
    """When (seconds after the start) a reading at ``simulated_s`` is due: at ``speed`` over the duration, then
    in real time, so that with ``default_start_ms`` event time reaches the wall clock at the end of the
    duration and stays level with it from then on."""
    if simulated_s <= duration_s:
        return simulated_s / speed
    return duration_s / speed + (simulated_s - duration_s)


def default_start_ms(now_ms: int, duration_s: float, speed: float) -> int:
    """Simulated time zero such that event time stays at or behind the wall clock however fast the simulation
    runs: a worker refuses readings stamped ahead of their ingest time (streams.schema.MAX_AHEAD_MS)."""
    behind = 1.0 if speed == 0 else max(0.0, 1.0 - 1.0 / speed)
    return now_ms - round(duration_s * 1000 * behind)


async def _produce_paced(settings: Settings, messages: Iterator[tuple[bytes, bytes]]) -> int:
    from streams.kafka_io import producer, start_producer

    prod = producer(settings)
    await start_producer(prod)
    n = 0
    try:
        loop = asyncio.get_running_loop()
        sentinel = object()
        it = iter(messages)
        pending: list[asyncio.Future[Any]] = []
        while True:
            # The generator sleeps to keep pace; run it off the loop so the producer keeps flushing.
            item: tuple[bytes, bytes] | object = await loop.run_in_executor(None, next, it, sentinel)
            if not isinstance(item, tuple):
                break
            key, value = item
            pending.append(await prod.send(settings.topic_vitals, value=value, key=key))
            n += 1
            if len(pending) >= 1000:
                # A message the broker never accepted (an outage longer than the request timeout) fails here,
                # instead of being counted as sent.
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await prod.stop()
    return n


@main.command()
@click.option("--input", "input_", type=click.File("rb"), required=True, help="JSON lines of v1 events ('-' = stdin).")
@click.option("--output", type=click.File("wb"), required=True, help="Where to write one twin per line ('-' = stdout).")
@click.option("--alerts", "alerts_out", type=click.File("wb"), default=None,
              help="Also write the alert events the worker would publish for this log, one per line, in the alerts "
                   "topic's form.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              envvar="TWINMON_POLICY_FILE", show_envvar=True,
              help="The policy file the worker runs (docs/policy.md) [default: the code defaults].")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw one patient's raw readings, estimate and 95% band per vital to this PNG.")
@click.option("--plot-patient", default=None, help="Whose trace to plot [default: the first patient in the file].")
def replay(input_: Any, output: Any, alerts_out: Any, policy_file: Path | None, plot: Path | None,
           plot_patient: str | None) -> None:
    """Run the twin core over a file of events, with no Kafka or Redis, and write each patient's final twin.

    Ingest times come from the recording clock (docs/event-schema.md): no wall clock, so the same file always
    gives the same twins and alerts."""
    from simulation.replay import alert_wire, read_lines, replay_alerts
    from simulation.replay import replay as run_replay
    from twin_state import codec

    lines = list(read_lines(input_)) if plot or alerts_out else read_lines(input_)
    result = run_replay(lines)
    for pid in sorted(result.twins):
        output.write(orjson.dumps(codec.to_dict(result.twins[pid])) + b"\n")
    outcomes = ", ".join(f"{o.value}={n}" for o, n in sorted(result.outcomes.items()))
    rejected = ", ".join(f"{r}={n}" for r, n in sorted(result.rejected.items())) or "none"
    click.echo(
        f"replayed {result.lines} lines into {len(result.twins)} twins; {outcomes}; rejected: {rejected}", err=True
    )
    if alerts_out is not None:
        from alerts.config import ConfigError, load_policy, policy_id

        try:
            _, evaluation = load_policy(policy_file)
        except ConfigError as exc:
            raise click.ClickException(f"bad policy file: {exc}") from None
        events = replay_alerts(lines, evaluation)
        pid = policy_id(evaluation)
        for event in events:
            alerts_out.write(orjson.dumps(alert_wire(event, pid)) + b"\n")
        click.echo(f"wrote {len(events)} alert events", err=True)
    if plot is not None:
        _plot_replay(list(lines), plot, plot_patient)


def _plot_replay(lines: list[bytes], out: Path, patient: str | None) -> None:
    from evaluation import require_charts

    require_charts()
    from evaluation.plot import plot_trace
    from simulation.replay import recording_clock
    from streams.schema import Rejected, decode
    from twin_state.trace import trace

    decoded = (decode(line, None, ingest) for line, ingest in recording_clock(lines))
    readings = [r for r in decoded if not isinstance(r, Rejected)]
    if not readings:
        raise click.ClickException("nothing to plot: no valid readings in the input")
    pid = patient or readings[0].patient_id
    mine = [r for r in readings if r.patient_id == pid]
    if not mine:
        raise click.ClickException(f"no readings for patient {pid!r} in the input")
    plot_trace(trace(mine, pid), out, pid)
    click.echo(f"plotted {len(mine)} readings of {pid} to {out}", err=True)


@main.command("import-mimic")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.File("wb"), required=True, help="JSON lines of v1 events ('-' = stdout).")
@click.option("--patient", default="mimic-s25047", show_default=True, help="Pseudonymous id to give the patient.")
def import_mimic(csv_path: Path, out: Any, patient: str) -> None:
    """Convert a MIMIC waveform-database per-minute numerics CSV into v1 events (for replay and plots)."""
    from evaluation.datasets import mimic_numerics_events
    from streams.schema import encode

    readings = mimic_numerics_events(csv_path, patient_id=patient)
    for r in readings:
        out.write(encode(r) + b"\n")
    click.echo(f"wrote {len(readings)} readings", err=True)


class _DefaultToShow(click.Group):
    """``twinmon twin PATIENT`` is ``twinmon twin show PATIENT``; subcommands still win."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_DefaultToShow)
def twin() -> None:
    """One patient's twin from Redis: `twin PATIENT`, `twin forecast PATIENT`, `twin history PATIENT`."""


def _load_twin(settings: Settings, patient_id: str) -> tuple[Any, Any]:
    from twin_state.redis_store import RedisProfileStore, RedisTwinStore

    async def fetch(client: Any) -> tuple[Any, Any]:
        found = await RedisTwinStore(client, settings.redis_prefix).get(patient_id)
        profile = await RedisProfileStore(client, settings.redis_prefix).get(patient_id)
        return found, profile

    found, profile = _redis_call(settings, fetch)
    if found is None:
        raise click.ClickException(f"no twin for patient {patient_id!r}")
    return found, profile


def _policy_of(settings: Settings, patient_id: str) -> str | None:
    """Id of the policy whose thresholds evaluate the patient, from the alert state stored beside the twin."""
    from alerts import codec as alert_codec
    from twin_state.redis_store import RedisTwinStore

    async def fetch(client: Any) -> bytes | None:
        records = await RedisTwinStore(client, settings.redis_prefix).load_records([patient_id])
        return records[patient_id][1] if patient_id in records else None

    alert_state = _redis_call(settings, fetch)
    return alert_codec.unpack(alert_state).policy_id if alert_state else None


@twin.command("show")
@click.argument("patient_id")
@click.option("--json", "as_json", is_flag=True, help="Print the stored twin as JSON.")
def twin_show(patient_id: str, as_json: bool) -> None:
    """Estimates now with 95% bands, trends, baselines, data quality and staleness."""
    from alerts.config import ConfigError, load_policy
    from twin_state import codec
    from twin_state.catalogue import ACVPU, BASELINE_MATURE_MIN, Metric
    from twin_state.news2 import describe
    from twin_state.risk import news2_now
    from twin_state.view import vital_views

    settings = _settings()
    try:
        risk_settings = load_policy(settings.policy_file)[1].risk  # the workers' limits
        stale_after_ms = dict(risk_settings.stale_after_ms)
    except ConfigError as exc:
        raise click.ClickException(f"bad policy file (TWINMON_POLICY_FILE): {exc}") from None
    found, profile = _load_twin(settings, patient_id)
    if as_json:
        click.echo(orjson.dumps(codec.to_dict(found), option=orjson.OPT_INDENT_2).decode())
        return
    now = int(time.time() * 1000)
    click.echo(f"patient {found.patient_id}  (log position {found.partition}/{found.offset})")
    if profile is not None:
        conds = ", ".join(sorted(profile.conditions)) or "none"
        targets = ", ".join(f"{m.value} {lo:g}-{hi:g}" for m, (lo, hi) in profile.targets.items()) or "none"
        click.echo(f"team {profile.care_team}  status {profile.status.value}  age {profile.age_band or '?'}  "
                   f"conditions {conds}  targets {targets}")
    click.echo(f"{'vital':14} {'estimate':>9} {'95% band':>17} {'trend/min':>10} {'last raw':>9} {'age':>7} "
               f"{'baseline':>9} {'valid 1h':>8}")
    for v in vital_views(found, now, stale_after_ms):
        band = f"{v.low95:.1f}..{v.high95:.1f}"
        vital = found.vitals[v.metric]
        base = (f"{vital.baseline:9.1f}" if vital.baseline_minutes >= BASELINE_MATURE_MIN else f"{'(young)':>9}")
        q = found.quality.get(v.metric)
        share = f"{q.valid_share:8.0%}" if q else f"{'':8}"
        flag = "  STALE" if v.stale else ""
        if vital.unconfirmed is not None:
            flag += f"  UNCONFIRMED {vital.unconfirmed:g} ({(now - vital.unconfirmed_at) / 1000:.0f}s ago): re-measure"
        click.echo(
            f"{v.metric.value:14} {v.estimate:9.1f} {band:>17} {v.trend_per_min:+10.2f} {v.last_raw:9.1f} "
            f"{v.age_s:6.0f}s {base} {share}{flag}"
        )
    for metric, obs in found.observations.items():
        shown = ACVPU[int(obs.value)] if metric is Metric.CONSCIOUSNESS else f"{obs.value:g} L/min"
        click.echo(f"{metric.value:14} {shown:>9}   entered {(now - obs.measured_at) / 60000:.0f} min ago")
    click.echo(describe(news2_now(found, profile, now, risk_settings)))
    click.echo(f"policy {_policy_of(settings, patient_id) or '(not yet evaluated by a worker that keeps it)'}")
    c = found.counts
    click.echo(f"readings applied={c.applied} reinitialised={c.reinitialised} rejected: implausible={c.implausible} "
               f"innovation={c.innovation} late={c.late} duplicate={c.duplicate}")


def _parse_horizon(value: str) -> float:
    units = {"m": 1.0, "min": 1.0, "h": 60.0}
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if value.endswith(suffix):
            try:
                return float(value[: -len(suffix)]) * factor
            except ValueError:
                break
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a duration like 30m, 90min or 2h") from None


@twin.command("forecast")
@click.argument("patient_id")
@click.option("--horizon", default="60m", show_default=True, help="How far ahead: 30m, 90min, 2h.")
@click.option("--scenario", type=click.Choice(["trend-continues", "trend-stops", "damped"]), default="trend-continues",
              show_default=True,
              help="What-if: the trend goes on, stops now, or fades (damped, as risk prediction assumes).")
def twin_forecast(patient_id: str, horizon: str, scenario: str) -> None:
    """Projected vitals at a horizon with 95% bands, under a scenario."""
    from twin_state.forecast import Scenario, forecast_twin

    minutes = _parse_horizon(horizon)
    if minutes < 0:
        raise click.BadParameter("the horizon must not be negative", param_hint="--horizon")
    settings = _settings()
    found, _ = _load_twin(settings, patient_id)
    now = int(time.time() * 1000)
    click.echo(f"patient {found.patient_id}: forecast in {minutes:g} min, {scenario}")
    click.echo(f"{'vital':14} {'mean':>8} {'95% band':>17}")
    for f in forecast_twin(found, now, minutes, Scenario(scenario)):
        click.echo(f"{f.metric.value:14} {f.mean:8.1f} {f'{f.low95:.1f}..{f.high95:.1f}':>17}")


@twin.command("history")
@click.argument("patient_id")
@click.option("--last", type=click.IntRange(1), default=30, show_default=True, help="Most recent points.")
def twin_history(patient_id: str, last: int) -> None:
    """Recent history kept for charts: one point per vital per minute (time, raw, estimate, SD)."""
    from twin_state.redis_store import RedisTwinStore

    settings = _settings()
    points = _redis_call(settings, lambda c: RedisTwinStore(c, settings.redis_prefix).history(patient_id, last))
    if not points:
        raise click.ClickException(f"no history for patient {patient_id!r}")
    for t, metric, raw, est, sd, outcome in points:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t / 1000))
        click.echo(f"{stamp}Z {metric:14} raw {raw:7.1f}  estimate {est:7.1f} +/- {1.96 * sd:5.1f}  {outcome}")


_AUDITED_USER = click.option(
    "--user", default=None, help="Who makes the change, recorded in the audit trail as asserted at the CLI, with "
                                 "the OS account [default: the OS account].")


@main.command()
@click.argument("patient_id")
@click.option("--team", required=True, help="Care team that will see this patient's alerts.")
@click.option("--age-band", type=click.Choice(["16-39", "40-64", "65-79", "80+"]), default=None)
@click.option("--condition", "conditions", multiple=True,
              help="Relevant condition, repeatable (hypercapnic_respiratory_failure selects SpO2 scale 2).")
@click.option("--target", "targets", multiple=True, metavar="VITAL=LO:HI",
              help="Clinician-set target range, repeatable, e.g. spo2=88:92.")
@_AUDITED_USER
def enrol(patient_id: str, team: str, age_band: str | None, conditions: tuple[str, ...],
          targets: tuple[str, ...], user: str | None) -> None:
    """Enrol (or update) a patient: care team and profile, sent to the workers through Kafka (audited first)."""
    _send_enrolment(patient_id, team, "enrolled", age_band, list(conditions), targets, user)


@main.command()
@click.argument("patient_id")
@click.option("--team", required=True, help="The care team the patient is discharged from.")
@_AUDITED_USER
def discharge(patient_id: str, team: str, user: str | None) -> None:
    """Discharge a patient: they leave their team's lists (audited first)."""
    _send_enrolment(patient_id, team, "discharged", None, [], (), user)


def _send_enrolment(patient_id: str, team: str, status: str, age_band: str | None, conditions: list[str],
                    targets: tuple[str, ...], user: str | None) -> None:
    from pydantic import ValidationError as PydanticValidationError

    from streams.enrolment import EnrolmentV1, profile_to_wire

    parsed: dict[str, tuple[float, float]] = {}
    for t in targets:
        try:
            name, rng = t.split("=", 1)
            lo, hi = (float(x) for x in rng.split(":", 1))
        except ValueError:
            raise click.BadParameter(f"{t!r} is not VITAL=LO:HI", param_hint="--target") from None
        parsed[name] = (lo, hi)
    try:
        model = EnrolmentV1(patient_id=patient_id, care_team=team, status=status, age_band=age_band,
                            conditions=conditions, targets=parsed, updated_at=int(time.time() * 1000))
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        raise click.UsageError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    settings = _settings()
    require_audit_key(settings)
    wire = profile_to_wire(model.to_profile())
    from feed.audit import cli_record
    from feed.kafka import audited_send

    record = cli_record(user, team, "enrol" if status == "enrolled" else "discharge", patient_id)
    (audit_id,) = _run_kafka(audited_send(settings, [record], settings.topic_enrolments,
                                          [(patient_id.encode(), wire)]), settings)
    click.echo(f"{status}: {patient_id} ({team}; audit record {audit_id})")


@main.command()
@click.option("--single-three", type=click.Choice(["low-medium", "medium"]), default="low-medium", show_default=True,
              help="Response band for a single parameter scoring 3 (RCP chart: low-medium).")
def news2(single_three: str) -> None:
    """Score NEWS2 for JSON lines on stdin; one JSON line out per line in (errors too, then carries on).

    Fields: rr, spo2, spo2_scale (1|2), on_oxygen (true|false), sbp, pulse, temp (Celsius), acvpu (A|C|V|P|U).
    """
    from twin_state.news2 import RiskBand, parse_inputs, score, to_json

    for line in click.get_text_stream("stdin"):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            click.echo(orjson.dumps({"error": "line is not valid JSON"}).decode())
            continue
        parsed = parse_inputs(doc)
        if isinstance(parsed, str):
            click.echo(orjson.dumps({"error": parsed}).decode())
            continue
        click.echo(orjson.dumps(to_json(score(parsed, RiskBand(single_three)))).decode())


@main.command()
@click.option("--metrics-url", default="http://127.0.0.1:9464/metrics", show_default=True)
@click.option("--interval", type=float, default=2.0, show_default=True)
@click.option("--count", type=int, default=0, help="Stop after this many lines (0 = until Ctrl-C).")
def progress(metrics_url: str, interval: float, count: int) -> None:
    """Print a worker's live progress: events/s, twins updated, dead letters, alerts, consumer lag."""
    from cli.progress import watch

    token = _settings().metrics_token  # the workers' TWINMON_METRICS_TOKEN, if their /metrics needs one
    watch(metrics_url, interval, count, token.get_secret_value() if token else None)


@main.group(invoke_without_command=True)
@click.option("--patients", type=click.IntRange(1), default=100, show_default=True, help="Simulated patients.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="Simulated hours per patient.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--deteriorating", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Share of patients who deteriorate.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Readings per second per patient [default: the devices' own cadences, about 0.55].")
@click.option("--recorded", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Run a recorded file of vitals events (JSON lines, e.g. from `twinmon simulate --out`) "
                   "instead of a simulated cohort; no truth, so alert burden only.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A policy file (TOML, read as TWINMON_POLICY_FILE is; keys: docs/policy.md).")
@click.option("--compare", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              metavar="A.toml B.toml", help="Virtual trial: the same cohort under two configurations, side by side.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("evaluation"),
              show_default=True, help="Directory for the report (Markdown, PNG plots, JSON).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="Processes sharing the simulated patients [default: one per CPU]; results do not depend on it.")
@click.pass_context
def evaluate(ctx: click.Context, patients: int, hours: float, seed: int, deteriorating: float, rate: float | None,
             recorded: Path | None, config: Path | None, compare: tuple[Path, Path] | None, out: Path,
             workers: int | None) -> None:
    """Evaluate the alerting offline, against the truth and the naive NEWS2 baseline; writes a report.

    \b
    twinmon evaluate                          simulated cohort: sensitivity, lead times, false alerts
    twinmon evaluate --compare A.toml B.toml  the same cohort under two configurations (virtual trial)
    twinmon evaluate --recorded FILE          a recorded cohort (alert burden only)
    twinmon evaluate physionet2012 --stays DIR --outcomes FILE --json OUT
    twinmon evaluate feasibility              how early deterioration can be told from noise

    Runs the worker's own processing (twin, risk, alert policy) with no Kafka or Redis. Definitions are in
    evaluation/cohort.py; each config is a policy file, read as the worker reads TWINMON_POLICY_FILE (docs/policy.md).
    """
    if ctx.invoked_subcommand is not None:
        # `twinmon evaluate --patients 5 feasibility` would otherwise run feasibility's default 100, silently.
        given = [p.opts[0] for p in ctx.command.params
                 if p.name and ctx.get_parameter_source(p.name) is not click.core.ParameterSource.DEFAULT]
        if given:
            raise click.UsageError(f"{', '.join(given)} belong to the cohort evaluation, not to "
                                   f"`{ctx.invoked_subcommand}`: give that command's own options after its name")
        return
    from alerts.config import AlertingConfig, ConfigError, load_config
    from evaluation import cohort as ev
    from evaluation import require_charts

    require_charts()  # the report's charts: said before the cohort runs, not after
    from simulation.simulator import BASE_RATE

    if compare is not None and config is not None:
        raise click.UsageError("--config and --compare do not go together (each compared file is a config)")
    try:
        configs = [load_config(p) for p in (compare or ((config,) if config else ()))]
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    def run(evaluation: AlertingConfig) -> dict[str, Any]:
        if recorded is not None:
            click.echo(f"evaluate: replaying {recorded}", err=True)
            return ev.evaluate_recorded(recorded, evaluation)
        click.echo(f"evaluate: {patients} patients x {hours:g} h, seed {seed}, {deteriorating:g} deteriorating",
                   err=True)
        return ev.evaluate_cohort(patients, hours * 3600.0, seed, deteriorating, evaluation,
                                  rate=rate if rate is not None else BASE_RATE, workers=workers)

    if compare is not None:
        result = ev.compare(configs[0], configs[1], run)
        paths = ev.write_comparison(result, out)
        click.echo(f"| metric | A: {result['a']['name']} | B: {result['b']['name']} | B - A |")
        click.echo("|---|---:|---:|---:|")
        for row in result["rows"]:
            click.echo(f"| {row['metric']} | {row['a']} | {row['b']} | {row['b_minus_a']} |")
        click.echo(f"| policy id | {result['a']['result']['policy_id']} | {result['b']['result']['policy_id']} | |")
    else:
        result = run(configs[0][1] if configs else AlertingConfig())
        paths = ev.write_report(result, out)
        click.echo(ev.figures_table(result))
        click.echo(f"policy {result['policy_id']}")
        prompts = result.get("twinmon_remeasure_prompts") or {}
        if prompts:
            click.echo(f"re-measure prompts: {prompts['stable']} stable, {prompts['deteriorating']} deteriorating, "
                       f"{prompts['per_patient_day']} per patient-day")
        for name, t in (result.get("targets") or {}).items():
            click.echo(f"target {name}: {t['target']}, twinmon {t['value']}: {'met' if t['met'] else 'MISSED'}")
    click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


@evaluate.command("physionet2012")
@click.option("--stays", required=True, type=click.Path(exists=True, path_type=Path),
              help="The set's stay files: a set-a directory or the set's .tar.gz.")
@click.option("--outcomes", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Outcomes-a.txt (or the set's .tar.gz).")
@click.option("--json", "json_out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the results as JSON.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N stays by record id.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes [default: one per CPU].")
@click.option("--fit-model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also fit the mortality model on these stays and write it here (how the shipped one was made).")
@click.option("--model", "model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Score this model (a --fit-model JSON) instead of the shipped one (fitted on set A).")
def evaluate_physionet2012(stays: Path, outcomes: Path, json_out: Path, limit: int | None,
                           workers: int | None, fit_model: Path | None, model_file: Path | None) -> None:
    """Replay PhysioNet/CinC 2012 ICU stays through the twin and score in-hospital death (AUROC, event 1).

    The headline is the model as given (the shipped one unless --model) scored on these stays; a warning says when
    record ids overlap the set the shipped model was fitted on (its figures on those are in-sample).
    """
    import tarfile

    from evaluation.physionet import evaluate_stays

    try:
        result = evaluate_stays(stays, outcomes, limit=limit, workers=workers, fit_model=fit_model,
                                model_file=model_file)
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        raise click.ClickException(f"cannot evaluate {stays}: {exc}") from None
    for warning in result.get("warnings") or []:  # type: ignore[attr-defined]
        click.echo(f"warning: {warning}", err=True)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    click.echo(f"{result['n']} stays, {result['deaths']} deaths; {result['score']}: AUROC {result['auroc']}, "
               f"event 1 {result['event1']} at threshold {result['threshold']} (Se {result['sensitivity']}, "
               f"+P {result['positive_predictivity']}); {result['runtime_s']} s")
    cv = result.get("cross_validated")
    if isinstance(cv, dict):
        click.echo(f"cross-validated ({cv['folds']} folds, model refitted without each fold): AUROC {cv['auroc']}, "
                   f"event 1 {cv['event1']} at threshold {cv['threshold']}")
    click.echo(f"wrote {json_out}", err=True)


def _seeds(value: str) -> list[int]:
    out: list[int] = []
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            raise click.BadParameter(f"{value!r}: seeds are numbers or ranges, e.g. 11-14 or 21,22") from None
    return out


@evaluate.command("evidence")
@click.option("--cohort", "kind", type=click.Choice(["phenotypes", "sepsis"]), default="phenotypes",
              show_default=True, help="phenotypes: simulation.phenotypes; sepsis: the original simulator.")
@click.option("--patients", type=click.IntRange(1), default=24, show_default=True, help="Patients per seed.")
@click.option("--hours", type=click.FloatRange(min=2, min_open=False), default=24.0, show_default=True)
@click.option("--tuning-seeds", default="11-14", show_default=True, help="Seeds the calibration is fitted on.")
@click.option("--seeds", default="21-24", show_default=True, help="Held-out seeds every figure is reported on.")
@click.option("--deteriorating", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A policy file (docs/policy.md); default: the code defaults.")
@click.option("--workers", type=click.IntRange(1, 2), default=1, show_default=True)
@click.option("--bootstrap", "reps", type=click.IntRange(100), default=2000, show_default=True,
              help="Bootstrap resamples over patients.")
@click.option("--runs", "runs_cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keep the cohort runs in this file and reuse them when the cohorts and policy are the same.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("evaluation-evidence"),
              show_default=True)
def evaluate_evidence(kind: str, patients: int, hours: float, tuning_seeds: str, seeds: str, deteriorating: float,
                      config: Path | None, workers: int, reps: int, runs_cache: Path | None, out: Path) -> None:
    """twinmon against charted and smoothed NEWS2, per phenotype, and the calibration of P(NEWS2 >= 5 in 60 min).

    Writes evidence.md, evidence.json, calibration.toml (a [calibration] section for a policy file, fitted on the
    tuning seeds) and PNG plots. Definitions: evaluation/evidence.py.
    """
    from alerts.config import AlertingConfig, ConfigError, load_config
    from evaluation import require_charts
    from evaluation.evidence import evaluate_evidence as run
    from evaluation.evidence import write_evidence_report

    require_charts()
    try:
        evaluation = load_config(config)[1] if config else AlertingConfig()
        tune, held = _seeds(tuning_seeds), _seeds(seeds)
        result, _cal = run(kind, patients, hours, tune, held, deteriorating, evaluation, workers, reps, runs_cache)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    command = (f"twinmon evaluate evidence --cohort {kind} --patients {patients} --hours {hours:g} "
               f"--tuning-seeds {tuning_seeds} --seeds {seeds} --deteriorating {deteriorating:g}"
               + (f" --config {config}" if config else "") + f" --bootstrap {reps}")
    paths = write_evidence_report(result, out, command)
    click.echo((out / "evidence.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


@evaluate.command("tune-policy")
@click.option("--runs", "runs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A --runs file of `twinmon evaluate evidence`; only its tuning seeds are read.")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The policy file the variants start from (the runs' risk settings must match it).")
@click.option("--axis", "axes", multiple=True, required=True,
              help="NAME=V1,V2,... of a [policy] key, e.g. confirm_medium_ms=0,600000; the grid is every combination.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write every variant as JSON.")
@click.option("--top", type=click.IntRange(1), default=15, show_default=True)
def evaluate_tune_policy(runs_file: Path, config: Path | None, axes: tuple[str, ...], out: Path | None,
                         top: int) -> None:
    """Choose [policy] thresholds on the tuning seeds by replaying the recorded runs (evaluation/policy_tuning.py)."""
    from alerts.config import AlertingConfig, ConfigError, load_config
    from evaluation.policy_tuning import load_tuning_runs, parse_axis, tune_policy

    try:
        base = load_config(config)[1] if config else AlertingConfig()
        grid = dict(parse_axis(a) for a in axes)
        result = tune_policy(load_tuning_runs(runs_file), base.policy, grid)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    if out is not None:
        out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))

    def line(r: dict[str, Any]) -> str:
        knobs = " ".join(f"{k}={r['settings'][k]}" for k in grid)
        return (f"{knobs}: detected {r['detected']}/{r['episodes']}, median lead {r['median_lead_min']} min "
                f"(first alert {r['median_alert_after_onset_min']} min after onset, mean "
                f"{r['mean_alert_after_onset_min']}), "
                f"false {r['false_per_patient_day']}/patient-day (mandated {r['rcp_mandated_per_patient_day']}, "
                f"spurious {r['spurious_per_patient_day']})")

    click.echo(f"{result['patients']} tuning patients; reference: {line(result['reference'])}")
    for r in sorted(result["variants"], key=lambda r: (-r["detected"], r["false_per_patient_day"]))[:top]:
        click.echo(line(r))
    click.echo("chosen: " + (line(result["chosen"]) if result["chosen"] else "none keeps detection and the lead"))


@evaluate.command("physionet2012-evidence")
@click.option("--stays", required=True, type=click.Path(exists=True, path_type=Path),
              help="The set's stay files: a set-a directory or the set's .tar.gz.")
@click.option("--outcomes", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Outcomes-a.txt (or the set's .tar.gz).")
@click.option("--model", "model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Score this model (a --fit-model JSON) instead of the shipped one (fitted on set A).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N stays by record id.")
@click.option("--workers", type=click.IntRange(1, 2), default=1, show_default=True)
@click.option("--bootstrap", "reps", type=click.IntRange(100), default=1000, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("evaluation-physionet"),
              show_default=True)
def evaluate_physionet2012_evidence(stays: Path, outcomes: Path, model_file: Path | None, limit: int | None,
                                    workers: int, reps: int, out: Path) -> None:
    """Alert burden of the policy on real stays (survivors vs died), the mortality model's calibration and
    subgroups, and a variant without arterial SaO2: physionet.md, physionet.json, a PNG. Definitions:
    evaluation/physionet_evidence.py."""
    import tarfile

    from evaluation import require_charts
    from evaluation.physionet_evidence import evaluate_physionet_evidence, write_physionet_report

    require_charts()
    try:
        result = evaluate_physionet_evidence(stays, outcomes, model_file=model_file, limit=limit, workers=workers,
                                             reps=reps)
    except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
        raise click.ClickException(f"cannot evaluate {stays}: {exc}") from None
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    command = (f"twinmon evaluate physionet2012-evidence --stays {stays} --outcomes {outcomes}"
               + (f" --model {model_file}" if model_file else "") + (f" --limit {limit}" if limit else "")
               + f" --bootstrap {reps}")
    paths = write_physionet_report(result, out, command)
    click.echo((out / "physionet.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


@evaluate.command("kalman-noise")
@click.option("--mimic", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The MIMIC-III numerics CSV (../shared/data/mimic3wdb-s25047-numerics-per-minute.csv).")
@click.option("--stays", type=click.Path(exists=True, path_type=Path), default=None,
              help="PhysioNet 2012 stays (set-a directory or .tar.gz) for charted vitals.")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True, help="Stays used.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("evaluation-kalman"),
              show_default=True)
def evaluate_kalman_noise(mimic: Path, stays: Path | None, limit: int, out: Path) -> None:
    """Kalman measurement and process noise per vital estimated on real data; NIS before and after.

    A proposal only: the catalogue is not changed. Method: evaluation/kalman_noise.py."""
    from evaluation.kalman_noise import evaluate_noise, noise_markdown

    result = evaluate_noise(mimic, stays, limit)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kalman_noise.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    command = f"twinmon evaluate kalman-noise --mimic {mimic}" + (f" --stays {stays}" if stays else "") + \
        f" --limit {limit}"
    md = ["# Kalman noise estimated on real data (proposal; the catalogue is unchanged)", "", f"`{command}`", "",
          *noise_markdown(result), ""]
    (out / "kalman_noise.md").write_text("\n".join(md), encoding="utf-8")
    click.echo("\n".join(md))
    click.echo(f"wrote {out / 'kalman_noise.md'}, {out / 'kalman_noise.json'}", err=True)


@evaluate.command("feasibility")
@click.option("--patients", type=click.IntRange(1), default=100, show_default=True, help="Simulated patients.")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=24.0, show_default=True,
              help="Simulated hours per patient (1.35 at least: the hour before each minute and 20 min after it).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--deteriorating", type=click.FloatRange(0, 1), default=0.3, show_default=True,
              help="Share of patients who deteriorate.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the result here.")
def evaluate_feasibility(patients: int, hours: float, seed: int, deteriorating: float, json_out: Path | None) -> None:
    """How early the simulated cohort's deterioration can be told apart from noise: JSON on stdout.

    From the simulator's own model (no twin, no policy): how far a deteriorating patient has moved 2, 5, 10 and
    20 min after the onset, against reading noise and stable patients' own variability, and the separation that
    0.2 false alerts per patient-day allows. The cohort is the one `twinmon evaluate` runs with the same options;
    the method is in evaluation/feasibility.py.
    """
    from evaluation.feasibility import CohortTooSmall, feasibility

    try:
        result = feasibility(patients, hours * 3600.0, seed, deteriorating)
    except CohortTooSmall as exc:
        raise click.UsageError(str(exc)) from None
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_bytes(text)
    click.echo(text.decode())


for command in (alert, fhir, serve, token, audit, profiles):
    main.add_command(command)


class _CommaList(click.ParamType):
    """A comma-separated list: of ``choices`` if given, else of whole numbers of at least 1."""

    def __init__(self, choices: tuple[str, ...] | None = None) -> None:
        self.choices = choices
        self.name = "stages" if choices else "numbers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        items = [x.strip() for x in str(value).split(",") if x.strip()]
        if not items:
            self.fail(f"give at least one {'stage' if self.choices else 'number'}", param, ctx)
        if self.choices is not None:
            unknown = sorted(set(items) - set(self.choices))
            if unknown:
                self.fail(f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(self.choices)}", param, ctx)
            return tuple(items)
        try:
            numbers = tuple(int(x) for x in items)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of whole numbers", param, ctx)
        if min(numbers) < 1:
            self.fail(f"{value!r}: each must be at least 1", param, ctx)
        return numbers


_BENCH = BenchOptions()


@main.command()
@click.option("--only", "stages", type=_CommaList(STAGES), default=",".join(_BENCH.stages), show_default=True,
              metavar="STAGES", help=f"Comma-separated stages to run, of {', '.join(STAGES)}.")
@click.option("--quick", is_flag=True, help="Smaller sizes: a run of a few minutes.")
@click.option("--patients", type=click.IntRange(1), default=_BENCH.patients, show_default=True,
              help="Simulated patients of the throughput and scale-out stages.")
@click.option("--events", type=click.IntRange(1), default=_BENCH.events, show_default=True,
              help="Throughput stage events.")
@click.option("--partitions", type=click.IntRange(1), default=_BENCH.partitions, show_default=True,
              help="Partitions of each stage's topics.")
@click.option("--rates", type=_CommaList(), default=",".join(str(r) for r in _BENCH.rates), show_default=True,
              metavar="N,N", help="Offered loads for the latency stage, events/s.")
@click.option("--latency-seconds", type=click.FloatRange(min=0, min_open=True), default=_BENCH.latency_seconds,
              show_default=True, help="How long each offered load of the latency stage runs.")
@click.option("--twins", type=click.IntRange(1), default=_BENCH.twins, show_default=True,
              help="Twins for memory and recovery.")
@click.option("--scale-events", type=click.IntRange(1), default=_BENCH.scale_events, show_default=True,
              help="Events of the scale-out stage.")
@click.option("--bootstrap", metavar="HOST:PORT", default=None,
              help="Use this Kafka instead of starting one from deploy/local.")
@click.option("--redis-url", metavar="URL", default=None,
              help="Use this Redis instead of starting one from deploy/local.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=_BENCH.json,
              show_default=True, help="Where to write the results.")
def bench(stages: tuple[str, ...], quick: bool, patients: int, events: int, partitions: int, rates: tuple[int, ...],
          latency_seconds: float, twins: int, scale_events: int, bootstrap: str | None, redis_url: str | None,
          json_out: Path) -> None:
    """Throughput, latency, memory, recovery and scale-out on real Kafka and Redis.

    Starts a Kafka broker and Redis from deploy/local (unless given --bootstrap and --redis-url), runs each stage
    on fresh topics, consumer groups and key prefixes, prints a table and writes JSON. The method of each stage is
    in bench/pipeline.py. Exit 1 only when the pipeline is broken (not when it is slow), 130 on Ctrl-C.
    """
    try:
        options = BenchOptions(stages=stages, patients=patients, events=events, partitions=partitions, rates=rates,
                               latency_seconds=latency_seconds, twins=twins, scale_events=scale_events,
                               bootstrap=bootstrap or None, redis_url=redis_url or None, json=json_out)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if quick:
        options = options.quick()
    if _settings().redis_cluster:  # its workers would inherit the setting; its own clients are single-node
        raise click.UsageError("twinmon bench does not support a Redis Cluster (TWINMON_REDIS_CLUSTER is on): it "
                               "measures one Redis; unset TWINMON_REDIS_CLUSTER")
    from bench import pipeline

    if options.bootstrap is None and not pipeline.local_services_available():
        raise click.UsageError(f"no {pipeline.LOCAL}/kafka.sh to start services from (an installed package): "
                               "give --bootstrap HOST:PORT and --redis-url redis://...")
    sys.exit(pipeline.run(options))


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig(level=logging.INFO)
    main()
