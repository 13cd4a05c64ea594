"""The command line: help everywhere, and errors a person can act on (one line, no traceback)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli.main import main

SUBCOMMANDS = [["worker"], ["simulate"], ["replay"], ["twin"], ["twin", "show"], ["twin", "forecast"],
               ["twin", "history"], ["enrol"], ["discharge"], ["topics"], ["topics", "create"],
               ["topics", "check"], ["version"], ["progress"], ["news2"], ["alert"], ["alert", "list"],
               ["alert", "ack"], ["alert", "resolve"]]


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
