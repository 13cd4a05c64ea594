"""The command line: help everywhere, and errors a person can act on (one line, no traceback)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from bench import pipeline
from bench.options import STAGES, BenchOptions
from cli.main import main

ROOT = Path(__file__).resolve().parents[3]

SUBCOMMANDS = [["worker"], ["simulate"], ["replay"], ["twin"], ["twin", "show"], ["twin", "forecast"],
               ["twin", "history"], ["enrol"], ["discharge"], ["topics"], ["topics", "create"],
               ["topics", "check"], ["version"], ["progress"], ["news2"], ["alert"], ["alert", "list"],
               ["alert", "ack"], ["alert", "resolve"], ["bench"], ["evaluate"], ["evaluate", "feasibility"]]


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=lambda a: " ".join(a))
def test_every_subcommand_has_help(args: list[str]) -> None:
    out = CliRunner().invoke(main, [*args, "--help"])
    assert out.exit_code == 0 and "Usage: " in out.output and len(out.output.splitlines()) > 3


def test_version_prints_the_package_version() -> None:
    out = CliRunner().invoke(main, ["version"])
    assert out.exit_code == 0 and out.output.strip() == "0.1.0"


def test_bad_configuration_names_the_variable() -> None:
    out = CliRunner().invoke(main, ["topics", "check"], env={"TWINMON_PARTITIONS": "zero"})
    assert out.exit_code == 2
    assert "TWINMON_PARTITIONS" in out.output and "Traceback" not in out.output


def test_unreachable_redis_is_one_clear_line_and_the_password_is_not_shown() -> None:
    out = CliRunner().invoke(main, ["twin", "p-1"], env={"TWINMON_REDIS_URL": "redis://:s3cret@127.0.0.1:1/0"})
    assert out.exit_code == 1
    assert "cannot reach Redis" in out.output and "s3cret" not in out.output and "Traceback" not in out.output


def test_bad_simulate_arguments_are_usage_errors() -> None:
    out = CliRunner().invoke(main, ["simulate", "--patients", "0", "--out", "/dev/null"])
    assert out.exit_code == 2 and "--patients" in out.output


def test_twin_patient_is_short_for_twin_show() -> None:
    out = CliRunner().invoke(main, ["twin", "p-1"], env={"TWINMON_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert "cannot reach Redis" in out.output  # it went to `show`, not "no such command"


@pytest.mark.parametrize(
    "args,message",
    [
        (["enrol", "p-1", "--team", "w7", "--target", "spo2=92"], "VITAL=LO:HI"),
        (["enrol", "p-1", "--team", "w7", "--target", "spo2=95:88"], "increasing"),
        (["enrol", "p-1", "--team", "w7", "--target", "glucose=4:8"], "not a filtered vital"),
        (["enrol", "p-1", "--team", "w7", "--condition", "flu"], "unknown condition"),
        (["enrol", "../p", "--team", "w7"], "patient_id"),
        (["twin", "forecast", "p-1", "--horizon", "soon"], "duration"),
    ],
)
def test_bad_clinical_input_is_refused_before_anything_is_sent(args: list[str], message: str) -> None:
    out = CliRunner().invoke(main, args, env={"TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["alert", "ack", "p-1", "not-an-id", "--user", "n1"], "alert_id"),
        (["alert", "resolve", "p-1", "0123456789abcdef01234567", "--user", "n1", "--reason", " "], "reason"),
        (["alert", "ack", "p-1", "0123456789abcdef01234567", "--user", "no spaces"], "user"),
    ],
)
def test_bad_alert_actions_are_refused_before_anything_is_sent(args: list[str], message: str) -> None:
    out = CliRunner().invoke(main, args, env={"TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


def test_the_worker_image_needs_no_evaluation_library_and_evaluate_says_what_to_install() -> None:
    """The runtime lock (the image) carries no charting or reference-filter library; a chart command says which
    extra it needs instead of a traceback."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    runtime = (root / "requirements" / "runtime.lock").read_text()
    for package in ("matplotlib", "filterpy", "scipy", "pytest"):
        assert f"\n{package}==" not in runtime, package
    # matplotlib hidden from this interpreter: the worker's modules import, evaluate refuses clearly.
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import streams.app, feed.api\n"
            "from click.testing import CliRunner\nfrom cli.main import main\n"
            "r = CliRunner().invoke(main, ['evaluate', '--patients', '1', '--hours', '0.1', '--out', sys.argv[1]])\n"
            "print(r.exit_code); print(r.output)")
    out = subprocess.run([sys.executable, "-c", code, str(root / ".twinmon" / "never")], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.startswith("1\n") and "pip install 'twinmon[evaluation]'" in out and "Traceback" not in out
    assert not (root / ".twinmon" / "never").exists()


# --- twinmon bench: click options, passed to bench.pipeline.run as BenchOptions --------------------------------

BENCH_OPTIONS = ["--only", "--quick", "--patients", "--events", "--partitions", "--rates", "--latency-seconds",
                 "--twins", "--scale-events", "--bootstrap", "--redis-url", "--json"]


@pytest.fixture
def bench_runs(monkeypatch: pytest.MonkeyPatch) -> list[BenchOptions]:
    """What ``twinmon bench`` hands the benchmark, instead of running it (which starts Kafka and Redis)."""
    runs: list[BenchOptions] = []

    def run(options: BenchOptions) -> int:
        runs.append(options)
        return 0

    monkeypatch.setattr(pipeline, "run", run)
    return runs


def test_bench_help_lists_every_option_with_its_default() -> None:
    out = CliRunner().invoke(main, ["bench", "--help"])
    assert out.exit_code == 0, out.output
    listed = re.findall(r"^  (--[a-z-]+)", out.output, flags=re.MULTILINE)
    assert listed == BENCH_OPTIONS and "-h, --help" in out.output
    flat = " ".join(out.output.split())
    for default in ("[default: throughput,latency,memory,scale]", "[default: 5000,15000]", "[default: 10000;",
                    "[default: 200000;", "[default: 45.0;", "[default: bench- results.json]"):
        assert default in flat


def test_bench_defaults_reach_the_benchmark_unchanged(bench_runs: list[BenchOptions]) -> None:
    out = CliRunner().invoke(main, ["bench"])
    assert out.exit_code == 0, out.output
    assert bench_runs == [BenchOptions()]
    assert bench_runs[0].stages == STAGES and bench_runs[0].rates == (5000, 15000)


def test_every_bench_option_reaches_bench_options(bench_runs: list[BenchOptions], tmp_path: Path) -> None:
    args = ["--only", "scale, latency", "--patients", "7", "--events", "70", "--partitions", "3", "--rates",
            "10,20,30", "--latency-seconds", "1.5", "--twins", "9", "--scale-events", "90", "--bootstrap",
            "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1/0", "--json", str(tmp_path / "r.json")]
    out = CliRunner().invoke(main, ["bench", *args])
    assert out.exit_code == 0, out.output
    assert bench_runs == [BenchOptions(stages=("scale", "latency"), patients=7, events=70, partitions=3,
                                       rates=(10, 20, 30), latency_seconds=1.5, twins=9, scale_events=90,
                                       bootstrap="127.0.0.1:1", redis_url="redis://127.0.0.1:1/0",
                                       json=tmp_path / "r.json")]


def test_quick_sets_the_short_sizes_and_keeps_the_rest(bench_runs: list[BenchOptions]) -> None:
    out = CliRunner().invoke(main, ["bench", "--quick", "--only", "latency", "--patients", "50", "--rates", "100"])
    assert out.exit_code == 0, out.output
    (got,) = bench_runs
    assert (got.events, got.latency_seconds, got.twins, got.scale_events) == (60_000, 40.0, 20_000, 40_000)
    assert (got.stages, got.patients, got.rates) == (("latency",), 50, (100,))


def test_the_makefile_bench_args_it_documents_still_work(bench_runs: list[BenchOptions]) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/twinmon bench $(BENCH_ARGS)" in makefile
    documented = [shlex.split(a)[0] for a in re.findall(r"BENCH_ARGS=('[^']*'|\S+)", makefile)]
    assert documented == ["--quick", "--only latency"]
    for args in documented:
        out = CliRunner().invoke(main, ["bench", *args.split()])
        assert out.exit_code == 0, out.output
    assert [r.stages for r in bench_runs] == [STAGES, ("latency",)]
    assert bench_runs[0] == BenchOptions().quick() != BenchOptions()


def test_the_benchmarks_exit_code_is_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "run", lambda options: 1)
    assert CliRunner().invoke(main, ["bench"]).exit_code == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--only", "throughput,nope"], "'--only': unknown stage(s) nope; choose from throughput, latency, memory"),
        (["--only", " , "], "give at least one stage"),
        (["--rates", "1000,lots"], "'1000,lots' is not a comma-separated list of whole numbers"),
        (["--rates", "1000,0"], "each must be at least 1"),
        (["--patients", "0"], "--patients"),
        (["--events", "ten"], "--events"),
        (["--partitions", "0"], "--partitions"),
        (["--latency-seconds", "0"], "--latency-seconds"),
        (["--twins", "-1"], "--twins"),
        (["--scale-events", "0"], "--scale-events"),
        (["--bootstrap", "127.0.0.1:1"], "give both --bootstrap and --redis-url"),
        (["--redis-url", "redis://127.0.0.1:1/0"], "give both --bootstrap and --redis-url"),
        (["--json", "."], "--json"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_bench_values_are_usage_errors_before_the_benchmark_starts(
        bench_runs: list[BenchOptions], args: list[str], message: str) -> None:
    out = CliRunner().invoke(main, ["bench", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output and "Usage: main bench [OPTIONS]" in out.output and "Traceback" not in out.output
    assert bench_runs == []


def test_bench_without_local_services_needs_given_ones(bench_runs: list[BenchOptions],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "local_services_available", lambda: False)
    out = CliRunner().invoke(main, ["bench"])
    assert out.exit_code == 2 and "give --bootstrap HOST:PORT and --redis-url" in out.output
    given = ["--bootstrap", "127.0.0.1:1", "--redis-url", "redis://127.0.0.1:1/0"]
    assert CliRunner().invoke(main, ["bench", *given]).exit_code == 0
    assert [r.bootstrap for r in bench_runs] == ["127.0.0.1:1"]


def test_bench_options_refuse_what_the_command_line_does() -> None:
    for bad in ({"stages": ("nope",)}, {"stages": ()}, {"rates": ()}, {"rates": (0,)}, {"events": 0},
                {"latency_seconds": 0.0}, {"bootstrap": "127.0.0.1:1"}):
        with pytest.raises(ValueError):
            BenchOptions(**bad)


# --- twinmon evaluate feasibility: offline, so run for real on a tiny cohort ---------------------------------


def test_feasibility_runs_a_tiny_cohort_and_writes_what_it_prints(tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["evaluate", "feasibility", "--patients", "4", "--hours", "2", "--seed", "3",
                                    "--deteriorating", "0.5", "--json", str(tmp_path / "sub" / "f.json")])
    assert out.exit_code == 0, out.output
    result = orjson.loads(out.stdout)
    assert result["cohort"] == {"patients": 4, "hours": 2.0, "seed": 3, "deteriorating_share": 0.5,
                                "episodes": 1, "stable": 3, "ramp_min_median": result["cohort"]["ramp_min_median"]}
    assert list(result["by_minutes_after_onset"]) == ["2", "5", "10", "20"]
    assert result["required_z"] == 3.64
    for k in result["by_minutes_after_onset"].values():
        assert set(k["median_z"]) == {"heart_rate", "resp_rate", "spo2", "temperature", "bp_systolic"}
    assert orjson.loads((tmp_path / "sub" / "f.json").read_bytes()) == result


@pytest.mark.parametrize(
    "args,message",
    [
        (["--patients", "0"], "--patients"),
        (["--hours", "0"], "--hours"),
        (["--deteriorating", "1.5"], "--deteriorating"),
        (["--seed", "one"], "--seed"),
        (["--hours", "1.3"], "at least 1.35 h long"),
        (["--patients", "1", "--hours", "2"], "1 stable and 0 deteriorating patients"),
        (["--patients", "3", "--hours", "2", "--deteriorating", "1"], "0 stable and 3 deteriorating"),
    ],
)
def test_bad_feasibility_values_are_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["evaluate", "feasibility", *args, "--json", str(tmp_path / "f.json")])
    assert out.exit_code == 2, out.output
    assert message in out.output and "Usage: main evaluate feasibility [OPTIONS]" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "f.json").exists()


def test_feasibility_help_gives_the_shortest_cohort_it_accepts() -> None:
    from evaluation.feasibility import min_duration_s

    out = CliRunner().invoke(main, ["evaluate", "feasibility", "--help"])
    assert f"({min_duration_s() / 3600:g} at least:" in " ".join(out.output.split())


@pytest.mark.parametrize("sub", [["feasibility"], ["physionet2012", "--help"]])
def test_cohort_options_before_a_subcommand_are_refused_not_ignored(sub: list[str]) -> None:
    out = CliRunner().invoke(main, ["evaluate", "--patients", "5", "--seed", "2", *sub])
    assert out.exit_code == 2, out.output
    assert f"--patients, --seed belong to the cohort evaluation, not to `{sub[0]}`" in out.output
