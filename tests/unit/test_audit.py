"""The offline vulnerability check of ``make audit`` (streams/audit.py): it finds what its database lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.audit import Finding, findings, main, parse_freeze

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
def test_main_exit_code(tmp_path: Path, pins: str, code: int, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "db.json").write_text(json.dumps(DB))
    (tmp_path / "req.txt").write_text(pins)
    assert main(["--db", str(tmp_path / "db.json"), "--freeze", str(tmp_path / "req.txt")]) == code
    assert ("VULNERABLE jinja2==2.10" in capsys.readouterr().out) == (code == 1)
