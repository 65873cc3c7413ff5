"""Closing the producer: kafka-python's close raises when its flush times out; ours never does."""

from __future__ import annotations

from pathlib import Path

from kafka import KafkaConsumer
from kafka.errors import KafkaTimeoutError

from daemon.config import parse_config
from daemon.kafka_io import SENDER_STOP_S, _options, close_producer


class _StuckSender:
    """A sender thread that does not stop when told to (the batches are never failed)."""

    def __init__(self) -> None:
        self.forced = False
        self.joined: list[float] = []

    def force_close(self) -> None:
        self.forced = True

    def join(self, timeout: float) -> None:
        self.joined.append(timeout)


class _Unacknowledged:
    """kafka-python's producer with records the broker never acknowledges."""

    def __init__(self) -> None:
        self._sender = _StuckSender()
        self.closes: list[float] = []

    def close(self, timeout: float) -> None:
        self.closes.append(timeout)
        raise KafkaTimeoutError("Timeout waiting for future")


def test_a_sender_that_will_not_stop_is_given_up_on_without_raising() -> None:
    producer = _Unacknowledged()
    close_producer(producer, 30.0)  # type: ignore[arg-type]
    assert producer.closes == [30.0, 0] and producer._sender.forced
    assert producer._sender.joined == [SENDER_STOP_S]  # waited on once, for a bounded time


def test_a_version_given_as_a_yaml_list_reaches_kafka_python_as_a_tuple() -> None:
    config = parse_config(
        {"models": [{"name": "m", "path": "m.onnx"}], "kafka": {"client": {"api_version": [3, 9]}}},
        Path("."),
        env={},
    )
    assert _options(KafkaConsumer, config.kafka)["api_version"] == (3, 9)
