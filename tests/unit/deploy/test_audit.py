"""The dependency audit of ``make audit`` (deploy/local/dependency_audit.py): it finds what its data lists."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "deploy" / "local"))
import dependency_audit as audit
from dependency_audit import (
    Finding,
    Pin,
    check_lock,
    findings,
    main,
    normalise,
    parse_freeze,
    parse_lock,
)

DB = {
    "$meta": {"advisory": "test", "timestamp": 1625119201},
    "Jinja2": [
        {"advisory": "sandbox escape", "cve": "CVE-2019-10906", "id": "pyup.io-36862", "specs": ["<2.10.1"]},
        {"advisory": "ReDoS", "cve": "CVE-2020-28493", "id": "pyup.io-39525", "specs": [">=0.0.0,<2.11.3"]},
    ],
    "py-yaml-ish": [{"advisory": "x", "cve": None, "id": "pyup.io-1", "specs": ["<6", "not a spec"]}],
}


def test_parse_freeze() -> None:
    lines = ["# comment", "Jinja2==2.10", "py_yaml.ish==5.4 ; python_version > '3'", "-e git+https://x#egg=y",
             "foo @ file:///tmp/foo", "redis[hiredis]==8.1.0", ""]
    assert parse_freeze(lines) == {"jinja2": "2.10", "py-yaml-ish": "5.4", "redis": "8.1.0"}


def test_findings_match_the_affected_ranges() -> None:
    got = findings({"jinja2": "2.10", "py-yaml-ish": "6.0", "redis": "8.1.0"}, DB)
    assert got == [Finding("jinja2", "2.10", "pyup.io-36862", "CVE-2019-10906", "<2.10.1", "sandbox escape"),
                   Finding("jinja2", "2.10", "pyup.io-39525", "CVE-2020-28493", ">=0.0.0,<2.11.3", "ReDoS")]
    assert [f.advisory_id for f in findings({"jinja2": "2.11.0"}, DB)] == ["pyup.io-39525"]
    assert findings({"jinja2": "3.1.6", "py-yaml-ish": "not-a-version"}, DB) == []
    assert [f.package for f in findings({"py-yaml-ish": "5.4"}, DB)] == ["py-yaml-ish"]


@pytest.mark.parametrize(("pins", "code"), [("Jinja2==2.10\n", 1), ("Jinja2==3.1.6\n", 0)])
def test_main_exit_code(tmp_path: Path, pins: str, code: int) -> None:
    (tmp_path / "db.json").write_text(json.dumps(DB))
    (tmp_path / "req.txt").write_text(pins)
    out = CliRunner().invoke(main, ["--db", str(tmp_path / "db.json"), "--freeze", str(tmp_path / "req.txt")])
    assert out.exit_code == code, out.output
    assert ("VULNERABLE jinja2==2.10" in out.output) == (code == 1)


@pytest.mark.parametrize(("args", "message"), [([], "give --lock"), (["--db", "db.json"], "give --lock"),
                                               (["--db", "db.json", "--freeze", "missing.txt"], "missing.txt")])
def test_incomplete_or_missing_inputs_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):
        Path("db.json").write_text(json.dumps(DB))
        out = runner.invoke(main, args)
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


# --- the lock against PyPI's project pages -------------------------------------------------------------------

LOCK = """\
# comment
aiohttp==3.14.5 \\
    --hash=sha256:aaa \\
    --hash=sha256:bbb
    # via faust-streaming
redis[hiredis]==8.1.0 ; python_version >= "3.11" \\
    --hash=sha256:ccc
