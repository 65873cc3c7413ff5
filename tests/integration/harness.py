"""Runs the real daemon against the test broker and reads topics back to their end."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client import CollectorRegistry

from daemon.app import build_service
from daemon.config import Config, parse_config
from daemon.service import Service
from tests.support import REPO


def daemon_config(
    bootstrap: str,
    model: Path,
    streams: tuple[str, ...] = ("*",),
    scores: bool = False,
    more_models: tuple[tuple[str, Path, tuple[str, ...]], ...] = (),
) -> Config:
    """Unique topics and group per call, metrics on a free port; ``scores`` adds a scores topic.

    ``model`` is named machine-temperature; ``more_models`` adds (name, path, stream patterns).
    """
    run = uuid.uuid4().hex[:10]
    names = (
        ("readings", "alerts", "dead_letter", "scores") if scores else ("readings", "alerts", "dead_letter")
    )
    topics = {f"{name}_topic": f"t.{run}.{name}" for name in names}
    data = {
        "kafka": {"bootstrap_servers": bootstrap, "group_id": f"g.{run}", **topics},
        "models": [
            {"name": "machine-temperature", "path": str(model), "streams": list(streams)},
            *({"name": n, "path": str(p), "streams": list(s)} for n, p, s in more_models),
        ],
        "metrics": {"port": 0},
    }
    return parse_config(data, Path("."), env={})


@dataclass(frozen=True)
class Unchecked:
    """A record as other clients (Java's, librdkafka) may write it and kafka-python's send() refuses: no
    key and no value, null header values, no timestamp (-1)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_ms: int | None = None


def _send_unchecked(producer: KafkaProducer, bootstrap: str, topic: str, record: Unchecked) -> None:
    """Appends ``record`` to partition 0 past send()'s checks: the bytes reach the broker as they are.

    kafka-python cannot write a null header value at all; Java's client, from the broker's own jars, does."""
    if any(value is None for _, value in record.headers):
        producer.flush()  # what came before goes first
        fields = [record.key, record.value, *(part for header in record.headers for part in header)]
        line = "\t".join("\\N" if f is None else f if isinstance(f, str) else f.decode() for f in fields)
        libs = REPO / ".cache" / "kafka" / "libs"
        source = Path(__file__).parent / "java" / "ProduceRaw.java"
        subprocess.run(
            ["java", "-cp", f"{libs}/*", str(source), bootstrap, topic],
            input=line + "\n", text=True, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        return
    producer.partitions_for(topic)  # the metadata send() would have waited for
    producer._accumulator.append(
        TopicPartition(topic, 0), record.timestamp_ms, record.key, record.value, list(record.headers)
    )
    producer._sender.wakeup()


def run_daemon(
    config: Config,
    produce: Sequence[tuple[bytes | None, bytes] | Unchecked],
    timeout: float = 180,
    expect: int | None = None,
) -> Service:
    """Starts the daemon, publishes ``produce`` to its readings topic, and stops it once all (or
    ``expect`` records, where records were there before) are committed."""
    service = build_service(config, CollectorRegistry())
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            service.run()
        except BaseException as exc:  # handed to the test thread, which fails with it
            failures.append(exc)

    worker = threading.Thread(target=serve, name="daemon-under-test")
    worker.start()
    try:
        producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all", linger_ms=5)
        for record in produce:
            if isinstance(record, Unchecked):
                _send_unchecked(producer, config.kafka.bootstrap_servers, config.kafka.readings_topic, record)
            else:
                producer.send(config.kafka.readings_topic, key=record[0], value=record[1])
        producer.flush()
        producer.close()
        deadline = time.monotonic() + timeout
        count = len(produce) if expect is None else expect
        while not service.wait_processed(count, timeout=1.0):
            assert not failures, f"the daemon stopped with {failures[0]!r}"
            assert time.monotonic() < deadline, f"daemon committed {service.processed}/{count}"
    finally:
        service.stop_requested.set()
        worker.join(timeout=60)
    assert not worker.is_alive(), "daemon did not stop within 60 s of the stop request"
    assert not failures, f"the daemon stopped with {failures[0]!r}"
    return service


def read_all(bootstrap: str, topic: str, timeout: float = 60) -> list[ConsumerRecord]:
    """Every record of ``topic`` from the start to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end in {timeout}s"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def by_stream(alerts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each stream's alerts in order, without the readings topic (it differs between runs)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        out.setdefault(alert["stream"], []).append({**alert, "source": {**alert["source"], "topic": None}})
    return out
