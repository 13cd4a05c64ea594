"""The Kafka client's logging: its payload-carrying DEBUG output stays off at every level a person can choose,
and its lines that repeat while a broker is down are kept to one per window."""

from __future__ import annotations

import logging

import pytest

from streams.logsafety import PAYLOAD_LOGGERS, RepeatLimiter, hold_payload_loggers, limit_repeats


@pytest.mark.parametrize(("requested", "held"), [
    ("debug", logging.INFO), ("DEBUG", logging.INFO), ("info", logging.INFO), ("warning", logging.WARNING),
    ("error", logging.ERROR), ("nonsense", logging.INFO),
])
def test_payload_loggers_are_never_below_info(requested: str, held: int) -> None:
    before = {name: logging.getLogger(name).level for name in PAYLOAD_LOGGERS}
    try:
        hold_payload_loggers(requested)
        for name in PAYLOAD_LOGGERS:
            assert logging.getLogger(name).level == held
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
        assert not logging.getLogger("aiokafka.conn").isEnabledFor(logging.DEBUG)
    finally:
        for name, level in before.items():
            logging.getLogger(name).setLevel(level)


def _record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeating_client_line_passes_once_per_window_and_then_says_how_many_were_held() -> None:
    now = [0.0]
    limiter = RepeatLimiter(30.0, clock=lambda: now[0])
    template = "Unable connect to node with id %s: %s"
    assert limiter.filter(_record("aiokafka", template, 1, "refused"))
    for i in range(500):  # a broker down: the same line, other arguments, many times a second
        now[0] += 0.05
        assert not limiter.filter(_record("aiokafka", template, 1, f"refused {i}"))
    # Another message, another level or another logger is not held back by it.
    assert limiter.filter(_record("aiokafka", "Unable to update metadata from %s", [1]))
    assert limiter.filter(_record("aiokafka", template, 1, "x", level=logging.WARNING))
    assert limiter.filter(_record("aiokafka.conn", template, 1, "x"))
    now[0] = 30.0  # exactly one window after the first: passes, and counts what was held
    later = _record("aiokafka", template, 1, "refused")
    assert limiter.filter(later)
    assert later.getMessage() == ("Unable connect to node with id 1: refused "
                                  "[500 more like this in the last 30s not logged]")
    now[0] += 29.9
    assert not limiter.filter(_record("aiokafka", template, 1, "again"))
    now[0] += 0.1
    quiet = _record("aiokafka", template, 1, "again")
    assert limiter.filter(quiet)
    assert quiet.getMessage() == "Unable connect to node with id 1: again [1 more like this in the last 30s not logged]"


def test_limit_repeats_covers_every_kafka_client_logger_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    limiter = limit_repeats()
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(100):
                logging.getLogger("aiokafka").error("Unable to update metadata from %s", [1])
                logging.getLogger("aiokafka.consumer.fetcher").error("Failed fetch messages from %s", 1)
                logging.getLogger("twinmon.worker").error("our own line")
        texts = [r.getMessage() for r in caplog.records]
        assert texts.count("Unable to update metadata from [1]") == 1
        assert texts.count("Failed fetch messages from 1") == 1
        assert texts.count("our own line") == 100
    finally:
        for name in list(logging.root.manager.loggerDict):
            if name.startswith("aiokafka"):
                logging.getLogger(name).removeFilter(limiter)


def test_the_guard_drops_kafka_client_debug_lines_and_withholds_exception_messages() -> None:
    from streams.logsafety import PayloadGuard

    guard = PayloadGuard()
    # Whatever the logger's level, a handler with the guard never emits the Kafka client's DEBUG lines.
    assert not guard.filter(_record("aiokafka.producer.producer", "Sending (key=%s value=%s)", b"k", b"v",
                                    level=logging.DEBUG))
    assert guard.filter(_record("aiokafka.conn", "Unable connect to node", level=logging.INFO))
    assert guard.filter(_record("twinmon.feed", "debug of our own", level=logging.DEBUG))
    try:
        raise KeyError("pii-canary-1234/173.25")
    except KeyError as exc:
        info = (type(exc), exc, exc.__traceback__)
    crash = logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in %s", ("ASGI app",), info)
    assert guard.filter(crash)
    text = logging.Formatter().format(crash)
    assert "pii-canary" not in text and "Traceback" not in text
    assert text.startswith("Exception in ASGI app [KeyError at tests.unit.streams.test_logsafety:")
    # Other loggers keep their tracebacks (twinmon's own code logs exception types only).
    ours = logging.LogRecord("twinmon.x", logging.ERROR, __file__, 1, "x", None, info)
    assert guard.filter(ours) and ours.exc_info is info