"""


def _project(latest: str, releases: dict[str, list[tuple[str, bool]]], vulns: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    return {"info": {"version": latest}, "vulnerabilities": vulns or [],
            "releases": {v: [{"digests": {"sha256": h}, "yanked": y, "yanked_reason": "broken" if y else None}
                             for h, y in files] for v, files in releases.items()}}


def test_parse_lock_reads_names_versions_and_every_hash() -> None:
    assert parse_lock(LOCK) == {"aiohttp": Pin("3.14.5", frozenset({"aaa", "bbb"})),
                                "redis": Pin("8.1.0", frozenset({"ccc"}))}


def test_the_committed_locks_pin_every_package_with_hashes() -> None:
    root = Path(__file__).resolve().parents[3]
    for lock in ("runtime", "dev"):
        text = (root / "requirements" / f"{lock}.lock").read_text()
        pins = parse_lock(text)
        assert len(pins) == text.count("==") and len(pins) > 40
        assert all(p.hashes and all(len(h) == 64 for h in p.hashes) for p in pins.values())
    assert set(parse_lock((root / "requirements" / "runtime.lock").read_text())) < set(
        parse_lock((root / "requirements" / "dev.lock").read_text()))


def test_the_lock_satisfies_every_requirement_of_pyproject() -> None:
    import tomllib

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[3]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = parse_lock((root / "requirements" / "dev.lock").read_text())
    extras = [line for lines in project["optional-dependencies"].values() for line in lines]
    for line in [*project["dependencies"], *extras]:
        req = Requirement(line)
        name = normalise(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements/dev.lock (make lock)"
        assert req.specifier.contains(pins[name].version, prereleases=True), \
            f"{req.name}=={pins[name].version} in the lock does not satisfy {line!r} (make lock)"


def test_installs_are_hash_checked() -> None:
    root = Path(__file__).resolve().parents[3]
    assert "--require-hashes --no-deps -r requirements/dev.lock" in (root / "Makefile").read_text()
    assert "--require-hashes --no-deps -r requirements/runtime.lock" in (root / "deploy" / "Dockerfile").read_text()


def test_check_lock_passes_a_clean_latest_pin_and_reports_older_ones_as_unchecked() -> None:
    pins = parse_lock(LOCK)
    projects = {"aiohttp": _project("3.14.5", {"3.14.5": [("aaa", False), ("bbb", False)]}),
                "redis": _project("8.2.0", {"8.1.0": [("ccc", False)], "8.2.0": [("ddd", False)]})}
    report = check_lock(pins, projects)
    assert not report.failed
    assert report.unchecked == ["redis==8.1.0 (latest 8.2.0)"]


def test_check_lock_fails_on_an_advisory_a_yank_an_unpublished_hash_or_a_missing_version() -> None:
    pins = parse_lock(LOCK)
    vuln = [{"id": "GHSA-xxxx", "fixed_in": ["3.14.6"], "withdrawn": None}]
    report = check_lock(pins, {"aiohttp": _project("3.14.5", {"3.14.5": [("aaa", False), ("bbb", False)]}, vuln),
                               "redis": _project("8.1.0", {"8.1.0": [("ccc", True)]})})
    assert report.vulnerable == ["aiohttp==3.14.5 GHSA-xxxx (fixed in 3.14.6)"]
    assert report.yanked == ["redis==8.1.0 (broken)"] and report.failed
    withdrawn = [{"id": "GHSA-old", "fixed_in": [], "withdrawn": "2026-01-01"}]
    assert check_lock(pins, {"aiohttp": _project("3.14.5", {"3.14.5": [("aaa", False), ("bbb", False)]},
                                                 withdrawn)}).vulnerable == []
    tampered = check_lock(pins, {"aiohttp": _project("3.14.5", {"3.14.5": [("aaa", False)]})})
    assert tampered.unknown_hashes == ["aiohttp==3.14.5"] and tampered.failed
    gone = check_lock(pins, {"aiohttp": _project("3.14.5", {"3.14.4": [("aaa", False)]})})
    assert gone.missing == ["aiohttp==3.14.5"] and gone.failed


def test_a_silent_pypi_is_incomplete_not_a_pass_or_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "x.lock").write_text(LOCK)
    monkeypatch.setattr(audit, "fetch_projects", lambda names: dict.fromkeys(names))
    result = CliRunner().invoke(audit.main, ["--lock", str(tmp_path / "x.lock")])
    assert result.exit_code == 3, result.output
    out = result.output
    assert "nothing checked (PyPI did not answer): aiohttp==3.14.5" in out and "2 project pages did not arrive" in out
