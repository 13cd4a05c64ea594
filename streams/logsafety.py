"""Logging that never carries a patient's data, whatever level a person turns on.

aiokafka logs every message it produces, key and value, and the raw bytes of every request and response, at
DEBUG (``aiokafka.producer.producer``: "Sending (key=... value=...)"; ``aiokafka.conn``: "Request to ..." with
the record batch). With ``TWINMON_LOG_LEVEL=debug`` that put patient ids, readings and the names of the staff
who acknowledged alerts in the worker's log. Its loggers are therefore held at INFO or above: a person who
wants to debug twinmon still sees twinmon's and Faust's own debug output, and the Kafka client's connection
and rebalance messages at INFO.

The level alone is not enough where a framework configures logging after us (uvicorn's ``dictConfig``, a
library that sets its own logger's level): ``guard_logging`` also puts a ``PayloadGuard`` on the root logger's
handlers, which drops any record of those libraries below INFO whatever their logger's level, and strips the
exception text from records of ``EXCEPTION_LOGGERS`` (uvicorn logs an application's exception with its message,
and a message can quote a patient): the type and where it was raised remain.

While a broker is down the same client lines repeat many times a second; ``limit_repeats`` keeps one of each
per ``REPEAT_WINDOW_S`` and counts the rest, so an outage stays readable and does not fill the disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

PAYLOAD_LOGGERS = ("aiokafka",)
"""Libraries whose DEBUG output includes message keys and values."""


def hold_payload_loggers(level: str) -> None:
    """Let ``PAYLOAD_LOGGERS`` log at ``level`` (a name such as "debug" or "WARNING"), but never below INFO."""
    requested = logging.getLevelName(level.upper())
    floor = requested if isinstance(requested, int) else logging.INFO
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(floor, logging.INFO))


EXCEPTION_LOGGERS = ("uvicorn",)
"""Servers that log an application's exception with its message and traceback."""


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def exception_summary(exc: BaseException) -> str:
    """The exception's type and the innermost frame it was raised in (module and line), never its message."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {tb.tb_frame.f_globals.get('__name__', '?')}:{tb.tb_lineno}" if tb is not None else ""
    return f"{type(exc).__name__}{where}"


class PayloadGuard(logging.Filter):
    """On a handler: drops DEBUG records of ``PAYLOAD_LOGGERS`` and withholds the exception text of
    ``EXCEPTION_LOGGERS`` (replaced by ``exception_summary``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO and _under(record.name, PAYLOAD_LOGGERS):
            return False
        if record.exc_info and _under(record.name, EXCEPTION_LOGGERS):
            exc = record.exc_info[1]
            if exc is not None:
                record.msg = f"{record.getMessage()} [{exception_summary(exc)}; message withheld]"
                record.args = None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def guard_logging(level: str) -> None:
    """``hold_payload_loggers(level)``, and a ``PayloadGuard`` on every handler of the root logger and of
    ``EXCEPTION_LOGGERS`` (call it after the handlers exist: after ``basicConfig`` and the server's own setup)."""
    hold_payload_loggers(level)
    handlers = [*logging.getLogger().handlers]
    for name in [n for n in list(logging.root.manager.loggerDict) if _under(n, EXCEPTION_LOGGERS)]:
        handlers.extend(getattr(logging.getLogger(name), "handlers", []))
    for handler in handlers:
        if not any(isinstance(f, PayloadGuard) for f in handler.filters):
            handler.addFilter(PayloadGuard())


REPEAT_WINDOW_S = 30.0
"""A Kafka client message with the same text template is logged at most once per this many seconds."""
REPEATING_LOGGERS = ("aiokafka",)
"""Libraries that log the same line many times a second while a broker is down (aiokafka: "Unable connect to
node with id 1", "Unable to update metadata", per request; 30,000 lines from ``twinmon simulate`` and ~800 from a
worker during a 14 s broker restart)."""


class RepeatLimiter(logging.Filter):
    """Passes a message once per ``window_s`` per (logger, level, text template); the next one that passes says
    how many were held back. The template is the message before its arguments, so "Unable connect to node with
    id %s: %s" repeats whatever the node and error; different messages pass independently."""

    MAX_KEYS = 1000

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s, self._clock = window_s, clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [last passed at, held since]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            return False
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        held = int(seen[1]) if seen is not None else 0
        self._seen[key] = [now, 0]
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {self.window_s:.0f}s not logged]"
        return True


def limit_repeats(window_s: float = REPEAT_WINDOW_S) -> RepeatLimiter:
    """Install one ``RepeatLimiter`` on every logger of ``REPEATING_LOGGERS`` (a logger's filter sees only the
    records logged to it, so each module's logger gets it). Imports the libraries so that their loggers exist."""
    import aiokafka  # noqa: F401 - creates the library's loggers

    limiter = RepeatLimiter(window_s)
    names = [n for n in list(logging.root.manager.loggerDict)
             if any(n == p or n.startswith(p + ".") for p in REPEATING_LOGGERS)]
    for name in names:
        logging.getLogger(name).addFilter(limiter)
    return limiter
