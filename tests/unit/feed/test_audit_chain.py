"""The audit trail's signatures and per-writer chains: what verify counts as intact, and every way a record can
be forged, altered, dropped, replayed or out of its chain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from cli.main import main
from feed.audit_chain import Chain, Report, canonical, mac_ok, verify

KEY = b"k" * 32


def _record(i: int) -> dict[str, Any]:
    return {"id": f"r{i}", "at": 1000 + i, "user": "nurse-1", "team": "ward-7", "action": "enrol",
            "patient_id": f"p-{i}", "alert_id": None, "reason": "", "source": "feed", "os_user": None}


def _chain(writer: str, n: int) -> list[dict[str, Any]]:
    chain, out = Chain(writer), []
    for i in range(n):
        doc = chain.seal(_record(i), KEY)
        chain.advance(doc)
        out.append(doc)
    return out


def _raw(docs: list[dict[str, Any]]) -> list[bytes | None]:
    return [orjson.dumps(d) for d in docs]


def test_interleaved_writers_in_any_order_are_intact() -> None:
    a, b = _chain("feed-a", 5), _chain("cli-b", 3)
    mixed = [b[2], a[0], a[3], b[0], a[1], a[4], b[1], a[2]]  # several partitions: no order across them
    report = verify(_raw(mixed), KEY)
    assert report == Report(records=8, writers=2, intact=8)
    assert report.problems == 0


def test_signature_covers_every_field_but_itself_and_any_field_order() -> None:
    doc = _chain("w", 1)[0]
    assert mac_ok(dict(reversed(list(doc.items()))), KEY)
    assert canonical(doc) == canonical({**doc, "mac": "other"})
    for field, value in (("reason", "changed"), ("user", "someone-else"), ("seq", 2), ("prev", "x"),
                         ("team", "ward-9"), ("extra", 1)):
        assert not mac_ok({**doc, field: value}, KEY), field
    assert not mac_ok(doc, b"another key" * 3)


def test_a_forged_record_is_a_bad_mac() -> None:
    docs = _chain("w", 3)
    forged = {**_record(9), "writer": "w", "seq": 4, "prev": docs[-1]["mac"], "mac": "0" * 64}
    report = verify(_raw([*docs, forged]), KEY)
    assert (report.bad_mac, report.intact, report.problems) == (1, 3, 1)


def test_an_altered_copy_is_a_bad_mac_and_replacing_it_leaves_a_gap() -> None:
    docs = _chain("w", 3)
    altered = {**docs[1], "reason": "nothing happened"}
    assert verify(_raw([*docs, altered]), KEY).bad_mac == 1
    report = verify(_raw([docs[0], altered, docs[2]]), KEY)  # as if the original were replaced
    assert (report.bad_mac, report.missing, report.intact) == (1, 1, 1)


def test_a_dropped_record_or_a_skipped_sequence_is_missing() -> None:
    docs = _chain("w", 5)
    assert verify(_raw([d for d in docs if d["seq"] != 3]), KEY).missing == 1
    assert verify(_raw(docs[2:]), KEY).missing == 2  # the chain's first records gone
    skipping = Chain("w2")
    first = skipping.seal(_record(0), KEY)
    skipping.advance(first)
    skipping.seq += 1  # a writer that skips a number
    assert verify(_raw([first, skipping.seal(_record(1), KEY)]), KEY).missing == 1


def test_a_broken_link_a_replay_and_a_fork_are_counted() -> None:
    docs = _chain("w", 3)
    relinked = Chain("w", seq=1, head="not the first record's mac").seal(_record(1), KEY)
    report = verify(_raw([docs[0], relinked, docs[2]]), KEY)
    assert report.broken_links == 2  # seq 2 does not follow seq 1; seq 3 follows the real seq 2, not this one
    assert verify(_raw([*docs, docs[1]]), KEY).duplicates == 1
    other = Chain("w", seq=1, head=docs[0]["mac"]).seal(_record(7), KEY)
    assert verify(_raw([*docs, other]), KEY).forks == 1


def test_malformed_unchained_and_truncated_are_problems() -> None:
    report = verify([b"not json", None, b"[1]", orjson.dumps(_record(1))], KEY, truncated_partitions=1)
    assert (report.malformed, report.unchained, report.truncated_partitions, report.problems) == (3, 1, 1, 5)
    assert all("p-" not in line for line in report.lines())  # counts only


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["enrol", "p-1", "--team", "w7"],
                                  ["discharge", "p-1", "--team", "w7"],
                                  ["alert", "ack", "p-1", "a" * 24, "--user", "u"],
                                  ["alert", "resolve", "p-1", "a" * 24, "--user", "u", "--reason", "r"],
                                  ["fhir", "ingest", "FILE"], ["audit", "verify"]])
def test_every_write_and_verify_refuse_to_start_without_the_key(args: list[str], tmp_path: Path) -> None:
    # Kafka and Redis unreachable: a command that got past the key check would say so instead.
    if "FILE" in args:
        obs = tmp_path / "obs.json"
        obs.write_bytes(orjson.dumps({"resourceType": "Observation", "status": "final",
                                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                                      "subject": {"reference": "Patient/p-1"},
                                      "effectiveDateTime": "2026-01-01T00:00:00Z",
                                      "valueQuantity": {"value": 72, "system": "http://unitsofmeasure.org",
                                                        "code": "/min"}}))
        args = [str(obs) if a == "FILE" else a for a in args]
    out = CliRunner().invoke(main, args, env={"TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1", "TWINMON_AUDIT_KEY": "",
                                              "TWINMON_REDIS_URL": "redis://127.0.0.1:1/0",
                                              "TWINMON_TOKENS_FILE": str(tmp_path / "t.json")})
    assert out.exit_code == 2, out.output
    assert "TWINMON_AUDIT_KEY is not set" in out.output and "Traceback" not in out.output


def test_verify_that_cannot_read_the_topic_is_not_a_pass_nor_a_tamper_finding() -> None:
    out = CliRunner().invoke(main, ["audit", "verify"], env={"TWINMON_KAFKA_BOOTSTRAP": "127.0.0.1:1",
                                                             "TWINMON_AUDIT_KEY": "k" * 32})
    assert out.exit_code == 3, out.output
    assert "cannot reach Kafka at 127.0.0.1:1" in out.output and "Traceback" not in out.output
