"""The daemon's main loop: poll, score, publish, wait for acknowledgements, commit; metrics and systemd."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any, Literal

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    CommitFailedError,
    CorruptRecordError,
    FencedInstanceIdError,
    KafkaError,
    KafkaTimeoutError,
    RebalanceInProgressError,
)
from kafka.structs import OffsetAndMetadata

from daemon.checkpoint import Checkpoints, restore, take
from daemon.config import Config
from daemon.errors import BrokerError, FencedError
from daemon.kafka_io import FenceWatch, HandOffListener, Rebalance, close_producer, to_raw
from daemon.log_budget import LogBudget
from daemon.metrics import Metrics
from daemon.outcome_metrics import count_outcome, model_info, state_gauges
from daemon.processor import Processor, RawRecord
from daemon.publisher import log_held_back, publish
from daemon.reloader import ModelReloader
from daemon.systemd import Notifier

log = logging.getLogger("faultcast.service")

# How long the broker gets to acknowledge what was published. Under the systemd watchdog's 60 s, so that a
# broker outage ends the process with an error (and systemd restarts it) instead of a loop blocked for good.
FLUSH_TIMEOUT_S = 30.0
# How long an offset commit may wait on the group coordinator before it is retried after the next poll.
COMMIT_TIMEOUT_MS = 10_000
# How long the offset lookups that restore newly assigned partitions may take in all. Right after an
# outage kafka-python may take most of its reconnect backoff (30 s at most by default) to reach the broker
# again; the watchdog is fed between lookups, and a longer outage ends the run with its own error.
RESUME_TIMEOUT_S = 40.0
# A first assignment that takes longer than this is worth a line in the log (what it waits for).
WAIT_NOTICE_S = 10.0
# /healthz calls a loop that has not come round for this long stalled, as the unit's WatchdogSec does: a
# poll, a wave, a flush and a commit (bounded above) and a checkpoint each take well under it.
STALL_AFTER_S = 60.0


class Service:
    def __init__(
        self,
        config: Config,
        processor: Processor,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        listener: HandOffListener,
        metrics: Metrics,
        notifier: Notifier,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.processor = processor
        self.consumer = consumer
        self.producer = producer
        self.listener = listener
        self.metrics = metrics
        self.notifier = notifier
        self.on_alert = on_alert
        self.stop_requested = threading.Event()
        self.reloader = ModelReloader(config, processor, metrics, lambda: model_info(metrics, processor))
        self.assigned: set[int] = set()
        # records handled and done with: committed, or left to a rebalance (one read again counts again)
        self.processed = 0
        self._unacked: list[Any] = []  # futures of records published since the last commit
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self._uncommitted_count = 0
        self._last_commit = time.monotonic()
        self._progress = threading.Condition()
        self.http_server: ThreadingHTTPServer | None = None
        self._announced_ready = threading.Event()
        self._joined = False  # the consumer group assigned this instance its share (maybe none) once
        self._status = ""  # the share systemd was last told of
        self._last_turn = time.monotonic()
        self._log_budget = LogBudget()
        model_info(metrics, processor)
        self.positions: dict[int, int] = {}  # partition -> next offset, for what was processed
        self.checkpoints = Checkpoints(config)
        self._checkpointed: dict[int, int] | None = {}  # the offsets on disk; None: state moved since
        # This run's offset commits carry its tag in their metadata. _commit_tags holds the tag of each
        # partition's last commit as far as this run knows (its own, or the one looked up when the
        # partition came); a checkpoint keeps it, and is restored only while the group's commit still
        # carries it (Checkpoints.plan). A commit that changes a partition's tag is followed by a
        # checkpoint at once: until then the one on disk expects the old tag, and a crash starts cold.
        self._run_tag = uuid.uuid4().hex
        self._commit_tags: dict[int, str] = {}
        self._retagged = False
        # From a rebalance's start (a revoke, a loss, or a commit the group refused) until it has assigned
        # the partitions again, what this instance holds may not match the committed offsets: no
        # checkpoint is written, so the one on disk stays one the streams can be restored from.
        self._rebalancing = False
        self._fence = FenceWatch()
        if config.kafka.client.get("group_instance_id"):  # only a static member can be fenced
            logging.getLogger("kafka.coordinator").addHandler(self._fence)

    @property
    def ready(self) -> bool:
        return bool(self.assigned)

    def health(self) -> tuple[bool, str]:
        """For /healthz: ready (partitions assigned) and the loop coming round; otherwise why not."""
        stalled = time.monotonic() - self._last_turn
        if stalled > STALL_AFTER_S:
            return False, f"stalled: the processing loop last came round {stalled:.0f}s ago"
        if not self.ready:
            return False, "not ready: no partitions assigned (starting, or a standby in its group)"
        return True, "ready"

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            log.info("stop requested", extra={"signal": signal.Signals(signum).name})
            self.notifier.stopping()
            self.stop_requested.set()

        def reload(_signum: int, _frame: object) -> None:
            self.reloader.requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def run(self) -> None:
        """Runs until ``stop_requested``; what was scored is then flushed and committed before leaving."""
        timeout_ms = self.config.batching.max_wait_ms
        # What is alive now (modules, models, clients) lives as long as the service. Frozen, it is left
        # out of every later garbage collection, which would otherwise walk all of it again each time a
        # poll's records pile up (docs/benchmarks.md). A frozen object is still freed when its last
        # reference goes; only cycles among them wait for the unfreeze at the end.
        gc.collect()
        gc.freeze()
        # before the first records arrive, so that a quiet restart still reports them
        state_gauges(self.metrics, self.processor)
        flush_on_close = True
        waiting_since: float | None = time.monotonic()
        try:
            while not self.stop_requested.is_set():
                self._last_turn = time.monotonic()
                if waiting_since is not None and self._last_turn - waiting_since > WAIT_NOTICE_S:
                    if not self._joined:
                        log.info(
                            "waiting for the consumer group to assign partitions; a member that stopped "
                            "without leaving (killed, or a static member) holds them until its session "
                            "times out (kafka.client.session_timeout_ms, 45 s by default)"
                        )
                    waiting_since = None
                self.metrics.last_wave.set_to_current_time()
                self.notifier.watchdog()
                self.reloader.check()
                # Until partitions are assigned the poll drives the group join: give it room to finish.
                polled = self._poll(timeout_ms if self.ready else max(timeout_ms, 2000))
                if self._fence.fenced.is_set():
                    raise self._fenced()
                rewound = self._apply_rebalances()
                # A partition just rewound to its checkpoint is read again from there, this poll included.
                records = [
                    to_raw(m)
                    for tp, messages in polled.items()
                    if tp.partition not in rewound
                    for m in messages
                ]
                # Resolutions a reload or a restore owes go out at once, not with whatever record comes next.
                if records or self.processor.owes_alerts:
                    self.handle(records)
                log_held_back(self._log_budget)
                self._commit_if_due()
            self._commit_if_due(force=True)
        except BaseException:
            # Whatever failed, its own error is what the operator must see; a flush that then waited on an
            # unreachable broker would replace it. Nothing since the last commit is lost: it is read again.
            flush_on_close = False
            raise
        finally:
            try:
                self.close(flush_on_close)
            finally:
                gc.unfreeze()  # back to the collector, for whatever the process does next (tests, exit)

    def _poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        try:
            return self.consumer.poll(timeout_ms=timeout_ms)  # type: ignore[no-any-return]
        except FencedInstanceIdError as exc:  # a join or sync the group refused
            raise self._fenced() from exc
        except CorruptRecordError as exc:
            # kafka-python fails on the same record at every poll, and after every restart: only the
            # operator can move the group past it.
            k = self.config.kafka
            raise BrokerError(
                f"a record on {k.readings_topic} breaks Kafka's record format and cannot be read ({exc!r}); "
                f"with faultcast stopped, move group {k.group_id} past it with kafka-consumer-groups.sh "
                "--reset-offsets (docs/operations.md#unreadable-records)"
            ) from exc

    def _fenced(self) -> FencedError:
        k = self.config.kafka
        return FencedError(
            f"consumer group {k.group_id} gave this instance's membership (kafka.client.group_instance_id "
            f"{k.client.get('group_instance_id')!r}) to another running consumer with the same id; give "
            "each instance its own id (e.g. its host name). Not restarted (exit 3): a restart would fence "
            "the other"
        )

    def handle(self, records: list[RawRecord]) -> None:
        """Scores one poll and publishes its results; offsets are committed later, once those are acked."""
        outcome = self.processor.process(records, read_at=time.time())
        infos = {name: rt.engine.info for name, rt in self.processor.runtimes.items()}
        sent = publish(self.producer, self.config.kafka, outcome, infos, self._log_budget, self.on_alert)
        self._unacked.extend(sent)
        last: dict[tuple[str, int], int] = {}  # records of a partition come in offset order
        for r in records:
            last[(r.source.topic, r.source.partition)] = r.source.offset
        for (topic, partition), offset in last.items():
            self._uncommitted[TopicPartition(topic, partition)] = self._offset(offset + 1)
            self.positions[partition] = offset + 1
        self._uncommitted_count += len(records)
        if outcome.alerts and not records:
            self._checkpointed = None  # alert states changed with no offset: the checkpoint is stale
        count_outcome(self.metrics, len(records), outcome)
        state_gauges(self.metrics, self.processor)
        if records:
            self._record_lag()

    def _commit_if_due(self, force: bool = False) -> None:
        """Every ``kafka.commit_interval_ms``: wait for the broker to ack what was published, then commit.

        Batching commits saves two round trips per poll; a crash replays at most one interval of
        records, and their alerts come out with the same ids.
        """
        if not self._uncommitted_count and not self._uncommitted and not self._unacked:
            self._checkpoint_if_due(force)
            return
        interval = self.config.kafka.commit_interval_ms / 1000.0
        if not force and time.monotonic() - self._last_commit < interval:
            return
        self.notifier.watchdog()  # the flush and the commit may each block for their whole timeout
        self._flush()
        for future in self._unacked:
            if future.failed():
                raise BrokerError(
                    f"publishing to Kafka failed: {future.exception}; records are not committed "
                    "and will be read again after restart"
                )
        self._unacked = []
        self.notifier.watchdog()
        result = self._commit(self._uncommitted) if self._uncommitted else "committed"
        if result == "retry":
            return
        if result == "refused":
            # The group went on without this instance (its session expired, or it rebalanced mid-poll).
            # Whoever owns the partitions next reads these records again from the last commit, unless it
            # is this instance resuming from its snapshot of them (see _resume).
            self._rebalancing = True
        with self._progress:
            self.processed += self._uncommitted_count
            self._progress.notify_all()
        self._uncommitted, self._uncommitted_count = {}, 0
        self._last_commit = time.monotonic()
        self._checkpoint_if_due(force)

    def _flush(self) -> None:
        """Waits for the broker to acknowledge what was published; BrokerError when it does not in time."""
        try:
            self.producer.flush(timeout=FLUSH_TIMEOUT_S)
        except KafkaTimeoutError as exc:
            raise BrokerError(
                f"Kafka did not acknowledge published records within {FLUSH_TIMEOUT_S:.0f}s ({exc}); check "
                "the brokers. Records are not committed and will be read again after restart"
            ) from exc

    def _checkpoint_if_due(self, force: bool = False) -> None:
        """Writes a checkpoint when one is due and every processed record is committed, so that the
        state matches the offsets; unchanged offsets are not written again."""
        offsets = {p: o for p, o in self.positions.items() if p in self.assigned}
        if self._uncommitted_count or self._uncommitted or self._rebalancing or offsets == self._checkpointed:
            return
        if not self.checkpoints.due(force or self._retagged):
            return
        try:
            self.checkpoints.write(
                take(self.processor, self.config.kafka.readings_topic, offsets, self._commit_tags)
            )
        except OSError as exc:
            # A checkpoint only spares a restart its cold start; scoring goes on without it, and the file
            # on disk stays the last whole one (writes are atomic).
            log.error(
                "checkpoint not written; fix the folder, or a restart starts cold",
                extra={"path": str(self.checkpoints.path), "error": str(exc)},
            )
            self.metrics.checkpoint_failures.inc()
            return
        self._checkpointed, self._retagged = offsets, False
        self.metrics.checkpoints.inc()

    def wait_ready(self, timeout: float) -> bool:
        """Blocks until partitions were first assigned (True) or ``timeout`` seconds pass (False)."""
        return self._announced_ready.wait(timeout)

    def wait_processed(self, count: int, timeout: float) -> bool:
        """Blocks until ``count`` records are committed (True) or ``timeout`` seconds pass (False)."""
        with self._progress:
            return self._progress.wait_for(lambda: self.processed >= count, timeout)

    def _commit(
        self, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> Literal["committed", "retry", "refused"]:
        """Commits ``offsets``: done, to retry after the next poll, or refused for good by the group."""
        try:
            self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except RebalanceInProgressError:
            # The group is rebalancing; poll() completes it, then the commit is retried.
            log.info("offset commit deferred: group rebalancing")
            return "retry"
        except FencedInstanceIdError as exc:
            raise self._fenced() from exc
        except CommitFailedError as exc:
            log.warning(
                "offset commit refused: the group went on without this instance; its records are read "
                "again from the last commit",
                extra={"error": str(exc)},
            )
            self.metrics.commits_refused.inc()
            return "refused"
        except KafkaError as exc:
            if exc.retriable:  # e.g. the group coordinator moved or is still loading
                log.warning("offset commit deferred", extra={"error": str(exc)})
                return "retry"
            raise BrokerError(f"offset commit failed: {exc}") from exc
        self.metrics.commits.inc()
        tags = {tp.partition: o.metadata for tp, o in offsets.items()}
        self._retagged |= any(self._commit_tags.get(p) != tag for p, tag in tags.items())
        self._commit_tags.update(tags)
        return "committed"

    def _apply_rebalances(self) -> set[int]:
        """Applies the queued partition changes; returns the partitions rewound to a checkpoint."""
        rewound: set[int] = set()
        while not self.listener.events.empty():
            event: Rebalance = self.listener.events.get()
            if event.kind == "assigned":
                # /healthz says ready once the streams are restored (the lookups may take a while)
                rewound |= self._resume(set(event.partitions))
                self.assigned |= event.partitions
                self._rebalancing = False
            else:
                self._rebalancing = True
                self.assigned -= event.partitions
                # Their new owner commits them; an offset committed from here now could move its back.
                self._uncommitted = {
                    tp: o for tp, o in self._uncommitted.items() if tp.partition not in event.partitions
                }
                if event.kind == "revoked":  # lost partitions' state may be stale: it is dropped
                    offsets = {p: self.positions[p] for p in event.partitions if p in self.positions}
                    topic = self.config.kafka.readings_topic
                    self.checkpoints.park(take(self.processor, topic, offsets, self._commit_tags))
                for p in event.partitions:
                    self.positions.pop(p, None)
                    self._commit_tags.pop(p, None)
                    # Another instance reports these partitions' lag now; a stale series would add to it.
                    with contextlib.suppress(KeyError):
                        self.metrics.lag.remove(self.config.kafka.readings_topic, str(p))
                evicted = self.processor.evict_partitions(set(event.partitions))
                self.metrics.evicted.inc(evicted)
            if event.partitions:  # kafka-python reports an empty revoke at each join
                log.info("partitions " + event.kind, extra={"partitions": sorted(event.partitions)})
            self.metrics.ready.set(1 if self.ready else 0)
            share = f"scoring partitions {sorted(self.assigned)}" if self.ready else "standby, no partitions"
            if event.kind == "assigned" and not self._joined:
                # Ready for systemd once the group has given this instance its share, even none: a standby
                # is healthy (and its start must not time out); /healthz and faultcast_ready say which.
                self.notifier.ready(share)
                self._joined, self._status = True, share
            elif self._joined and share != self._status:
                self.notifier.status(share)  # what `systemctl status` shows follows the group
                self._status = share
            if self.ready and not self._announced_ready.is_set():
                self._announced_ready.set()
            state_gauges(self.metrics, self.processor)  # streams were dropped or restored
        return rewound

    def _resume(self, partitions: set[int]) -> set[int]:
        """Restores the streams of newly assigned partitions from a checkpoint and rewinds to its offsets.

        One poll may run several rebalances, so only partitions still assigned now are resumed."""
        topic = self.config.kafka.readings_topic
        partitions &= {tp.partition for tp in self.consumer.assignment() if tp.topic == topic}
        if not partitions or not self.checkpoints.may_restore(partitions):
            return set()  # no checkpoint could hold them: spare the broker two offset requests
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        deadline = time.monotonic() + RESUME_TIMEOUT_S

        def left_ms() -> int:
            return max(0, int((deadline - time.monotonic()) * 1000))

        try:
            committed: dict[int, int | None] = {}
            tags: dict[int, str] = {}
            for tp in tps:
                found = self.consumer.committed(tp, metadata=True, timeout_ms=left_ms())
                committed[tp.partition] = None if found is None else found.offset
                if found is not None:
                    tags[tp.partition] = found.metadata or ""
                self.notifier.watchdog()
            starts = self.consumer.beginning_offsets(tps, timeout_ms=left_ms())
            self.notifier.watchdog()
            earliest = {tp.partition: o for tp, o in starts.items()}
        except KafkaError as exc:
            raise BrokerError(
                f"cannot read the committed and earliest offsets of partitions {sorted(partitions)} within "
                f"{RESUME_TIMEOUT_S:.0f}s to restore their streams ({exc}); the brokers are down, or the "
                "client is still reconnecting after an outage (kafka.client.reconnect_backoff_max_ms). "
                "Nothing is lost: after a restart the streams are restored and read again from their "
                "checkpoint"
            ) from exc
        self._commit_tags.update(tags)
        max_replay = self.config.state.checkpoint_max_replay
        plan = self.checkpoints.plan(partitions, committed, earliest, max_replay, tags)
        for checkpoint, parts in plan:
            restored = restore(self.processor, checkpoint, parts)
            for p in parts:
                offset = checkpoint.offsets[p]
                self.consumer.seek(TopicPartition(topic, p), offset)
                self.positions[p] = offset
                done = committed.get(p)
                if done is None or offset > done:
                    # A snapshot taken at a revoke, past the commit: the records between were scored here
                    # and their alerts published, so it is this instance that commits them.
                    self._uncommitted[TopicPartition(topic, p)] = self._offset(offset)
            self.metrics.restored.inc(restored)
            log.info("streams restored", extra={"partitions": sorted(parts), "streams": restored})
        return {p for _, parts in plan for p in parts}

    def _offset(self, offset: int) -> OffsetAndMetadata:
        """``offset`` as this run commits it, tagged (see _commit_tags)."""
        return OffsetAndMetadata(offset, self._run_tag, -1)

    def _record_lag(self) -> None:
        """Consumer lag per partition, where it is known now. position() is not waited for: after a
        rebalance, or with the broker gone, it would wait on the coordinator."""
        for tp in self.consumer.assignment():
            try:
                high, position = self.consumer.highwater(tp), self.consumer.position(tp, timeout_ms=0)
            except KafkaError as exc:  # a broker gone mid-poll: the loop's own calls report it
                log.debug("consumer lag not known", extra={"error": str(exc)})
                return
            if high is not None and position is not None:
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, high - position)
                )

    def close(self, flush: bool = True) -> None:
        """Flushes what was produced, leaves the group (so partitions move at once; a static member stays
        in it until its session ends, see `faultcast leave`) and closes clients."""
        flushed = False
        try:
            if flush:
                self._flush()
                flushed = True
        finally:
            log_held_back(self._log_budget, final=True)
            logging.getLogger("kafka.coordinator").removeHandler(self._fence)
            self.consumer.close()
            # Unflushed, what is still buffered is not waited for (it was not committed, and is read again).
            close_producer(self.producer, FLUSH_TIMEOUT_S if flushed else 0)
            self.metrics.ready.set(0)
            if self.http_server is not None:
                self.http_server.shutdown()
                self.http_server.server_close()
            log.info("stopped")
