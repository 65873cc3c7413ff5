"""A second instance joins mid-stream: no reading is lost, and the streams that stay with the first
instance go on warm through the rebalance (their alerts are those of a run with one instance)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from daemon.app import build_service
from daemon.config import Config
from daemon.errors import FencedError
from daemon.kafka_io import leave_group
from daemon.service import Service
from tests.integration.failure_replay import Uninterrupted, alerts_of, config_for
from tests.integration.harness import read_all
from train.pipeline import TrainReport

pytestmark = pytest.mark.integration


class Running:
    """A daemon on its own thread."""

    def __init__(self, config: Config) -> None:
        self.service: Service = build_service(config, CollectorRegistry())
        self.failures: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="daemon-under-test")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # reported by the test thread
            self.failures.append(exc)

    def stop(self) -> None:
        self.service.stop_requested.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive() and not self.failures, self.failures


def _send(config: Config, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=config.kafka.bootstrap_servers, acks="all", linger_ms=5)
    for key, value in records:
        producer.send(config.kafka.readings_topic, key=key, value=value)
    producer.flush()
    producer.close()


def _wait_all(first: Service, second: Service, total: int, timeout: float = 180) -> None:
    """Until the two instances together committed ``total`` records (woken by the second's commits)."""
    deadline = time.monotonic() + timeout
    while first.processed + second.processed < total:
        assert time.monotonic() < deadline, f"committed {first.processed} + {second.processed} of {total}"
        second.wait_processed(second.processed + 1, timeout=0.5)


def test_a_joining_instance_loses_nothing_and_the_staying_streams_stay_warm(
    kafka_bootstrap: str, machine_model: TrainReport, tmp_path: Path, uninterrupted: Uninterrupted
) -> None:
    produce, expected = uninterrupted
    half = len(produce) // 2

    base = config_for(kafka_bootstrap, machine_model.model_path, tmp_path / "a")
    base = replace(base, kafka=replace(base.kafka, scores_topic=base.kafka.readings_topic + ".scores"))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Running(base)
    try:
        _send(base, produce[:half])
        assert first.service.wait_processed(half, timeout=180), "the first instance did not keep up"
        second_config = replace(
            base,
            state=replace(base.state, checkpoint_dir=str(tmp_path / "b")),
            metrics=replace(base.metrics, port=0),
        )
        second = Running(second_config)
        try:
            assert second.service.wait_ready(timeout=120), "the second instance got no partition"
            _send(base, produce[half:])
            _wait_all(first.service, second.service, len(produce))
            moved = set(second.service.assigned)
            # The first instance stopped reporting lag for the partitions it gave away.
            lagging = {s.labels["partition"] for s in first.service.metrics.lag.collect()[0].samples}
            assert lagging and lagging.isdisjoint({str(p) for p in moved}), (lagging, moved)
        finally:
            second.stop()
    finally:
        first.stop()

    assert base.kafka.scores_topic is not None
    scores = [json.loads(r.value) for r in read_all(kafka_bootstrap, base.kafka.scores_topic)]
    assert {(s["stream"], s["ts"]) for s in scores} == {
        (json.loads(v)["stream"], json.loads(v)["ts"]) for _, v in produce
    }, "every reading was scored at least once"
    alerts = alerts_of(kafka_bootstrap, base)
    stayed = {
        stream
        for stream, items in expected.items()
        if all(a["source"]["partition"] not in moved for a in items)
    }
    assert moved and stayed, "the rebalance split the partitions"
    for stream in stayed:
        assert alerts.get(stream, []) == expected[stream], stream


def test_an_instance_whose_static_id_another_takes_stops_for_good(
    kafka_bootstrap: str, machine_model: TrainReport, tmp_path: Path
) -> None:
    """Two processes started with one config.yaml, and so one group_instance_id: the broker gives the
    membership to the newer one, and the older must stop (exit 3) rather than spin or fence it back."""
    base = config_for(kafka_bootstrap, machine_model.model_path, None)
    static = {"group_instance_id": "plant-a", "session_timeout_ms": 10_000, "heartbeat_interval_ms": 500}
    config = replace(base, kafka=replace(base.kafka, client=static))
    first = Running(config)
    assert first.service.wait_ready(timeout=60)
    second = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=config.kafka.group_id, **static)
    try:
        second.subscribe([config.kafka.readings_topic])
        deadline = time.monotonic() + 60
        while not second.assignment():
            assert time.monotonic() < deadline, "the second member was never given the partitions"
            second.poll(timeout_ms=500)
        first.thread.join(timeout=60)
    finally:
        second.close()
    assert not first.thread.is_alive(), "the fenced instance went on"
    assert [type(e) for e in first.failures] == [FencedError]
    assert "group_instance_id 'plant-a'" in str(first.failures[0])


def test_a_static_member_stopped_for_good_is_taken_out_of_its_group(
    kafka_bootstrap: str, machine_model: TrainReport
) -> None:
    """A static member does not leave its group when it stops (so that a restart gets its partitions back
    at once); `faultcast leave` takes it out, so the partitions move now rather than at its session's end."""
    base = config_for(kafka_bootstrap, machine_model.model_path, None)
    static = {"group_instance_id": "plant-b", "session_timeout_ms": 60_000}
    config = replace(base, kafka=replace(base.kafka, client=static))
    daemon = Running(config)
    assert daemon.service.wait_ready(timeout=60)
    daemon.stop()

    def members() -> list[str | None]:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            group = admin.describe_groups([config.kafka.group_id])[config.kafka.group_id]
            return [m["group_instance_id"] for m in group["members"]]
        finally:
            admin.close()

    assert members() == ["plant-b"], "stopped, it is still a member until its session times out"
    assert "'plant-b' left group" in leave_group(config.kafka)
    assert members() == []
    assert "is not a member" in leave_group(config.kafka)
