"""``twinmon fhir ingest``: conversion and errors for people (the Kafka half is in tests/integration)."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
from click.testing import CliRunner

from cli.main import main


def _heart_rate(patient: str = "p-0042", value: float = 61, status: str = "final") -> dict[str, object]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    return {"resourceType": "Observation", "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": at,
            "valueQuantity": {"value": value, "unit": "beats/minute", "system": "http://unitsofmeasure.org",
                              "code": "/min"}}


def test_dry_run_prints_the_messages(tmp_path: Path) -> None:
    f = tmp_path / "obs.json"
    f.write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": [{"resource": _heart_rate()}, {"resource": _heart_rate("p-0043", 70)}]}))
    out = CliRunner().invoke(main, ["fhir", "ingest", "--dry-run", str(f)])
    assert out.exit_code == 0, out.output
    msgs = [orjson.loads(line) for line in out.output.splitlines()]
    assert [(m["patient_id"], m["metric"], m["value"]) for m in msgs] == [("p-0042", "heart_rate", 61.0),
                                                                          ("p-0043", "heart_rate", 70.0)]


def test_refusals_are_one_clear_line(tmp_path: Path) -> None:
    f = tmp_path / "obs.json"
    f.write_bytes(orjson.dumps(_heart_rate(status="entered-in-error")))
    out = CliRunner().invoke(main, ["fhir", "ingest", str(f)])
    assert out.exit_code == 2
    assert "entered-in-error" in out.output and "Traceback" not in out.output
    f.write_bytes(b"{not json")
    out = CliRunner().invoke(main, ["fhir", "ingest", str(f)])
    assert out.exit_code == 2 and "is not JSON" in out.output
