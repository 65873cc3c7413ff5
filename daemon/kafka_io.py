"""Kafka edges: consumer and producer set up for at-least-once delivery, topics, dead-letter records."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import MemberToRemove, NewTopic
from kafka.errors import KafkaError, KafkaTimeoutError, NoError, TopicAlreadyExistsError, UnknownMemberIdError

from daemon.config import Config, KafkaConfig
from daemon.errors import BrokerError, UsageError
from daemon.processor import RawRecord
from daemon.records import Source

log = logging.getLogger("faultcast.kafka")
TOPIC_WAIT_S = 30.0
CLOSE_TIMEOUT_S = 30.0  # what closing a replay's producer waits for records left unacknowledged by an error
SEND_BLOCK_MS = 10_000
SENDER_STOP_S = 5.0  # a forced stop only wakes the sender's thread up: it ends at once


@dataclass(frozen=True)
class Rebalance:
    """A partition change, handed from kafka-python's network thread to the main loop."""

    kind: str  # assigned | revoked | lost
    partitions: frozenset[int]


class HandOffListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Queues rebalance events; kafka-python 3 calls these on its network thread, mid-poll."""

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Rebalance] = queue.SimpleQueue()

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.events.put(Rebalance("assigned", frozenset(tp.partition for tp in assigned)))

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.events.put(Rebalance("revoked", frozenset(tp.partition for tp in revoked)))

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.events.put(Rebalance("lost", frozenset(tp.partition for tp in lost)))


class FenceWatch(logging.Handler):
    """Notices that the group fenced this consumer's static membership (another consumer joined with the
    same group_instance_id): kafka-python only logs it, from its heartbeat thread or a failed join, and
    then polls on, busy, as if it still held its partitions."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.fenced = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        # The format string and the error's name: a group or topic id in the arguments may say anything.
        names = {str(a) for a in record.args} if isinstance(record.args, tuple) else set()
        if "fenced" in str(record.msg).lower() or "FencedInstanceIdError" in names:
            self.fenced.set()


def _options(client: type, config: KafkaConfig) -> dict[str, Any]:
    """The pass-through options this kind of client understands (config checked they exist somewhere)."""
    known = client.DEFAULT_CONFIG  # type: ignore[attr-defined]
    options = {k: v for k, v in config.client.items() if k in known}
    if isinstance(options.get("api_version"), list):  # YAML has no tuples
        options["api_version"] = tuple(options["api_version"])
    return options


def _servers(config: KafkaConfig) -> list[str]:
    return [s.strip() for s in config.bootstrap_servers.split(",") if s.strip()]


def _admin(config: KafkaConfig) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=_servers(config),
            client_id="faultcast-admin",
            **_options(KafkaAdminClient, config),
        )
    except KafkaError as exc:
        raise BrokerError(
            f"cannot reach Kafka at {config.bootstrap_servers}: {exc}; check the bootstrap servers "
            "(kafka.bootstrap_servers, `replay --bootstrap`, or KAFKA_BOOTSTRAP) and that the broker runs "
            "(scripts/kafka/broker.sh start)"
        ) from exc


def ensure_topics(config: KafkaConfig) -> None:
    """Creates the topics faultcast reads and writes if missing (single-node friendly defaults)."""
    names = [config.readings_topic, config.alerts_topic, config.dead_letter_topic]
    if config.scores_topic:
        names.append(config.scores_topic)
    admin = _admin(config)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another instance created it first
                admin.create_topics([NewTopic(n, config.topic_partitions, 1) for n in missing])
        # A consumer that joins its group before the broker serves a new topic's metadata gets an empty
        # assignment, and kafka-python may not recover from that until its next metadata refresh.
        deadline = time.monotonic() + TOPIC_WAIT_S
        while not all(
            t["error_code"] == 0 and t["partitions"] and all(p["leader_id"] >= 0 for p in t["partitions"])
            for t in admin.describe_topics(names)
        ):
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"topics {names} not ready on {config.bootstrap_servers} after {TOPIC_WAIT_S:.0f}s"
                )
            time.sleep(0.1)
    finally:
        admin.close()


def leave_group(config: KafkaConfig) -> str:
    """Takes this instance's static membership (kafka.client.group_instance_id) out of its group, so that
    its partitions move at once instead of after the session timeout: for an instance stopped for good.
    Returns what happened, in words."""
    instance = config.client.get("group_instance_id")
    if not instance:
        raise UsageError(
            "faultcast leave: kafka.client.group_instance_id is not set; an instance without one leaves "
            "its group by itself when it stops"
        )
    admin = _admin(config)
    try:
        member = MemberToRemove(group_instance_id=instance, reason="faultcast leave")
        [error] = admin.remove_group_members(config.group_id, [member]).values()
    except KafkaError as exc:
        raise BrokerError(f"cannot remove {instance!r} from group {config.group_id}: {exc}") from exc
    finally:
        admin.close()
    if error is UnknownMemberIdError:
        return f"{instance!r} is not a member of group {config.group_id} (it left, or its session ended)"
    if error is not NoError:
        raise BrokerError(f"cannot remove {instance!r} from group {config.group_id}: {error.__name__}")
    return f"{instance!r} left group {config.group_id}; its partitions go to the other members now"


def make_consumer(config: Config, listener: HandOffListener) -> KafkaConsumer:
    k = config.kafka
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=_servers(k),
            group_id=k.group_id,
            enable_auto_commit=False,
            auto_offset_reset=k.auto_offset_reset,
            max_poll_records=config.batching.max_poll_records,
            client_id="faultcast",
            # Readings of an aborted transaction were never meant to happen; kafka-python reads them by
            # default. kafka.client may set read_uncommitted.
            **{"isolation_level": "read_committed", **_options(KafkaConsumer, k)},
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {k.bootstrap_servers}: {exc}") from exc
    consumer.subscribe([k.readings_topic], listener=listener)
    return consumer


def make_producer(config: KafkaConfig) -> KafkaProducer:
    try:
        return KafkaProducer(
            bootstrap_servers=_servers(config),
            acks="all",
            linger_ms=5,
            client_id="faultcast",
            # How long send() may wait for a topic's metadata (a topic deleted while running): well under
            # the watchdog's 60 s, so that the daemon ends with its own error.
            **{"max_block_ms": SEND_BLOCK_MS, **_options(KafkaProducer, config)},
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {config.bootstrap_servers}: {exc}") from exc


def close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Closes ``producer`` after waiting up to ``timeout_s`` for its records to be acknowledged; the rest are
    dropped (they were never committed, so they are read and published again after a restart).

    kafka-python 3's close() flushes first and raises if that times out, before it stops its sender; the
    producer stays open and its destructor tries again at exit, printing a traceback under the daemon's
    own error line. A forced stop of the sender fails what is left, after which close() completes.
    """
    try:
        producer.close(timeout=timeout_s)
    except KafkaTimeoutError:
        sender = producer._sender  # no public way to force a close in kafka-python 3.0
        sender.force_close()
        sender.join(SENDER_STOP_S)
        with contextlib.suppress(KafkaTimeoutError):  # a sender that did not stop: leave it to the exit
            producer.close(timeout=0)


def to_raw(message: Any) -> RawRecord:
    headers = tuple(message.headers) if message.headers else ()
    ts = message.timestamp / 1000.0 if message.timestamp is not None and message.timestamp >= 0 else None
    return RawRecord(
        message.key, message.value, Source(message.topic, message.partition, message.offset, ts), headers
    )


def encode_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=False).encode("utf-8")
