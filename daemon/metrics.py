"""The daemon's Prometheus metrics; the registry is injected so each test builds its own."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info

from daemon import __version__

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
        self.latency = Histogram(
            "faultcast_end_to_end_latency_seconds",
            "Record timestamp to score, wall clock",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "faultcast_alerts", "Alert messages published", ["kind", "severity", "state"], registry=r
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
        self.evicted = Counter("faultcast_streams_evicted", "Idle streams whose state was freed", registry=r)
        self.lag = Gauge(
            "faultcast_consumer_lag_records",
            "Records behind the partition's end",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter(
            "faultcast_offset_commits", "Offset commits after alerts were acknowledged", registry=r
        )
        self.checkpoints = Counter(
            "faultcast_checkpoints_written", "State checkpoints written after a commit", registry=r
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
        self.model_info = Info("faultcast_model", "Loaded models", ["model"], registry=r)
        Info("faultcast_build", "faultcast build", registry=r).info({"version": __version__})
