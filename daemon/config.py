"""The daemon's configuration: frozen dataclasses, loaded once from config.yaml and validated."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from daemon.client_options import check_client, check_names, read_secrets
from daemon.config_parse import FieldError, build, field_error, require
from daemon.errors import ConfigError
from daemon.routing import shadowed


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "faultcast"
    readings_topic: str = "faultcast.readings"
    alerts_topic: str = "faultcast.alerts"
    dead_letter_topic: str = "faultcast.dead-letter"
    scores_topic: str | None = None
    scores_every: int = 1
    create_topics: bool = True
    topic_partitions: int = 1
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    commit_interval_ms: int = 200
    client: dict[str, Any] = field(default_factory=dict)
    # client options read from files at start (systemd credentials), so that secrets stay out of this file
    client_secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_client(self.client)
        check_names(self.client_secrets, "client_secrets")
        for name in self.client_secrets:
            require(name not in self.client, f"client_secrets.{name}", "is set in kafka.client too; keep one")
        require(self.scores_every >= 1, "scores_every", "must be >= 1 (1: every reading's score)")
        require(self.topic_partitions >= 1, "topic_partitions", "must be >= 1")
        require(
            self.commit_interval_ms >= 0, "commit_interval_ms", "must be >= 0 (0: commit after every poll)"
        )
        for key in ("readings_topic", "alerts_topic", "dead_letter_topic", "scores_topic"):
            require(getattr(self, key) != "", key, "must be a topic name, not empty")
        for key in ("alerts_topic", "dead_letter_topic", "scores_topic"):
            require(
                getattr(self, key) != self.readings_topic,
                key,
                f"must differ from readings_topic ({self.readings_topic!r}): faultcast would read its "
                "own output",
            )


@dataclass(frozen=True)
class ModelConfig:
    name: str
    path: str
    streams: tuple[str, ...] = ("*",)
    baseline_readings: int | None = None  # overrides the model's: readings that set a stream's baseline

    def __post_init__(self) -> None:
        require(self.name != "", "name", "must not be empty: alerts and metrics carry it")
        require(bool(self.streams), "streams", "must list at least one stream id pattern ('*': every stream)")
        require(
            self.baseline_readings is None or self.baseline_readings >= 0, "baseline_readings", "must be >= 0"
        )


@dataclass(frozen=True)
class ReloadConfig:
    watch_interval_s: float = 5.0  # how often model files are checked for changes; 0: only on SIGHUP

    def __post_init__(self) -> None:
        require(self.watch_interval_s >= 0, "watch_interval_s", "must be >= 0 (0: reload only on SIGHUP)")


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = 4096
    # A poll returns as soon as records arrive; this bounds only idle polls. Too short a bound starves
    # kafka-python's group join and coordinator lookups, which run inside poll().
    max_wait_ms: int = 500
    max_poll_records: int = 5000

    def __post_init__(self) -> None:
        require(self.max_batch >= 1, "max_batch", "must be >= 1 (readings per ONNX call)")
        require(self.max_poll_records >= 1, "max_poll_records", "must be >= 1")
        require(self.max_wait_ms >= 0, "max_wait_ms", "must be >= 0")


@dataclass(frozen=True)
class StateConfig:
    initial_capacity: int = 1024
    # A stream silent this long starts cold. It outlasts a plant's routine shutdowns (two or three weeks
    # over the holidays or for maintenance): streams that come back from one keep what they learned of
    # themselves, and are watched from their first reading, when start-up faults show.
    idle_ttl_s: float = 31 * 24 * 3600.0
    max_gap_s: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Checkpoints let a restarted daemon resume its streams warm. None: under systemd (StateDirectory,
    # $STATE_DIRECTORY) there; elsewhere off. Relative paths are relative to the config file.
    checkpoint_dir: str | None = None
    checkpoint_interval_s: float = 60.0
    # A partition's checkpoint is used only if replaying from it re-reads at most this many records
    # (a checkpoint from before the partition moved to another instance and back may be far behind).
    checkpoint_max_replay: int = 1_000_000

    def __post_init__(self) -> None:
        require(self.initial_capacity >= 1, "initial_capacity", "must be >= 1")
        require(self.idle_ttl_s > 0, "idle_ttl_s", "must be > 0 (seconds a silent stream keeps its state)")
        require(
            self.max_gap_s is None or self.max_gap_s > 0,
            "max_gap_s",
            "must be > 0 (seconds between a stream's readings that reset it), or unset",
        )
        require(self.checkpoint_interval_s > 0, "checkpoint_interval_s", "must be > 0")
        require(self.checkpoint_max_replay >= 0, "checkpoint_max_replay", "must be >= 0")


@dataclass(frozen=True)
class RecordsConfig:
    max_bytes: int = 65536
    carry_missing_for: int = 0
    max_future_s: float = 86400.0

    def __post_init__(self) -> None:
        require(self.max_bytes >= 1, "max_bytes", "must be >= 1 (bytes in one record's value)")
        require(
            self.carry_missing_for >= 0, "carry_missing_for", "must be >= 0 (0: reject a missing channel)"
        )
        require(
            self.max_future_s >= 0,
            "max_future_s",
            "must be >= 0 (seconds a reading may be stamped after its Kafka record was written)",
        )


# Used where neither the config nor the model's metadata says otherwise.
ALERTING_DEFAULTS: dict[str, float] = {"resolve_ratio": 0.8, "fire_after": 3, "resolve_after": 6}


@dataclass(frozen=True)
class AlertKindConfig:
    """``threshold``, ``resolve_ratio``, ``fire_after`` and ``resolve_after`` left unset come from the
    model (the settings its threshold was calibrated with), else from ALERTING_DEFAULTS."""

    threshold: float | None = None
    resolve_ratio: float | None = None
    fire_after: int | None = None
    resolve_after: int | None = None
    cooldown_s: float = 3600.0
    severities: dict[str, float] = field(default_factory=lambda: {"warning": 1.0, "critical": 2.0})
    top_channels: int = 3

    def __post_init__(self) -> None:
        require(
            self.threshold is None or self.threshold > 0,
            "threshold",
            "must be > 0, or unset to take the model's calibrated one",
        )
        require(
            self.resolve_ratio is None or 0 < self.resolve_ratio <= 1, "resolve_ratio", "must be in (0, 1]"
        )
        require(self.fire_after is None or self.fire_after >= 1, "fire_after", "must be >= 1")
        require(self.resolve_after is None or self.resolve_after >= 1, "resolve_after", "must be >= 1")
        require(self.cooldown_s >= 0, "cooldown_s", "must be >= 0 (0: no cool-down)")
        require(self.top_channels >= 0, "top_channels", "must be >= 0 (channels named in each alert)")
        require(
            bool(self.severities) and min(self.severities.values()) == 1.0,
            "severities",
            "must map names to threshold multiples, the lowest being 1.0",
        )


@dataclass(frozen=True)
class CongestionAlertConfig(AlertKindConfig):
    """Congestion defaults: a load forecast is smoother than an anomaly score, so fewer readings confirm
    it, the resolve band is tighter, and 25% past the limit is critical. ``threshold`` is the limit."""

    resolve_ratio: float | None = 0.9
    fire_after: int | None = 2
    resolve_after: int | None = 3
    cooldown_s: float = 1800.0
    severities: dict[str, float] = field(default_factory=lambda: {"warning": 1.0, "critical": 1.25})
    top_channels: int = 1
    # Per-stream limits where lines or buffers differ in capacity: stream id pattern -> limit, in the
    # order given (the first match wins); other streams use ``threshold`` or the model's limit.
    limits: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        for pattern, limit in self.limits.items():
            require(limit > 0, f"limits.{pattern}", "must be > 0 (the load that stream must not reach)")


@dataclass(frozen=True)
class AlertingConfig:
    fault: AlertKindConfig = field(default_factory=AlertKindConfig)
    congestion: CongestionAlertConfig = field(default_factory=CongestionAlertConfig)


ALERT_KINDS = tuple(f.name for f in fields(AlertingConfig))  # each has its own section and state machine


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9108

    def __post_init__(self) -> None:
        require(0 <= self.port <= 65535, "port", "must be a TCP port, 1-65535 (0: any free port)")


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["kv", "json"] = "kv"


@dataclass(frozen=True)
class Config:
    models: tuple[ModelConfig, ...]
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    state: StateConfig = field(default_factory=StateConfig)
    records: RecordsConfig = field(default_factory=RecordsConfig)
    alerting: AlertingConfig = field(default_factory=AlertingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    reload: ReloadConfig = field(default_factory=ReloadConfig)

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models: list at least one model (name, path)")
        names = [m.name for m in self.models]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"models: model names must be unique; {repeated[0]!r} is used more than once")
        for name, takers in shadowed([(m.name, m.streams) for m in self.models]):
            raise ValueError(
                f"models: model {name!r} would never score a stream: the models listed before it "
                f"({', '.join(repr(t) for t in takers)}) match every stream its patterns match, and the "
                "first match wins; list the more specific model first"
            )


def parse_config(data: Any, base_dir: Path, env: dict[str, str] | None = None) -> Config:
    """Validates parsed YAML; model paths become absolute against ``base_dir``; KAFKA_BOOTSTRAP wins."""
    config = build(Config, data)
    models = tuple(replace(m, path=str((base_dir / m.path).resolve())) for m in config.models)
    environ = os.environ if env is None else env
    bootstrap = environ.get("KAFKA_BOOTSTRAP")
    kafka = replace(config.kafka, bootstrap_servers=bootstrap) if bootstrap else config.kafka
    if kafka.client_secrets:
        try:
            secrets = read_secrets(kafka.client_secrets, base_dir)
        except FieldError as exc:
            raise field_error(exc, "kafka") from exc
        # checked as the other client options; the file names are not needed again
        kafka = replace(kafka, client={**kafka.client, **secrets}, client_secrets={})
    folder = config.state.checkpoint_dir or environ.get("STATE_DIRECTORY")
    state = replace(config.state, checkpoint_dir=str((base_dir / folder).resolve()) if folder else None)
    return replace(config, models=models, kafka=kafka, state=state)


class _RepeatedKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error: PyYAML would keep the last
    one, and a second ``kafka:`` block would silently replace the whole first one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may override what it merges
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            with contextlib.suppress(TypeError):  # an unhashable key: the safe loader's own error says so
                if key in first:
                    raise _RepeatedKey(
                        f"key {key!r} is given twice, on lines {first[key]} and {line}; keep one"
                    )
                first[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path, env: dict[str, str] | None = None) -> Config:
    """Reads and validates a config file; any problem raises ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the config file ({exc.strerror}); pass --config PATH"
        ) from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_config(data, path.parent, env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
