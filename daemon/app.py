"""Assembles the daemon from a config: models, engines, Kafka clients, metrics server, main loop."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnxruntime as ort
from prometheus_client import REGISTRY, CollectorRegistry

from daemon.config import Config
from daemon.engine import Engine, HostEngine
from daemon.errors import ModelError
from daemon.http_server import serve
from daemon.kafka_io import HandOffListener, ensure_topics, make_consumer, make_producer
from daemon.metrics import Metrics
from daemon.processor import Processor
from daemon.service import Service
from daemon.systemd import Notifier

log = logging.getLogger("faultcast.app")


def _device(setting: str) -> str:
    """``cuda`` when asked for (DeviceEngine refuses it without a GPU) or when ``auto`` finds one."""
    if setting != "auto":
        return setting
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "cpu"  # onnxruntime without CUDA: no need to load torch to find out more
    from daemon.device_engine import cuda_available

    return "cuda" if cuda_available() else "cpu"


def load_engines(config: Config) -> dict[str, Engine]:
    """Loads every model; a missing or malformed model raises ModelError before Kafka is touched."""
    missing = [
        f"models[{i}] {m.name!r}: {m.path}" for i, m in enumerate(config.models) if not Path(m.path).exists()
    ]
    if missing:
        raise ModelError(
            f"no model file at {'; '.join(missing)}. Train one (`faultcast train ... --out PATH`; "
            "`faultcast demo` writes the example config's models) or fix models[].path"
        )
    device = _device(config.state.device)
    engines: dict[str, Engine] = {}
    for model in config.models:
        path, capacity = Path(model.path), config.state.initial_capacity
        engine: Engine
        if device == "cuda":
            from daemon.device_engine import DeviceEngine

            engine = DeviceEngine(path, capacity, "cuda", model.baseline_readings)
        else:
            engine = HostEngine(path, capacity, model.baseline_readings)
        engines[model.name] = engine
        log.info(
            "model loaded",
            extra={
                "model": model.name,
                "version": engine.info.version,
                "sha256": engine.info.sha256[:16],
                "device": engine.table.device,
            },
        )
    return engines


def build_service(
    config: Config,
    registry: CollectorRegistry = REGISTRY,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
) -> Service:
    engines = load_engines(config)
    processor = Processor(config, engines)
    if config.kafka.create_topics:
        ensure_topics(config.kafka)
    metrics = Metrics(registry)
    listener = HandOffListener()
    consumer = make_consumer(config, listener)
    producer = make_producer(config.kafka)
    service = Service(config, processor, consumer, producer, listener, metrics, Notifier(), on_alert)
    server = serve(config.metrics.host, config.metrics.port, registry, service.health)
    service.http_server = server
    log.info(
        "serving metrics", extra={"url": f"http://{config.metrics.host}:{server.server_address[1]}/metrics"}
    )
    return service
