"""The daemon's Prometheus metrics; the registry is injected so each test builds its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import cast, get_args

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client import utils as prometheus_utils
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon import __version__
from daemon.processor import DropReason
from daemon.records import RejectReason

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Up to 30 minutes: how far behind a restart after an outage, or a backlog, puts the readings scored.
_LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
)  # fmt: skip
RESET_REASONS = ("gap", "non_finite", "model_reload")
RELOAD_RESULTS = ("kept_state", "reset_state", "unchanged", "failed")


# How prometheus_client writes bucket bounds, typed.
_go_string = cast(Callable[[float], str], prometheus_utils.floatToGoString)


class BulkHistogram(Collector):
    """A Prometheus histogram without labels that takes a whole poll's observations in one call.

    prometheus_client's ``Histogram`` takes one value per call under a lock; one call per scored
    reading cost the daemon several percent of its throughput (docs/benchmarks.md). Its samples are the
    same but for ``_created`` (when the process started counting), which it does not export.
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # collect() runs on the HTTP server's thread
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        # side="left": a value equal to a bound belongs to that bound's bucket (le is inclusive).
        index = np.searchsorted(self.bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(np.sum(values))

    def observe(self, value: float) -> None:
        self.observe_many(np.array([value], dtype=np.float64))

    def describe(self) -> Iterator[Metric]:
        """The name only, so that the registry checks it against the others without collecting."""
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts).tolist(), self._sum
        les = [_go_string(b) for b in self.bounds.tolist()] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(les, cumulative, strict=True)), sum_value=total
        )


class Metrics:
    """Every metric faultcast exports; no per-stream labels (per-stream scores go to Kafka)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        r = registry
        self.registry = registry
        self.consumed = Counter(
            "faultcast_records_consumed", "Records read from the readings topic", registry=r
        )
        self.rejected = Counter(
            "faultcast_records_rejected",
            "Records sent to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.dropped = Counter(
            "faultcast_readings_dropped",
            "Valid readings not scored (timestamp not after the stream's last), by reason",
            ["reason"],
            registry=r,
        )
        self.unknown_channels = Counter(
            "faultcast_unknown_channels", "Channel values ignored because no model reads them", registry=r
        )
        self.carried = Counter(
            "faultcast_channels_carried", "Missing channel values filled with the last value", registry=r
        )
        self.scored = Counter("faultcast_readings_scored", "Readings scored, by model", ["model"], registry=r)
        self.faster = Counter(
            "faultcast_readings_faster_than_trained",
            "Readings taken for scoring less than half the model's training step after their stream's last, "
            "by model",
            ["model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "faultcast_inference_batch_size",
            "Readings per inference wave",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.step_seconds = Histogram(
            "faultcast_inference_duration_seconds",
            "Time of one inference wave (gather, step, scatter)",
            ["model"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.latency = BulkHistogram(
            "faultcast_end_to_end_latency_seconds",
            "Record timestamp to score, wall clock",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "faultcast_alerts", "Alert messages published", ["kind", "severity", "state"], registry=r
        )
        self.alerts_firing = Gauge(
            "faultcast_alerts_firing", "Alerts firing now in this instance", ["model", "kind"], registry=r
        )
        self.active_streams = Gauge(
            "faultcast_active_streams", "Streams with resident state", ["model"], registry=r
        )
        self.state_bytes = Gauge(
            "faultcast_state_bytes", "Bytes of recurrent-state tables", ["device"], registry=r
        )
        self.stream_resets = Counter(
            "faultcast_stream_resets", "Stream states reset, by reason", ["reason"], registry=r
        )
        self.evicted = Counter(
            "faultcast_streams_evicted",
            "Streams whose state was freed: idle past the TTL, or their partition revoked",
            registry=r,
        )
        self.lag = Gauge(
            "faultcast_consumer_lag_records",
            "Records behind the partition's end",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter(
            "faultcast_offset_commits", "Offset commits after alerts were acknowledged", registry=r
        )
        self.commits_refused = Counter(
            "faultcast_offset_commits_refused",
            "Offset commits the consumer group refused (it went on without this instance); their records "
            "are read again from the last commit",
            registry=r,
        )
        self.checkpoints = Counter(
            "faultcast_checkpoints_written", "State checkpoints written after a commit", registry=r
        )
        self.checkpoint_failures = Counter(
            "faultcast_checkpoint_failures",
            "State checkpoints that could not be written (scoring goes on; a restart would start cold)",
            registry=r,
        )
        self.restored = Counter(
            "faultcast_streams_restored", "Streams resumed from a checkpoint on assignment", registry=r
        )
        self.ready = Gauge("faultcast_ready", "1 when models are loaded and partitions assigned", registry=r)
        self.last_wave = Gauge(
            "faultcast_last_loop_timestamp_seconds", "When the processing loop last turned", registry=r
        )
        self.reloads = Counter(
            "faultcast_model_reloads",
            "Model reload attempts, by model and result (kept_state, reset_state, unchanged, failed)",
            ["model", "result"],
            registry=r,
        )
        self.reload_failing = Gauge(
            "faultcast_model_reload_failing",
            "1 while a model's file failed its last reload (the loaded version keeps running), else 0",
            ["model"],
            registry=r,
        )
        self.model_info = Info("faultcast_model", "Loaded models", ["model"], registry=r)
        # Every series a counter will have is exported from the start, at 0: Prometheus's rate() and
        # increase() take a series' first sample as its start, so a first increment would not show.
        for reason in get_args(RejectReason):
            self.rejected.labels(reason=reason)
        for reason in get_args(DropReason):
            self.dropped.labels(reason=reason)
        for reason in RESET_REASONS:
            self.stream_resets.labels(reason=reason)
        Info("faultcast_build", "faultcast build", registry=r).info({"version": __version__})
