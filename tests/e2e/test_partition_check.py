"""On the real broker: a worker whose patient-keyed topics have different partition counts refuses to start."""

from __future__ import annotations

import time

from tests.conftest import Deployment


def test_worker_and_topics_check_refuse_mismatched_partition_counts(deployment: Deployment) -> None:
    # The deployment's topics have 4 partitions; an enrolments topic made with 3 breaks co-partitioning.
    odd = deployment.env["TWINMON_TOPIC_ENROLMENTS"] + "-3"
    mismatched = Deployment({**deployment.env, "TWINMON_TOPIC_ENROLMENTS": odd, "TWINMON_PARTITIONS": "3"},
                            deployment.tmp)
    assert odd in mismatched.run("topics", "create").stdout

    check = mismatched.run("topics", "check", check=False)
    assert check.returncode == 1
    assert f"{odd} has 3" in check.stderr and "same partition count" in check.stderr

    started = time.monotonic()
    out = mismatched.run("worker", check=False, timeout=90)
    assert out.returncode != 0
    said = out.stdout + out.stderr
    assert "refusing to start: the topics' partition counts differ" in said, said
    assert f"{deployment.env['TWINMON_TOPIC_VITALS']} has 4" in said and f"{odd} has 3" in said
    assert time.monotonic() - started < 60

    # The same worker on matching topics passes the check (and is stopped once it has started consuming).
    assert deployment.run("topics", "check").returncode == 0
    worker = deployment.start_worker()
    try:
        worker.wait_for("twinmon_events_consumed_total", 0, timeout=90)
    finally:
        worker.stop()
    assert "partition counts differ" not in worker.log.read_text(errors="replace")
