"""The service loop with small stand-ins for the Kafka clients (no broker needed here): metrics, health,
readiness, log volume, and what a broker that stops acknowledging does."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import CommitFailedError, CorruptRecordError, FencedInstanceIdError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from daemon.checkpoint import load
from daemon.config import parse_config
from daemon.engine import HostEngine
from daemon.errors import BrokerError, FencedError
from daemon.kafka_io import HandOffListener
from daemon.metrics import Metrics
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from daemon.service import Service
from daemon.systemd import Notifier
from tests.support import PLAIN_SCORE, model_exporter
from train.pipeline import TrainReport


class _Consumer:
    """Returns ``polls`` one per poll, then asks the service to stop (at once, without any)."""

    def __init__(self, polls: list[dict[Any, Any]] | None = None) -> None:
        self.service: Service | None = None
        self.polls = list(polls or [])
        self.commits: list[Any] = []
        self.closed = False

    def poll(self, timeout_ms: int) -> dict[Any, Any]:
        assert self.service is not None
        if self.polls:
            return self.polls.pop(0)
        self.service.stop_requested.set()
        return {}

    def assignment(self) -> set[Any]:
        return set()

    def highwater(self, tp: Any) -> None:
        return None

    def position(self, tp: Any) -> None:
        return None

    def commit(self, offsets: Any, timeout_ms: int | None = None) -> None:
        assert timeout_ms is not None, "a commit must not wait on the coordinator without a bound"
        self.commits.append(offsets)

    def close(self) -> None:
        self.closed = True


class _Sender:
    """kafka-python's sender thread: a forced stop fails the records still waiting for acknowledgement."""

    def __init__(self) -> None:
        self.forced = False

    def force_close(self) -> None:
        self.forced = True

    def join(self, timeout: float) -> None:
        pass


class _Producer:
    """Takes every record; ``acks=False`` stands for a broker that stopped acknowledging."""

    def __init__(self, acks: bool = True) -> None:
        self.acks = acks
        self._sender = _Sender()
        self.closed = False
        self.sent: list[tuple[str, bytes]] = []
        self.headers: list[dict[str, bytes]] = []
        self.flushes: list[float | None] = []
        self.closed_with: float | None = None
        self.unflushed = 0  # records sent since the last flush that returned

    def send(self, topic: str, key: bytes, value: bytes, headers: Any = None) -> Future:
        self.sent.append((topic, value))
        self.unflushed += 1
        self.headers.append(dict(headers or []))
        return Future()

    def flush(self, timeout: float | None = None) -> None:
        self.flushes.append(timeout)
        if not self.acks and not self._sender.forced:
            raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        self.unflushed = 0

    def close(self, timeout: float | None = None) -> None:
        self.closed_with = timeout
        self.flush(timeout)  # as kafka-python's does, raising when nothing is acknowledged in time
        self.closed = True


class Future:
    def failed(self) -> bool:
        return False


