"""The Grafana dashboards as code, built with Grafana's own SDK (grafana-foundation-sdk, for Grafana 11.6): its
typed builders and models are the dashboard schema, so a field Grafana does not know is a type error, not a panel
that silently shows nothing. ``deploy/grafana/dashboards/*.json`` is this module's output, committed for Grafana's
file provisioning; a unit test fails when the two differ.

    .venv/bin/python deploy/grafana/generate.py          # rewrite the JSON files
    .venv/bin/python deploy/grafana/generate.py --check  # exit 1 if they are not what this module makes

``$SEL`` in a query stands for the environment and worker pickers every query follows.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common, stat, timeseries
from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

OUT = Path(__file__).resolve().parent / "dashboards"
SEL = 'env=~"$env", instance=~"$instance"'
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
HEIGHT = 8


@dataclass(frozen=True)
class Q:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Row:
    title: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    width: int
    queries: list[Q]
    description: str = ""
    min_max: tuple[float, float] | None = None
    decimals: int | None = None
    kind: str = field(default="timeseries", init=False)


@dataclass(frozen=True)
class Series(Panel):
    pass


@dataclass(frozen=True)
class Stat(Panel):
    kind: str = field(default="stat", init=False)


@dataclass(frozen=True)
class Bars(Panel):
    kind: str = field(default="bargauge", init=False)


Item = Row | Panel
CLINICAL_DESCRIPTION = ("What the care teams get from twinmon: open alerts, time to acknowledge, stale patients, data "
                        "completeness per care team.")


OPERATIONS: list[Item] = [
    Row('Throughput'),
    Series('Events consumed per second, by topic', 'ops', 8, [
        Q('sum by (topic) (rate(twinmon_events_consumed_total{$SEL}[$__rate_interval]))', '{{topic}}'),
    ]),
    Series('Events produced per second, by topic', 'ops', 8, [
        Q('sum by (topic) (rate(twinmon_events_produced_total{$SEL}[$__rate_interval]))', '{{topic}}'),
    ],
     description='Alert events and dead letters, counted when the broker acknowledged them.'),
    Series('Valid readings per second, by outcome', 'ops', 8, [
        Q('sum by (outcome) (rate(twinmon_readings_total{$SEL}[$__rate_interval]))', '{{outcome}}'),
    ],
     description='What the twins did with each valid reading: applied, artefact (implausible), late, ...'),
    Series('Twins persisted per second', 'ops', 8, [
        Q('sum(rate(twinmon_twins_persisted_total{$SEL}[$__rate_interval]))', 'twins'),
    ]),
    Series('Batch size', 'short', 8, [
        Q('histogram_quantile(0.5, sum by (le) (rate(twinmon_batch_size_bucket{$SEL}[$__rate_interval])))', 'p50'),
        Q('histogram_quantile(0.95, sum by (le) (rate(twinmon_batch_size_bucket{$SEL}[$__rate_interval])))', 'p95'),
    ]),
    Series('Batches per second, by worker', 'ops', 8, [
        Q('sum by (instance) (rate(twinmon_batch_size_count{$SEL}[$__rate_interval]))', '{{instance}}'),
    ]),
    Row('Latency'),
    Series('Reading measured to twin persisted', 's', 8, [
        Q('histogram_quantile(0.5, sum by (le) '
          '(rate(twinmon_reading_to_twin_seconds_bucket{$SEL}[$__rate_interval])))',
          'p50'),
        Q('histogram_quantile(0.95, sum by (le) '
          '(rate(twinmon_reading_to_twin_seconds_bucket{$SEL}[$__rate_interval])))',
          'p95'),
        Q('histogram_quantile(0.99, sum by (le) '
          '(rate(twinmon_reading_to_twin_seconds_bucket{$SEL}[$__rate_interval])))',
          'p99'),
    ],
     description="From a reading's measured-at (device clock) to its twin written to Redis."),
    Series('Triggering reading to alert published', 's', 8, [
        Q('histogram_quantile(0.5, sum by (le) '
          '(rate(twinmon_reading_to_alert_seconds_bucket{$SEL}[$__rate_interval])))',
          'p50'),
        Q('histogram_quantile(0.95, sum by (le) '
          '(rate(twinmon_reading_to_alert_seconds_bucket{$SEL}[$__rate_interval])))',
          'p95'),
        Q('histogram_quantile(0.99, sum by (le) '
          '(rate(twinmon_reading_to_alert_seconds_bucket{$SEL}[$__rate_interval])))',
          'p99'),
    ],
     description=('Raised and escalated alert events, from the event time of the reading that triggered them to the '
                 "broker's acknowledgement. Alert rule: TwinmonAlertPublicationSlow (p95 > 30 s).")),
    Series('Batch duration', 's', 8, [
        Q('histogram_quantile(0.5, sum by (le) (rate(twinmon_batch_duration_seconds_bucket{$SEL}[$__rate_interval])))',
          'p50'),
        Q('histogram_quantile(0.95, sum by (le) '
          '(rate(twinmon_batch_duration_seconds_bucket{$SEL}[$__rate_interval])))',
          'p95'),
        Q('histogram_quantile(0.99, sum by (le) '
          '(rate(twinmon_batch_duration_seconds_bucket{$SEL}[$__rate_interval])))',
          'p99'),
    ],
     description='Decode to persisted, per vitals batch.'),
    Row('Consumer lag'),
    Series('Consumer lag in seconds, by partition', 's', 16, [
        Q('max by (topic, partition) (twinmon_consumer_lag_seconds{$SEL})', '{{topic}}/{{partition}}'),
    ],
     description=("How long each partition's oldest unprocessed message has waited, at most: the wall clock minus the "
                 'broker timestamp of the last message processed while any is behind; 0 when caught up. What a '
                 "reading's delay to its twin is, whatever the message rate.")),
    Stat('Worst consumer lag', 's', 8, [Q('max(twinmon_consumer_lag_seconds{$SEL})', 'lag')]),
    Series('Consumer lag by partition', 'short', 16, [
        Q('sum by (topic, partition) (twinmon_consumer_lag{$SEL})', '{{topic}}/{{partition}}'),
    ],
     description='Messages behind the end of each partition this worker owns.'),
    Stat('Total consumer lag', 'short', 8, [Q('sum(twinmon_consumer_lag{$SEL})', 'lag')]),
    Row('Event loop'),
    Series('Event-loop stall, by worker', 's', 16, [
        Q('histogram_quantile(0.99, sum by (le, instance) '
          '(rate(twinmon_event_loop_stall_seconds_bucket{$SEL}[$__rate_interval])))',
          'p99 {{instance}}'),
        Q('max by (instance) (twinmon_event_loop_stall_max_seconds{$SEL})', 'longest since start {{instance}}'),
    ],
     description=("How much later than asked a 50 ms sleep on the worker's event loop woke: time in which it could "
                 'run nothing else (a batch, a Redis reply, a health probe). Long stalls are garbage collections or '
                 'blocking work on the loop.')),
    Stat('Longest event-loop stall since start', 's', 8, [
        Q('max(twinmon_event_loop_stall_max_seconds{$SEL})', 'longest'),
    ]),
    Row('Errors and dead letters'),
    Series('Dead-lettered per second, by reason', 'ops', 8, [
        Q('sum by (reason) (rate(twinmon_events_dead_lettered_total{$SEL}[$__rate_interval]))', '{{reason}}'),
    ]),
    Series('Dead-lettered share of consumed', 'percentunit', 8, [
        Q('sum(rate(twinmon_events_dead_lettered_total{$SEL}[$__rate_interval])) / '
          'sum(rate(twinmon_events_consumed_total{$SEL}[$__rate_interval]))',
          'dead-lettered'),
    ],
     description='Alert rule: TwinmonDeadLetterRateHigh (> 1% for 10 minutes).'),
    Series('Acknowledgements of alerts no longer open, per second', 'ops', 8, [
        Q('sum(rate(twinmon_alert_actions_stale_total{$SEL}[$__rate_interval]))', 'stale actions'),
    ]),
    Row('Redis'),
    Series('Redis write latency', 's', 8, [
        Q('histogram_quantile(0.5, sum by (le) (rate(twinmon_redis_command_duration_seconds_bucket{$SEL, '
          'op=~"save|index"}[$__rate_interval])))',
          'p50'),
        Q('histogram_quantile(0.99, sum by (le) (rate(twinmon_redis_command_duration_seconds_bucket{$SEL, '
          'op=~"save|index"}[$__rate_interval])))',
          'p99'),
    ],
     description=("Round trips that write: a batch's twins, history and alert states (save), the partition index "
                 '(index). One pipeline each.')),
    Series('Redis round trip p99, by operation', 's', 8, [
        Q('histogram_quantile(0.99, sum by (le, op) '
          '(rate(twinmon_redis_command_duration_seconds_bucket{$SEL}[$__rate_interval])))',
          'p99 {{op}}'),
    ]),
    Series('Redis round trips per second, by operation', 'ops', 8, [
        Q('sum by (op) (rate(twinmon_redis_command_duration_seconds_count{$SEL}[$__rate_interval]))', '{{op}}'),
    ]),
    Series('Redis errors per second, by operation', 'ops', 8, [
        Q('sum by (op) (rate(twinmon_redis_errors_total{$SEL}[$__rate_interval]))', '{{op}}'),
    ],
     description=('Failed Redis calls. While Redis is unreachable the worker waits and retries; other Redis errors '
                 'make it exit and restart. Alert rules: TwinmonRedisErrors, TwinmonRedisUnavailable.')),
    Series('Redis up (0 = waiting for Redis), by worker', 'none', 12, [
        Q('twinmon_redis_up{$SEL}', '{{instance}}'),
    ],
     min_max=(0, 1),
     description=('0 while the worker holds its batch and retries because Redis is unreachable, loading, read-only or '
                 'slow (docs/runbook.md, During a Redis outage).')),
    Series('Redis retries per second, by agent', 'ops', 8, [
        Q('sum by (agent) (rate(twinmon_redis_retries_total{$SEL}[$__rate_interval]))', '{{agent}}'),
    ],
     description='Attempts repeated while waiting out a Redis outage.'),
    Row('Alerts'),
    Series('Alerts published vs acknowledged, per minute', 'short', 24, [
        Q('60 * sum(rate(twinmon_alerts_total{$SEL, event=~"raised|escalated"}[$__rate_interval]))',
          'published (raised, escalated)'),
        Q('60 * sum(rate(twinmon_alerts_total{$SEL, event="acknowledged"}[$__rate_interval]))', 'acknowledged'),
    ],
     description=('Alert events the worker published to the care teams, and acknowledgements it applied. Published '
                 'with none acknowledged for long: nobody is reading the feed, or actions do not reach the workers.')),
    Row('Worker health'),
    Stat('Workers up', 'short', 4, [
        Q('sum(up{job="twinmon-worker", $SEL})', 'up'),
    ],
     description=('Scrape targets of job twinmon-worker that answered. Alert rules: TwinmonWorkerDown, '
                 'TwinmonNoWorkerRunning.')),
    Series('Worker up, by instance', 'short', 10, [
        Q('up{job="twinmon-worker", $SEL}', '{{instance}}'),
    ],
     min_max=(0, 1)),
    Series('Seconds since the last batch, by worker', 's', 10, [
        Q('time() - twinmon_last_batch_processed_timestamp_seconds{$SEL}', '{{instance}}'),
    ],
     description='Alert rule: TwinmonWorkerStuck (lag but no batch for 2 minutes).'),
    Series('Twins resident, by worker', 'short', 8, [Q('twinmon_twins_resident{$SEL}', '{{instance}}')]),
    Series('CPU, by worker', 'percentunit', 8, [
        Q('rate(process_cpu_seconds_total{job="twinmon-worker", $SEL}[$__rate_interval])', '{{instance}}'),
    ]),
    Series('Resident memory, by worker', 'bytes', 8, [
        Q('process_resident_memory_bytes{job="twinmon-worker", $SEL}', '{{instance}}'),
    ]),
    Series('Restarts in the last hour, by worker', 'short', 8, [
        Q('changes(process_start_time_seconds{job="twinmon-worker", $SEL}[1h])', '{{instance}}'),
    ],
     description='Alert rule: TwinmonWorkerRestarting (3 in 15 minutes).'),
    Series('Timers running (twinmon_worker_up), by worker', 'short', 8, [
        Q('twinmon_worker_up{$SEL}', '{{instance}}'),
    ],
     min_max=(0, 1)),
    Stat('Workers by version', 'short', 8, [Q('count by (version) (twinmon_build_info{$SEL})', '{{version}}')]),
    Series('Census duration, by worker', 's', 8, [
        Q('twinmon_census_duration_seconds{$SEL}', '{{instance}}'),
    ],
     description='Time the periodic census of resident patients (open alerts, stale patients) took.'),
]

CLINICAL: list[Item] = [
    Row('Alerts'),
    Stat('Open alerts, by level', 'short', 8, [
        Q('sum by (level) (twinmon_alerts_open{$SEL})', '{{level}}'),
    ],
     description='Alerts raised and not resolved, of every patient the workers hold.'),
    Series('Open alerts, by condition and level', 'short', 16, [
        Q('sum by (condition, level) (twinmon_alerts_open{$SEL})', '{{condition}} {{level}}'),
    ]),
    Series('Alert events in the last hour, by event and level', 'short', 12, [
        Q('sum by (event, level) (increase(twinmon_alerts_total{$SEL}[1h]))', '{{event}} {{level}}'),
    ]),
    Series('Escalations in the last hour, by level', 'short', 12, [
        Q('sum by (level) (increase(twinmon_alerts_total{event="escalated", $SEL}[1h]))', '{{level}}'),
    ],
     description='Alerts escalated because the patient worsened or nobody acknowledged them in time.'),
    Row('Time to acknowledge'),
    Series('Time from alert to acknowledgement (last hour), by level', 's', 12, [
        Q('histogram_quantile(0.5, sum by (le, level) '
          '(rate(twinmon_alert_time_to_acknowledge_seconds_bucket{$SEL}[1h])))',
          'p50 {{level}}'),
        Q('histogram_quantile(0.9, sum by (le, level) '
          '(rate(twinmon_alert_time_to_acknowledge_seconds_bucket{$SEL}[1h])))',
          'p90 {{level}}'),
    ],
     description='From the alert being raised to a person acknowledging it.'),
    Stat('Acknowledged within 5 minutes (last 24 hours)', 'percentunit', 6, [
        Q('sum(increase(twinmon_alert_time_to_acknowledge_seconds_bucket{le=~"300(\\\\.0)?", $SEL}[24h])) / '
          'sum(increase(twinmon_alert_time_to_acknowledge_seconds_count{$SEL}[24h]))',
          'within 5 min'),
    ],
     decimals=1),
    Stat('Acknowledgements in the last 24 hours, by level', 'short', 6, [
        Q('sum by (level) (increase(twinmon_alert_time_to_acknowledge_seconds_count{$SEL}[24h]))', '{{level}}'),
    ],
     decimals=0),
    Row('Monitoring coverage'),
    Stat('Stale patients', 'short', 6, [
        Q('sum(twinmon_patients_stale{$SEL, care_team=~"$care_team"})', 'stale'),
    ],
     description='Patients with no accepted reading for the no-data limit (15 minutes).'),
    Series('Stale patients, by care team', 'short', 9, [
        Q('sum by (care_team) (twinmon_patients_stale{$SEL, care_team=~"$care_team"})', '{{care_team}}'),
    ]),
    Series('Monitored patients, by care team', 'short', 9, [
        Q('sum by (care_team) (twinmon_patients_monitored{$SEL, care_team=~"$care_team"})', '{{care_team}}'),
    ]),
    Row('Data completeness'),
    Bars('Patients with current data, by care team', 'percentunit', 8, [
        Q('1 - sum by (care_team) (twinmon_patients_stale{$SEL, care_team=~"$care_team"}) / sum by (care_team) '
          '(twinmon_patients_monitored{$SEL, care_team=~"$care_team"})',
          '{{care_team}}'),
    ],
     min_max=(0, 1),
     description="Share of the care team's monitored patients who are not stale."),
    Bars('Valid-reading share (last hour), by care team', 'percentunit', 8, [
        Q('sum by (care_team) (twinmon_readings_recent_accepted{$SEL, care_team=~"$care_team"}) / sum by (care_team) '
          '(twinmon_readings_recent{$SEL, care_team=~"$care_team"})',
          '{{care_team}}'),
    ],
     min_max=(0, 1),
     description=("Readings the twins accepted among all valid readings of the team's patients, exponentially "
                 'weighted over about an hour (artefacts, late and duplicate readings count against it).')),
    Series('Accepted share of all readings received', 'percentunit', 8, [
        Q('sum(rate(twinmon_readings_total{outcome=~"applied|reinitialised", $SEL}[$__rate_interval])) / '
          '(sum(rate(twinmon_readings_total{outcome!="redelivered", $SEL}[$__rate_interval])) + '
          'sum(rate(twinmon_events_dead_lettered_total{reason!~"bad_enrolment|bad_action", '
          '$SEL}[$__rate_interval])))',
          'accepted'),
    ],
     min_max=(0, 1),
     description='All patients: accepted readings among valid and invalid (dead-lettered) ones.'),
]


def _query(q: Q, ref: str) -> prom.Dataquery:
    expr = q.expr.replace("$SEL", SEL)
    return prom.Dataquery().ref_id(ref).datasource(DATASOURCE).expr(expr).legend_format(q.legend).range()


def _panel(p: Panel, panel_id: int) -> timeseries.Panel | stat.Panel | bargauge.Panel:
    reduce = common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
    built: timeseries.Panel | stat.Panel | bargauge.Panel
    if p.kind == "timeseries":
        built = (timeseries.Panel().draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
                 .show_points(cm.VisibilityMode.NEVER)
                 .legend(common.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                         .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
                 .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)))
    elif p.kind == "stat":
        built = (stat.Panel().reduce_options(reduce).color_mode(cm.BigValueColorMode.VALUE)
                 .graph_mode(cm.BigValueGraphMode.AREA).text_mode(cm.BigValueTextMode.AUTO)
                 .orientation(cm.VizOrientation.AUTO))
    else:
        built = (bargauge.Panel().reduce_options(reduce).display_mode(cm.BarGaugeDisplayMode.GRADIENT)
                 .orientation(cm.VizOrientation.HORIZONTAL).show_unfilled(True))
    built = built.id(panel_id).title(p.title).datasource(DATASOURCE).unit(p.unit)
    if p.description:
        built = built.description(p.description)
    if p.min_max is not None:
        built = built.min(p.min_max[0]).max(p.min_max[1])
    if p.decimals is not None:
        built = built.decimals(p.decimals)
    for i, q in enumerate(p.queries):
        built = built.with_target(_query(q, chr(ord("A") + i)))
    return built


def _variable(name: str, label: str, query: str) -> board.QueryVariable:
    return (board.QueryVariable(name).label(label).datasource(DATASOURCE).query(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).include_all(True).multi(True).all_value(".*")
            .sort(dm.VariableSort.ALPHABETICAL_ASC))


def dashboard(uid: str, title: str, description: str, tags: list[str], items: list[Item],
              care_team: bool = False) -> dm.Dashboard:
    d = (board.Dashboard(title).uid(uid).description(description).tags(tags).timezone("browser").editable()
         .tooltip(dm.DashboardCursorSync.CROSSHAIR).refresh("30s").time("now-6h", "now").version(1)
         .with_variable(board.DatasourceVariable("datasource").label("Data source").type("prometheus"))
         .with_variable(_variable("env", "Environment", "label_values(twinmon_build_info, env)"))
         .with_variable(_variable("instance", "Worker", 'label_values(twinmon_build_info{env=~"$env"}, instance)')))
    if care_team:
        d = d.with_variable(_variable("care_team", "Care team",
                                      'label_values(twinmon_patients_monitored{env=~"$env"}, care_team)'))
    x = y = 0
    for n, item in enumerate(items, start=1):
        # Laid out here rather than by the SDK: rows of panels left to right, wrapping at Grafana's 24 columns.
        if isinstance(item, Row):
            y += HEIGHT if x else 0
            d = d.with_row(board.Row(item.title).id(n).grid_pos(dm.GridPos(h=1, w=24, x=0, y=y)))
            x, y = 0, y + 1
            continue
        if x + item.width > 24:
            x, y = 0, y + HEIGHT
        d = d.with_panel(_panel(item, n).grid_pos(dm.GridPos(h=HEIGHT, w=item.width, x=x, y=y)))
        x += item.width
    return d.build()


def dashboards() -> dict[str, dm.Dashboard]:
    """File name -> dashboard."""
    return {
        "twinmon-operations.json": dashboard(
            "twinmon-operations", "twinmon operations",
            "Workers of twinmon: throughput, latency, consumer lag, event loop, errors, dead letters, Redis, alerts, "
            "worker health.", ["twinmon", "operations"], OPERATIONS),
        "twinmon-clinical-service.json": dashboard(
            "twinmon-clinical-service", "twinmon clinical service",
            CLINICAL_DESCRIPTION, ["twinmon", "clinical"], CLINICAL, care_team=True),
    }


def render(d: dm.Dashboard) -> str:
    return json.dumps(json.loads(JSONEncoder().encode(d)), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    stale = []
    for name, d in dashboards().items():
        path, text = OUT / name, render(d)
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)} (run deploy/grafana/generate.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
