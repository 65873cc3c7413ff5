"""The daemon's main loop: poll, score, publish, wait for acknowledgements, commit; metrics and systemd."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from daemon.config import Config
from daemon.errors import BrokerError, FaultcastError
from daemon.kafka_io import HandOffListener, Rebalance, dead_letter_headers, encode_json, to_raw
from daemon.messages import score_message
from daemon.metrics import Metrics
from daemon.processor import Outcome, Processor, RawRecord
from daemon.systemd import Notifier

log = logging.getLogger("faultcast.service")


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
        self.reload_requested = threading.Event()
        self._model_files = self._stat_models()
        self._next_watch = time.monotonic() + config.reload.watch_interval_s
        self.assigned: set[int] = set()
        self.processed = 0  # records handled and committed
        self._progress = threading.Condition()
        self.http_server: ThreadingHTTPServer | None = None
        self._announced_ready = False
        self._publish_model_info()

    def _publish_model_info(self) -> None:
        for name, runtime in self.processor.runtimes.items():
            info = runtime.engine.info
            self.metrics.model_info.labels(model=name).info(
                {"version": info.version, "sha256": info.sha256[:16], "features": ",".join(info.features)}
            )

    def _stat_models(self) -> dict[str, tuple[int, int]]:
        stats = {}
        for model in self.config.models:
            try:
                st = os.stat(model.path)
            except OSError:
                continue  # a file being replaced; the next check sees the new one
            stats[model.name] = (st.st_mtime_ns, st.st_size)
        return stats

    def _maybe_reload(self) -> None:
        """Between polls, so no wave is cut and no record is dropped: SIGHUP or a changed model file."""
        interval = self.config.reload.watch_interval_s
        if interval > 0 and time.monotonic() >= self._next_watch:
            self._next_watch = time.monotonic() + interval
            stats = self._stat_models()
            if stats != self._model_files:
                self._model_files = stats
                self.reload_requested.set()
        if not self.reload_requested.is_set():
            return
        self.reload_requested.clear()
        for model in self.config.models:
            runtime = self.processor.runtimes[model.name]
            try:
                reloaded = runtime.reload(Path(model.path))
            except FaultcastError as exc:
                log.error(
                    "model reload failed; the loaded version keeps running",
                    extra={"model": model.name, "error": str(exc)},
                )
                self.metrics.reloads.labels(model=model.name, result="failed").inc()
                continue
            if reloaded is None:
                self.metrics.reloads.labels(model=model.name, result="unchanged").inc()
                continue
            result = "kept_state" if reloaded.kept_state else "reset_state"
            self.metrics.reloads.labels(model=model.name, result=result).inc()
            self.metrics.stream_resets.labels(reason="model_reload").inc(reloaded.streams_reset)
            log.info(
                "model reloaded",
                extra={
                    "model": model.name,
                    "version": runtime.engine.info.version,
                    "result": result,
                    "streams_reset": reloaded.streams_reset,
                },
            )
        self._publish_model_info()

    @property
    def ready(self) -> bool:
        return bool(self.assigned)

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            log.info("stop requested", extra={"signal": signal.Signals(signum).name})
            self.notifier.stopping()
            self.stop_requested.set()

        def reload(_signum: int, _frame: object) -> None:
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)

    def run(self) -> None:
        """Runs until ``stop_requested``; the wave in progress finishes, is flushed and committed first."""
        timeout_ms = self.config.batching.max_wait_ms
        try:
            while not self.stop_requested.is_set():
                self.metrics.last_wave.set_to_current_time()
                self.notifier.watchdog()
                self._maybe_reload()
                polled = self.consumer.poll(timeout_ms=timeout_ms)
                self._apply_rebalances()
                records = [to_raw(m) for messages in polled.values() for m in messages]
                if records:
                    self.handle(records)
        finally:
            self.close()

    def handle(self, records: list[RawRecord]) -> None:
        """Scores one poll, publishes its results and commits past it once the broker acknowledged them."""
        outcome = self.processor.process(records)
        futures = self._publish(outcome)
        self.producer.flush()
        for future in futures:
            if future.failed():
                raise BrokerError(
                    f"publishing to Kafka failed: {future.exception}; records are not committed "
                    "and will be read again after restart"
                )
        self._commit(records)
        self._record_metrics(records, outcome)
        with self._progress:
            self.processed += len(records)
            self._progress.notify_all()

    def wait_processed(self, count: int, timeout: float) -> bool:
        """Blocks until ``count`` records are committed (True) or ``timeout`` seconds pass (False)."""
        with self._progress:
            return self._progress.wait_for(lambda: self.processed >= count, timeout)

    def _publish(self, outcome: Outcome) -> list[Any]:
        k = self.config.kafka
        futures = []
        for record, rejection in outcome.rejected:
            src = record.source
            log.warning(
                "record rejected",
                extra={
                    "reason": rejection.reason,
                    "detail": rejection.detail,
                    "stream": rejection.stream,
                    "topic": src.topic,
                    "partition": src.partition,
                    "offset": src.offset,
                },
            )
            futures.append(
                self.producer.send(
                    k.dead_letter_topic,
                    key=record.key,
                    value=record.value,
                    headers=dead_letter_headers(record, rejection),
                )
            )
        for drop in outcome.dropped:
            log.info(
                "reading dropped",
                extra={
                    "reason": drop.reason,
                    "stream": drop.stream,
                    "topic": drop.source.topic,
                    "partition": drop.source.partition,
                    "offset": drop.source.offset,
                },
            )
        for alert in outcome.alerts:
            log.info(
                "alert",
                extra={
                    "id": alert["id"],
                    "kind": alert["kind"],
                    "state": alert["state"],
                    "severity": alert["severity"],
                    "stream": alert["stream"],
                    "offset": alert["source"]["offset"],
                },
            )
            futures.append(
                self.producer.send(k.alerts_topic, key=alert["stream"].encode(), value=encode_json(alert))
            )
            if self.on_alert is not None:
                self.on_alert(alert)
        if k.scores_topic:
            for s in outcome.scored:
                if s.publish:
                    info = self.processor.runtimes[s.model].engine.info
                    futures.append(
                        self.producer.send(
                            k.scores_topic,
                            key=s.stream.encode(),
                            value=encode_json(score_message(s.stream, s.ts, s.score, info)),
                        )
                    )
        return futures

    def _commit(self, records: list[RawRecord]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for r in records:
            offsets[TopicPartition(r.source.topic, r.source.partition)] = OffsetAndMetadata(
                r.source.offset + 1, "", -1
            )
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:
            # The partitions moved to another instance mid-poll; it re-reads from the last commit.
            log.warning("offset commit refused after a rebalance", extra={"error": str(exc)})
            return
        except KafkaError as exc:
            raise BrokerError(f"offset commit failed: {exc}") from exc
        self.metrics.commits.inc()

    def _apply_rebalances(self) -> None:
        while not self.listener.events.empty():
            event: Rebalance = self.listener.events.get()
            if event.kind == "assigned":
                self.assigned |= event.partitions
            else:
                self.assigned -= event.partitions
                evicted = self.processor.evict_partitions(set(event.partitions))
                self.metrics.evicted.inc(evicted)
            log.info("partitions " + event.kind, extra={"partitions": sorted(event.partitions)})
            self.metrics.ready.set(1 if self.ready else 0)
            if self.ready and not self._announced_ready:
                self.notifier.ready(f"scoring partitions {sorted(self.assigned)}")
                self._announced_ready = True

    def _record_metrics(self, records: list[RawRecord], outcome: Outcome) -> None:
        m = self.metrics
        m.consumed.inc(len(records))
        for _, rejection in outcome.rejected:
            m.rejected.labels(reason=rejection.reason).inc()
        for drop in outcome.dropped:
            m.dropped.labels(reason=drop.reason).inc()
        m.unknown_channels.inc(outcome.unknown_channels)
        m.carried.inc(outcome.carried)
        m.stream_resets.labels(reason="gap").inc(outcome.gap_resets)
        m.evicted.inc(outcome.evicted)
        for model, size, seconds in outcome.waves:
            m.batch_size.labels(model=model).observe(size)
            m.step_seconds.labels(model=model).observe(seconds)
        now = time.time()
        for s in outcome.scored:
            m.scored.labels(model=s.model).inc()
            if s.source.record_ts is not None:
                m.latency.observe(max(0.0, now - s.source.record_ts))
        for alert in outcome.alerts:
            m.alerts.labels(kind=alert["kind"], severity=alert["severity"], state=alert["state"]).inc()
        for model, count in self.processor.active_streams.items():
            m.active_streams.labels(model=model).set(count)
        by_device: dict[str, int] = {}
        for runtime in self.processor.runtimes.values():
            table = runtime.engine.table
            by_device[table.device] = by_device.get(table.device, 0) + table.nbytes
        for device, nbytes in by_device.items():
            m.state_bytes.labels(device=device).set(nbytes)
        for tp in self.consumer.assignment():
            high, position = self.consumer.highwater(tp), self.consumer.position(tp)
            if high is not None and position is not None:
                m.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, high - position))

    def close(self) -> None:
        """Flushes what was produced, leaves the group (so partitions move at once) and closes clients."""
        try:
            self.producer.flush()
        finally:
            self.consumer.close()
            self.producer.close()
            self.metrics.ready.set(0)
            if self.http_server is not None:
                self.http_server.shutdown()
                self.http_server.server_close()
            log.info("stopped")