def _service(
    model: Path,
    consumer: _Consumer | None = None,
    producer: _Producer | None = None,
    env: dict[str, str] | None = None,
    **sections: Any,
) -> tuple[Service, CollectorRegistry, _Producer]:
    config = parse_config({"models": [{"name": "m", "path": str(model)}], **sections}, Path("."), env={})
    registry, consumer, producer = CollectorRegistry(), consumer or _Consumer(), producer or _Producer()
    service = Service(
        config,
        Processor(config, {"m": HostEngine(model, 4)}),
        consumer,
        producer,
        HandOffListener(),
        Metrics(registry),
        Notifier(env=env or {}),
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


def test_every_counter_series_is_exported_at_zero_before_it_counts(machine_model: TrainReport) -> None:
    # Prometheus's increase() takes a series' first sample as its start: a series that appeared at its
    # first increment would hide that increment (a rare fault alert, the first dead letter).
    _, registry, _ = _service(machine_model.model_path)
    zero = {
        ("faultcast_records_rejected_total", (("reason", "malformed_json"),)),
        ("faultcast_records_rejected_total", (("reason", "non_finite_score"),)),
        ("faultcast_readings_dropped_total", (("reason", "out_of_order"),)),
        ("faultcast_stream_resets_total", (("reason", "model_reload"),)),
        ("faultcast_readings_scored_total", (("model", "m"),)),
        ("faultcast_readings_faster_than_trained_total", (("model", "m"),)),
        ("faultcast_inference_batch_size_count", (("model", "m"),)),
        ("faultcast_model_reloads_total", (("model", "m"), ("result", "failed"))),
        ("faultcast_alerts_total", (("kind", "fault"), ("severity", "critical"), ("state", "firing"))),
        ("faultcast_alerts_total", (("kind", "fault"), ("severity", "warning"), ("state", "resolved"))),
    }
    for name, labels in zero:
        assert registry.get_sample_value(name, dict(labels)) == 0, (name, labels)
    # The demo model has no congestion head: no congestion series.
    assert (
        registry.get_sample_value(
            "faultcast_alerts_total", {"kind": "congestion", "severity": "warning", "state": "firing"}
        )
        is None
    )


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
    assert producer.headers[0]["errors.stage"] == b"score"


def test_readings_faster_than_the_model_was_trained_on_are_counted(machine_model: TrainReport) -> None:
    service, registry, _ = _service(machine_model.model_path)
    records = [
        RawRecord(
            b"m-1",
            json.dumps({"stream": "m-1", "ts": 60.0 * t, "values": {"temp_c": 70.0}}).encode(),
            Source("faultcast.readings", 0, t),
        )
        for t in range(5)
    ]  # every minute, to a model trained on 5-minute readings
    service.handle(records)
    assert registry.get_sample_value("faultcast_readings_faster_than_trained_total", {"model": "m"}) == 4
    assert registry.get_sample_value("faultcast_readings_scored_total", {"model": "m"}) == 5


def _message(offset: int, value: float) -> SimpleNamespace:
    body = json.dumps({"stream": "m-1", "ts": 300.0 * offset, "values": {"temp_c": value}}).encode()
    return SimpleNamespace(
        topic="faultcast.readings",
        partition=0,
        offset=offset,
        timestamp=None,
        key=b"m-1",
        value=body,
        headers=[],
    )


def test_a_broker_that_stops_acknowledging_ends_the_run_with_a_broker_error_and_no_commit(
    machine_model: TrainReport,
) -> None:
    consumer = _Consumer(
        [{TopicPartition("faultcast.readings", 0): [_message(t, 70.0 + t) for t in range(3)]}]
    )
    service, _, producer = _service(
        machine_model.model_path, consumer, _Producer(acks=False), kafka={"commit_interval_ms": 0}
    )
    with pytest.raises(BrokerError, match=r"did not acknowledge published records within 30s.*read again"):
        service.run()
    # Bounded, and not waited on a second time on the way out: close(0) fails, the sender is stopped by
    # force, and close(0) then completes.
    assert producer.flushes == [30.0, 0, 0] and producer._sender.forced
    assert consumer.commits == [] and service.processed == 0
    assert consumer.closed and producer.closed and producer.closed_with == 0


def test_a_normal_stop_flushes_within_the_bound_and_commits(machine_model: TrainReport) -> None:
    consumer = _Consumer(
        [{TopicPartition("faultcast.readings", 0): [_message(t, 70.0 + t) for t in range(3)]}]
    )
    service, _, producer = _service(machine_model.model_path, consumer, kafka={"commit_interval_ms": 0})
    service.run()
    assert producer.flushes and all(timeout == 30.0 for timeout in producer.flushes)
    [offsets] = consumer.commits
    assert [o.offset for o in offsets.values()] == [3] and service.processed == 3
    assert producer.closed and producer.closed_with == 30.0 and not producer._sender.forced


def test_health_says_why_it_is_not_ready_or_stalled(machine_model: TrainReport) -> None:
    service, _, _ = _service(machine_model.model_path)
    healthy, why = service.health()
    assert not healthy and why.startswith("not ready: no partitions assigned")
    service.assigned = {0}
    assert service.health() == (True, "ready")
    service._last_turn -= 61.0  # the loop last came round a minute ago
    healthy, why = service.health()
    assert not healthy and why.startswith("stalled: the processing loop last came round 61s ago")


@contextlib.contextmanager
def _systemd(tmp_path: Path) -> Iterator[tuple[dict[str, str], socket.socket]]:
    """A notify socket as systemd provides one: the environment that names it, and its receiving end."""
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.settimeout(5)
        yield {"NOTIFY_SOCKET": address}, receiver


def test_a_standby_with_no_partitions_tells_systemd_it_is_ready_once(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    with _systemd(tmp_path) as (env, receiver):
        service, registry, _ = _service(machine_model.model_path, _Consumer([{}, {}]), env=env)
        service.listener.on_partitions_assigned(set())
        service.listener.on_partitions_assigned(set())  # a second rebalance: no second READY
        service.run()
        messages = [receiver.recv(4096).decode()]
        receiver.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            messages.append(receiver.recv(4096).decode())
    assert messages == ["READY=1\nSTATUS=standby, no partitions"]
    assert registry.get_sample_value("faultcast_ready") == 0.0  # /healthz still says not ready


def test_systemd_hears_of_each_change_in_the_instances_share(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """kafka-python may first assign nothing (the topic's metadata is not in yet), then the partition."""
    with _systemd(tmp_path) as (env, receiver):
        service, _, _ = _service(machine_model.model_path, _Consumer([{}]), env=env)
        service.listener.on_partitions_assigned(set())
        service.listener.on_partitions_revoked(set())
        service.listener.on_partitions_assigned({TopicPartition("faultcast.readings", 0)})
        service.run()
        messages = [receiver.recv(4096).decode(), receiver.recv(4096).decode()]
    assert messages == ["READY=1\nSTATUS=standby, no partitions", "STATUS=scoring partitions [0]"]


def test_a_long_wait_for_partitions_says_once_what_it_waits_for(
    machine_model: TrainReport, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """After a kill the group waits out the dead member's session (45 s) before it assigns anything."""
    clock = iter(range(0, 10_000, 4))
    monkeypatch.setattr("daemon.service.time.monotonic", lambda: float(next(clock)))
    service, _, _ = _service(machine_model.model_path, _Consumer([{}] * 8))
    with caplog.at_level(logging.INFO, logger="faultcast.service"):
        service.run()
    waits = [r for r in caplog.records if r.getMessage().startswith("waiting for the consumer group")]
    assert len(waits) == 1 and "session_timeout_ms" in waits[0].getMessage()


def test_rejected_records_are_logged_within_a_budget_and_the_rest_counted(
    machine_model: TrainReport, caplog: pytest.LogCaptureFixture
) -> None:
    service, registry, producer = _service(machine_model.model_path)
    bad = [RawRecord(b"m-1", b"{not json", Source("faultcast.readings", 0, offset)) for offset in range(25)]
    with caplog.at_level(logging.INFO, logger="faultcast.service"):
        service.handle(bad)
        lines = [r for r in caplog.records if r.getMessage() == "record rejected"]
        assert [r.offset for r in lines] == list(range(10))  # type: ignore[attr-defined]
        assert not [r for r in caplog.records if r.getMessage().startswith("more rejected")]
        service.run()  # no more records; stopping reports what the window held back
    [summary] = [r for r in caplog.records if r.getMessage().startswith("more rejected records")]
    assert (summary.reason, summary.not_logged) == ("malformed_json", 15)  # type: ignore[attr-defined]
    assert summary.levelno == logging.WARNING
    assert len(producer.sent) == 25  # every record still goes to the dead-letter topic
    assert registry.get_sample_value("faultcast_records_rejected_total", {"reason": "malformed_json"}) == 25


def test_an_instance_that_gets_partitions_tells_systemd_so_after_the_first_empty_revocation(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """kafka-python 3 revokes nothing before a first assignment: READY must wait for the assignment."""
    with _systemd(tmp_path) as (env, receiver):
        service, _, _ = _service(machine_model.model_path, _Consumer([{}]), env=env)
        service.listener.on_partitions_revoked(set())
        service.listener.on_partitions_assigned({TopicPartition("faultcast.readings", 0)})
        service.run()
        assert receiver.recv(4096).decode() == "READY=1\nSTATUS=scoring partitions [0]"


def test_a_record_the_client_cannot_parse_ends_the_run_with_what_to_do(machine_model: TrainReport) -> None:
    class Corrupt(_Consumer):
        def poll(self, timeout_ms: int) -> dict[Any, Any]:
            raise CorruptRecordError("Record for partition 0 at offset 7 failed crc check")

    service, _, _ = _service(machine_model.model_path, Corrupt())
    with pytest.raises(BrokerError, match=r"offset 7 failed crc check.*move group faultcast past it"):
        service.run()


def test_an_instance_fenced_by_another_with_its_static_id_stops_for_good(machine_model: TrainReport) -> None:
    """kafka-python only logs a fence seen by its heartbeat, then polls on as if it held its partitions."""

    class Fenced(_Consumer):
        def poll(self, timeout_ms: int) -> dict[Any, Any]:
            logging.getLogger("kafka.coordinator.heartbeat").error(
                "Heartbeat thread caught fenced group_instance_id %s error", "plant-a"
            )
            return super().poll(timeout_ms)

    # a dynamic member cannot be fenced: a line that only names a group called so is not a fence
    service, _, _ = _service(machine_model.model_path, Fenced([{}, {}]))
    service.run()
    client = {"client": {"group_instance_id": "plant-a"}}
    service, _, _ = _service(machine_model.model_path, Fenced([{}, {}]), kafka=client)
    with pytest.raises(FencedError, match=r"group_instance_id 'plant-a'\) to another running consumer"):
        service.run()

    class FencedAtJoin(_Consumer):
        def poll(self, timeout_ms: int) -> dict[Any, Any]:
            raise FencedInstanceIdError()

    service, _, _ = _service(machine_model.model_path, FencedAtJoin(), kafka=client)
    with pytest.raises(FencedError):
        service.run()

    class FencedAtCommit(_Consumer):
        def commit(self, offsets: Any, timeout_ms: int | None = None) -> None:
            raise FencedInstanceIdError()

    service, _, _ = _service(machine_model.model_path, FencedAtCommit(), kafka=client)
    service.handle([RawRecord(b"m-1", b"{", Source("faultcast.readings", 0, 0))])
    with pytest.raises(FencedError):
        service.run()


def test_an_error_of_its_own_is_not_hidden_behind_a_wait_on_the_broker(machine_model: TrainReport) -> None:
    class Failing(_Consumer):
        def poll(self, timeout_ms: int) -> dict[Any, Any]:
            raise RuntimeError("the device fell off the bus")

    service, _, producer = _service(machine_model.model_path, Failing(), _Producer(acks=False))
    with pytest.raises(RuntimeError, match="device fell off"):
        service.run()
    assert producer.flushes == [0, 0]  # only kafka-python's own flush inside close(timeout=0), twice
    assert producer.closed


READINGS_0 = TopicPartition("faultcast.readings", 0)


class _Scripted(_Consumer):
    """A consumer in a group, as kafka-python 3 behaves: partitions assigned by the test, commits kept as
    the group's committed offsets, offset lookups that must be bounded (unbounded, kafka-python waits on
    the coordinator for as long as it takes) and time out during an ``outage``. Its ``n``-th poll runs
    ``on_poll[n]`` first (the group rebalancing, a commit refused, a model replaced)."""

    def __init__(self, polls: list[dict[Any, Any]], on_poll: dict[int, Any] | None = None) -> None:
        super().__init__(polls)
        self.on_poll = on_poll or {}
        self.polled = 0
        self.refuse_commits = 0
        self.outage = False
        self.owned: set[TopicPartition] = set()
        self.group: dict[TopicPartition, int] = {}  # committed offsets
        self.tags: dict[TopicPartition, str] = {}  # and their metadata
        self.seeks: list[tuple[TopicPartition, int]] = []

    def poll(self, timeout_ms: int) -> dict[Any, Any]:
        self.polled += 1
        if self.polled in self.on_poll:
            self.on_poll[self.polled]()
        return super().poll(timeout_ms)

    def commit(self, offsets: Any, timeout_ms: int | None = None) -> None:
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise CommitFailedError("the group has already rebalanced")
        super().commit(offsets, timeout_ms)
        self.group.update({tp: o.offset for tp, o in offsets.items()})
        self.tags.update({tp: o.metadata for tp, o in offsets.items()})

    def assignment(self) -> set[Any]:
        return set(self.owned)

    def _lookup(self, timeout_ms: int | None) -> None:
        assert timeout_ms is not None, "unbounded: kafka-python would wait on the coordinator"
        if self.outage:
            raise KafkaTimeoutError(f"Failed to get offsets in {timeout_ms} ms")

    def committed(self, tp: Any, metadata: bool = False, timeout_ms: int | None = None) -> Any:
        self._lookup(timeout_ms)
        found = self.group.get(tp)
        if found is None or not metadata:
            return found
        return OffsetAndMetadata(found, self.tags[tp], -1)

    def beginning_offsets(self, tps: Any, timeout_ms: int | None = None) -> dict[Any, int]:
        self._lookup(timeout_ms)
        return dict.fromkeys(tps, 0)

    def position(self, tp: Any, timeout_ms: int | None = None) -> None:
        self._lookup(timeout_ms)

    def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))

    def rebalance(self, revoked: str | None, assigned: set[int] | None) -> None:
        """The group takes partitions back (``revoked`` or ``lost``) and/or assigns these."""
        if revoked is not None:
            taken = set(self.owned)
            self.owned = set()
            assert self.service is not None
            handler = self.service.listener
            (handler.on_partitions_revoked if revoked == "revoked" else handler.on_partitions_lost)(taken)
        if assigned is not None:
            self.owned = {TopicPartition("faultcast.readings", p) for p in assigned}
            assert self.service is not None
            self.service.listener.on_partitions_assigned(set(self.owned))


def _start(consumer: _Scripted, *partitions: int) -> None:
    consumer.rebalance(None, set(partitions))


def _checkpointing(tmp_path: Path) -> dict[str, Any]:
    return {"checkpoint_dir": str(tmp_path), "checkpoint_interval_s": 1e-9}


def test_a_checkpoint_is_not_restored_once_another_instance_has_committed_after_it(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """The partition went to another instance, which scored on and committed; this instance's old
    checkpoint is still within the replay limit. Restored, it would score those records again and raise
    their alerts a second time, late; the commit's tag says someone else went on from it."""

    def first_run() -> _Scripted:
        consumer = _Scripted([{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}])
        _service(
            machine_model.model_path,
            consumer,
            kafka={"commit_interval_ms": 0},
            state=_checkpointing(tmp_path),
        )
        _start(consumer, 0)
        assert consumer.service is not None
        consumer.service.run()
        return consumer

    def restart(group: dict[TopicPartition, int], tags: dict[TopicPartition, str]) -> float | None:
        consumer = _Scripted([])
        consumer.group, consumer.tags = dict(group), dict(tags)
        _, registry, _ = _service(machine_model.model_path, consumer, state=_checkpointing(tmp_path))
        _start(consumer, 0)
        assert consumer.service is not None
        consumer.service.run()
        return registry.get_sample_value("faultcast_streams_restored_total")

    ours = first_run()
    assert restart(ours.group, ours.tags) == 1  # nobody else committed: the restart restores it
    assert restart({READINGS_0: 5}, {READINGS_0: "another-instance"}) == 0


def test_a_crash_soon_after_a_restore_still_restores(machine_model: TrainReport, tmp_path: Path) -> None:
    """A restored run's first commit carries its own tag, which the checkpoint on disk does not expect:
    a checkpoint follows that commit at once, so a crash before the next interval still finds one."""
    state = {"checkpoint_dir": str(tmp_path), "checkpoint_interval_s": 3600.0}
    group: dict[TopicPartition, int] = {}
    tags: dict[TopicPartition, str] = {}
    restored = []
    for run, crash in enumerate([False, True, False]):
        # the first poll applies the assignment (a partition rewound to a checkpoint drops that poll)
        records = [_message(t, 70.0 + t) for t in range(3 * run, 3 * run + 3)]
        consumer = _Scripted([{}, {READINGS_0: records}])
        consumer.group, consumer.tags = group, tags
        if crash:
            consumer.on_poll = {3: lambda: (_ for _ in ()).throw(RuntimeError("killed"))}
        service, registry, _ = _service(
            machine_model.model_path, consumer, kafka={"commit_interval_ms": 0}, state=state
        )
        _start(consumer, 0)
        with contextlib.suppress(RuntimeError) if crash else contextlib.nullcontext():
            service.run()
        restored.append(registry.get_sample_value("faultcast_streams_restored_total"))
    assert group == {READINGS_0: 9}
    # run 1 starts cold and leaves a checkpoint at 3; run 2 restores it, commits 6, writes the
    # checkpoint of that commit at once and dies; run 3 restores that one
    assert restored == [0, 1, 1]
    assert [offset for tp, offset in consumer.seeks] == [6]


def _member(
    model: Path,
    group: tuple[dict[TopicPartition, int], dict[TopicPartition, str]],
    polls: list[dict[Any, Any]],
    folder: Path | None,
    commit_ms: int,
) -> tuple[_Scripted, Service, CollectorRegistry]:
    """One instance of a consumer group whose committed offsets and tags are ``group``."""
    consumer = _Scripted(polls)
    consumer.group, consumer.tags = group
    state = {} if folder is None else _checkpointing(folder)
    service, registry, _ = _service(model, consumer, kafka={"commit_interval_ms": commit_ms}, state=state)
    return consumer, service, registry


def _readings(first: int, end: int) -> dict[Any, Any]:
    return {READINGS_0: [_message(t, 70.0 + t) for t in range(first, end)]}


def test_an_instance_never_restores_over_another_ones_later_commits(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """Found by review: a snapshot parked before this instance's first commit of a partition expects the
    tag another instance committed with, and that tag must not become one this instance commits under,
    or the other instance's old checkpoint would match this one's commits."""
    model, group = machine_model.model_path, ({}, {})
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    b, service_b, _ = _member(model, group, [_readings(0, 3)], tmp_path / "b", 0)
    _start(b, 0)
    service_b.run()  # B commits 3 and leaves a checkpoint at 3
    a, service_a, _ = _member(model, group, [_readings(3, 6), {}, _readings(6, 9)], tmp_path / "a", 3_600_000)
    a.on_poll = {2: lambda: a.rebalance("revoked", {0})}  # an eager rebalance gives it straight back
    _start(a, 0)
    service_a.run()
    assert group[0] == {READINGS_0: 9}
    b, service_b, registry_b = _member(model, group, [{}], tmp_path / "b", 0)
    _start(b, 0)
    service_b.run()  # B again: its checkpoint at 3 is from before A's commits
    assert registry_b.get_sample_value("faultcast_streams_restored_total") == 0


def test_a_parked_snapshot_is_not_restored_once_another_instance_committed_past_it(
    machine_model: TrainReport,
) -> None:
    """Found by review: without checkpoint files the tag at the first assignment is not looked up; a
    commit past the snapshot still tells that another instance read on."""
    model, group = machine_model.model_path, ({READINGS_0: 0}, {READINGS_0: "previous-run"})

    def taken_then_given_back() -> None:
        a.rebalance("revoked", None)  # A parks its snapshot at 3, uncommitted
        b, service_b, _ = _member(model, group, [_readings(0, 6)], None, 0)
        _start(b, 0)
        service_b.run()  # B reads 0-5 and commits 6
        a.rebalance(None, {0})

    a, service_a, registry = _member(model, group, [_readings(0, 3), {}, {}], None, 3_600_000)
    a.on_poll = {2: taken_then_given_back}
    _start(a, 0)
    service_a.run()
    assert registry.get_sample_value("faultcast_streams_restored_total") == 0


def test_a_partition_given_back_before_its_first_commit_resumes_without_checkpoint_files(
    machine_model: TrainReport,
) -> None:
    """Without a checkpoint folder the commit of a partition is not looked up at its first assignment;
    its parked snapshot must still be restored when an eager rebalance gives it straight back."""
    consumer = _Scripted([{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}, {}])
    consumer.group, consumer.tags = {READINGS_0: 0}, {READINGS_0: "previous-run"}
    consumer.on_poll = {2: lambda: consumer.rebalance("revoked", {0})}
    service, registry, _ = _service(machine_model.model_path, consumer, kafka={"commit_interval_ms": 60_000})
    _start(consumer, 0)
    service.run()
    assert registry.get_sample_value("faultcast_streams_restored_total") == 1


def test_a_refused_commit_leaves_the_checkpoint_of_the_last_commit_on_disk(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """After an outage the group may have gone on without this instance: its commit is refused, and the
    records since the last commit are read again from there. The checkpoint must still match that
    commit, or the streams could not be restored and would start cold."""
    consumer = _Scripted(
        [{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}, {READINGS_0: [_message(3, 73.0)]}],
    )
    consumer.on_poll = {2: lambda: setattr(consumer, "refuse_commits", 1)}
    service, registry, _ = _service(
        machine_model.model_path, consumer, kafka={"commit_interval_ms": 0}, state=_checkpointing(tmp_path)
    )
    _start(consumer, 0)
    service.run()
    assert service.checkpoints.path is not None
    assert load(service.checkpoints.path).offsets == {0: 3}  # not 4: offset 3 was never committed
    assert consumer.group == {READINGS_0: 3}
    assert registry.get_sample_value("faultcast_offset_commits_refused_total") == 1
    assert registry.get_sample_value("faultcast_checkpoints_written_total") == 1
    assert service.processed == 4  # handled: the group decides who reads offset 3 again


def test_partitions_revoked_and_given_back_resume_from_their_snapshot_and_commit_it(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """An eager rebalance takes every partition back and gives most of them back. Records scored before
    it but not committed are not read again (the snapshot parked at the revoke holds them), so this
    instance must commit past them, and only then checkpoint."""
    consumer = _Scripted([{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}, {}])
    consumer.on_poll = {2: lambda: consumer.rebalance("revoked", {0})}
    service, registry, _ = _service(
        machine_model.model_path,
        consumer,
        kafka={"commit_interval_ms": 3_600_000},
        state=_checkpointing(tmp_path),
    )
    _start(consumer, 0)
    service.run()
    assert consumer.seeks == [(READINGS_0, 3)]
    assert registry.get_sample_value("faultcast_streams_restored_total") == 1
    assert consumer.group == {READINGS_0: 3}
    assert service.checkpoints.path is not None
    assert load(service.checkpoints.path).offsets == {0: 3}


def test_no_checkpoint_is_written_between_losing_partitions_and_getting_them_back(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """A session that expired shows as lost partitions, and the group may take more than a poll to
    assign them again: a checkpoint written in between would hold none of them, and they would start
    cold."""
    consumer = _Scripted([{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}, {}, {}])
    consumer.on_poll = {2: lambda: consumer.rebalance("lost", None), 3: lambda: consumer.rebalance(None, {0})}
    service, registry, _ = _service(
        machine_model.model_path, consumer, kafka={"commit_interval_ms": 0}, state=_checkpointing(tmp_path)
    )
    _start(consumer, 0)
    service.run()
    assert consumer.seeks == [(READINGS_0, 3)]
    assert registry.get_sample_value("faultcast_streams_restored_total") == 1
    assert service.checkpoints.path is not None
    assert load(service.checkpoints.path).models["m"].streams == ["m-1"]


def test_offsets_of_a_revoked_partition_are_left_to_its_new_owner(machine_model: TrainReport) -> None:
    """A commit from here after the partition moved would be accepted by the broker and could move its
    new owner's committed offset back."""
    readings_1 = TopicPartition("faultcast.readings", 1)
    moved = SimpleNamespace(**{**vars(_message(0, 70.0)), "partition": 1})
    consumer = _Scripted([{READINGS_0: [_message(0, 70.0)], readings_1: [moved]}, {}])
    consumer.on_poll = {2: lambda: consumer.rebalance("revoked", {0})}
    service, _, _ = _service(machine_model.model_path, consumer, kafka={"commit_interval_ms": 3_600_000})
    _start(consumer, 0, 1)
    service.run()
    [offsets] = consumer.commits  # the commit at the stop
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 1}
    assert service.processed == 2


def test_a_broker_gone_while_lag_is_read_does_not_stop_the_loop(machine_model: TrainReport) -> None:
    consumer = _Scripted([{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}])
    service, registry, _ = _service(machine_model.model_path, consumer, kafka={"commit_interval_ms": 0})
    _start(consumer, 0)
    consumer.outage = True
    service.run()
    assert service.processed == 3
    lag = {"topic": "faultcast.readings", "partition": "0"}
    assert registry.get_sample_value("faultcast_consumer_lag_records", lag) is None


def test_offsets_that_cannot_be_read_to_restore_streams_end_the_run_with_a_broker_error(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    consumer = _Scripted([{}])
    service, _, _ = _service(machine_model.model_path, consumer, state={"checkpoint_dir": str(tmp_path)})
    consumer.outage = True
    _start(consumer, 0)
    refusal = r"cannot read the committed and earliest offsets of partitions \[0\] within 40s"
    with pytest.raises(BrokerError, match=refusal):
        service.run()


def test_alerts_a_model_reload_ends_are_resolved_without_waiting_for_another_record(tmp_path: Path) -> None:
    """A reload that changes what the fault score means resolves the alerts it raised. With no record
    after it (a quiet line, or a stop), the resolutions must still go out, and the checkpoint must not
    keep the alerts firing."""
    live = tmp_path / "live.onnx"
    export, plain = model_exporter(live), PLAIN_SCORE
    export(plain, "1")
    wild = [_message(t, 70.0 + 30 * (-1) ** t) for t in range(3)]
    consumer = _Scripted([{READINGS_0: wild}, {}])

    firing_before_reload = []

    def replace_model() -> None:
        firing_before_reload.append(registry.get_sample_value("faultcast_alerts_firing", fault))
        export(replace(plain, peak_half_life=50.0), "2")
        service.reloader.requested.set()  # SIGHUP

    consumer.on_poll = {2: replace_model}
    fault = {"model": "m", "kind": "fault"}
    service, registry, producer = _service(
        live,
        consumer,
        alerting={"fault": {"fire_after": 1}},
        kafka={"commit_interval_ms": 0},
        state=_checkpointing(tmp_path),
    )
    # A checkpoint says the resolutions are out: the broker must have acknowledged them before.
    unflushed_at_checkpoints = []
    write = service.checkpoints.write

    def checkpoint_after_flush(checkpoint: Any) -> None:
        unflushed_at_checkpoints.append(producer.unflushed)
        write(checkpoint)

    service.checkpoints.write = checkpoint_after_flush  # type: ignore[method-assign]
    _start(consumer, 0)
    service.run()
    assert len(unflushed_at_checkpoints) == 2 and not any(unflushed_at_checkpoints)
    alerts = [json.loads(value) for topic, value in producer.sent if topic == "faultcast.alerts"]
    [fired] = {a["id"] for a in alerts if a["state"] == "firing"}
    assert [(a["id"], a["resolution"]) for a in alerts if a["state"] == "resolved"] == [
        (fired, "model_reload")
    ]
    assert firing_before_reload == [1.0] and registry.get_sample_value("faultcast_alerts_firing", fault) == 0
    assert registry.get_sample_value("faultcast_alerts_firing", {"model": "m", "kind": "congestion"}) == 0
    assert service.checkpoints.path is not None
    snapshot = load(service.checkpoints.path).models["m"]
    assert snapshot.alerts == {"fault": {}} and snapshot.streams == ["m-1"]


def test_a_checkpoint_that_cannot_be_written_does_not_stop_scoring(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    """A checkpoint only spares a restart its cold start: when the folder goes away, the daemon says so
    and goes on scoring and committing."""
    folder = tmp_path / "state"
    folder.mkdir()

    def lose_folder() -> None:
        shutil.rmtree(folder)
        folder.write_text("")  # a file where the folder was: no write there can succeed, root or not

    consumer = _Scripted(
        [{READINGS_0: [_message(t, 70.0 + t) for t in range(3)]}, {READINGS_0: [_message(3, 73.0)]}],
        on_poll={2: lose_folder},
    )
    service, registry, _ = _service(
        machine_model.model_path, consumer, kafka={"commit_interval_ms": 0}, state=_checkpointing(folder)
    )
    _start(consumer, 0)
    service.run()
    assert consumer.group == {READINGS_0: 4} and service.processed == 4
    assert registry.get_sample_value("faultcast_checkpoints_written_total") == 1  # before the loss
    failures = registry.get_sample_value("faultcast_checkpoint_failures_total")
    assert failures is not None and failures >= 1
