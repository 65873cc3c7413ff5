"""The service's own metrics, with small stand-ins for the Kafka clients (no broker needed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.config import parse_config
from daemon.engine import HostEngine
from daemon.kafka_io import HandOffListener
from daemon.metrics import Metrics
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from daemon.service import Service
from daemon.systemd import Notifier
from train.pipeline import TrainReport


class _Consumer:
    """Polls nothing; the first poll asks the service to stop."""

    def __init__(self) -> None:
        self.service: Service | None = None

    def poll(self, timeout_ms: int) -> dict[Any, Any]:
        assert self.service is not None
        self.service.stop_requested.set()
        return {}

    def assignment(self) -> set[Any]:
        return set()

    def close(self) -> None:
        pass


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> None:
        self.sent.append((topic, value))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _service(model: Path) -> tuple[Service, CollectorRegistry, _Producer]:
    config = parse_config({"models": [{"name": "m", "path": str(model)}]}, Path("."), env={})
    registry, consumer, producer = CollectorRegistry(), _Consumer(), _Producer()
    service = Service(
        config,
        Processor(config, {"m": HostEngine(model, 4)}),
        consumer,
        producer,
        HandOffListener(),
        Metrics(registry),
        Notifier(env={}),
    )
    consumer.service = service
    return service, registry, producer


def test_gauges_are_reported_before_any_record_arrives(machine_model: TrainReport) -> None:
    service, registry, _ = _service(machine_model.model_path)
    assert registry.get_sample_value("faultcast_active_streams", {"model": "m"}) is None
    service.run()  # one empty poll
    assert registry.get_sample_value("faultcast_active_streams", {"model": "m"}) == 0
    state_bytes = registry.get_sample_value("faultcast_state_bytes", {"device": "cpu"})
    assert state_bytes is not None and state_bytes > 0  # the table's initial capacity
    [info] = [s for m in registry.collect() if m.name == "faultcast_model" for s in m.samples]
    assert info.labels["model"] == "m" and info.labels["trained_name"] == "machine-temperature"


def test_a_stream_restarted_cold_after_an_overflow_is_counted_as_a_reset(machine_model: TrainReport) -> None:
    service, registry, producer = _service(machine_model.model_path)
    records = [
        RawRecord(
            b"m-1",
            json.dumps({"stream": "m-1", "ts": 300.0 * t, "values": {"temp_c": v}}).encode(),
            Source("faultcast.readings", 0, t),
        )
        for t, v in enumerate([70.0, 70.2, 3e38, 70.4])
    ]
    service.handle(records)
    assert registry.get_sample_value("faultcast_stream_resets_total", {"reason": "non_finite"}) == 1
    assert [topic for topic, _ in producer.sent] == ["faultcast.dead-letter"]
