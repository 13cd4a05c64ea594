"""Faust's own ceiling: a worker whose vitals agent takes batches exactly as twinmon's does and does nothing.

``python -m bench.faust_noop N OUT`` (run by ``twinmon bench`` with the deployment's ``TWINMON_*`` settings)
consumes ``N`` events of the vitals topic in a Faust agent with ``take_events`` and the same app settings as
``create_app``, acknowledging each batch and doing nothing else, then writes one JSON object to ``OUT``
(events/s from the first event to the N-th, batches, CPU seconds) and exits. The gap between this rate and a
bare aiokafka consumer is Faust's per-message machinery; the gap between it and the real worker is twinmon's own work.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import faust

from streams.app import faust_app
from streams.settings import Settings


def main(n: int, out: str) -> None:
    settings = Settings()
    app = faust_app(settings)
    vitals = app.topic(settings.topic_vitals, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    state: dict[str, Any] = {"seen": 0, "batches": 0, "first": None}

    @app.agent(vitals, name="noop-vitals", concurrency=1)
    async def noop(stream: Any) -> None:
        async for events in stream.take_events(settings.batch_max, within=settings.batch_within_ms / 1000.0):
            if state["first"] is None:
                state["first"] = time.monotonic()
                state["cpu_first"] = time.process_time()
            state["seen"] += len(events)
            state["batches"] += 1
            if state["seen"] >= n:
                elapsed = time.monotonic() - state["first"]
                Path(out).write_text(json.dumps({"events": state["seen"], "seconds": elapsed,
                                  "events_per_s": state["seen"] / max(elapsed, 1e-9),
                                  "batches": state["batches"],
                                  "cpu_s": time.process_time() - state["cpu_first"]}))
                logging.shutdown()
                os._exit(0)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
