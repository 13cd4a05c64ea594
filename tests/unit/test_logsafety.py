"""The Kafka client's payload-carrying DEBUG output stays off at every level a person can choose."""

from __future__ import annotations

import logging

import pytest

from streams.logsafety import PAYLOAD_LOGGERS, hold_payload_loggers


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
