"""Logging that never carries a patient's data, whatever level a person turns on.

aiokafka logs every message it produces, key and value, and the raw bytes of every request and response, at
DEBUG (``aiokafka.producer.producer``: "Sending (key=... value=...)"; ``aiokafka.conn``: "Request to ..." with
the record batch). With ``TWINMON_LOG_LEVEL=debug`` that put patient ids, readings and the names of the staff
who acknowledged alerts in the worker's log. Its loggers are therefore held at INFO or above: a person who
wants to debug twinmon still sees twinmon's and Faust's own debug output, and the Kafka client's connection
and rebalance messages at INFO.
"""

from __future__ import annotations

import logging

PAYLOAD_LOGGERS = ("aiokafka",)
"""Libraries whose DEBUG output includes message keys and values."""


def hold_payload_loggers(level: str) -> None:
    """Let ``PAYLOAD_LOGGERS`` log at ``level`` (a name such as "debug" or "WARNING"), but never below INFO."""
    requested = logging.getLevelName(level.upper())
    floor = requested if isinstance(requested, int) else logging.INFO
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(floor, logging.INFO))
