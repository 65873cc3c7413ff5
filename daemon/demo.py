"""`faultcast demo`: local broker, trained model, fast replay of shipped data, daemon, alerts on screen."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.app import build_service
from daemon.config import load_config
from daemon.kafka_io import make_producer
from daemon.replay import replay
from daemon.service import Service
from train.fit import FitConfig
from train.pipeline import TrainSpec, train_series
from train.series import load_nab_csv

REPO = Path(__file__).resolve().parents[1]
BROKER = REPO / "scripts" / "kafka" / "broker.sh"
DEMO_SERIES = REPO / "data" / "nab" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
DEMO_STREAM = "machine-temperature"

log = logging.getLogger("faultcast.demo")


def print_alert(alert: dict[str, Any]) -> None:
    top = ", ".join(f"{c['name']} {c['share']:.0%}" for c in alert["top_channels"])
    print(
        f"ALERT {alert['state']:<8} {alert['severity']:<8} {alert['kind']} {alert['stream']}  "
        f"reading {alert['ts']}  score {alert['score']:.2f} (threshold {alert['threshold']:.2f}, peak "
        f"{alert['peak']:.2f})  since {alert['started_at']}  top: {top}  id {alert['id']}",
        flush=True,
    )


def ensure_model(path: Path) -> None:
    if path.exists():
        print(f"model: reusing {path}", flush=True)
        return
    print(f"model: training on {DEMO_SERIES.name} (first 15%, the NAB probation period) ...", flush=True)
    report = train_series(load_nab_csv(DEMO_SERIES, "temp_c"), TrainSpec(name=DEMO_STREAM), FitConfig(), path)
    print(
        f"model: wrote {path} (threshold {report.threshold:.3f}, export parity {report.parity_max_abs:.1e})",
        flush=True,
    )


def run_demo(config_path: Path, exit_when_done: bool) -> int:
    # Stop on exit only a broker this demo started: one that was already running belongs to someone else.
    running = subprocess.run([str(BROKER), "status"], capture_output=True, check=False).returncode == 0
    own_broker = not os.environ.get("KAFKA_BOOTSTRAP") and not running
    if own_broker:
        subprocess.run([str(BROKER), "start"], check=True)
    try:
        config = load_config(config_path)
        # Fresh topics and group per run, so every demo replays the whole series from the start.
        run = time.strftime("%Y%m%d-%H%M%S")
        kafka = dataclasses.replace(
            config.kafka,
            group_id=f"faultcast-demo-{run}",
            readings_topic=f"faultcast.demo.{run}.readings",
            alerts_topic=f"faultcast.demo.{run}.alerts",
            dead_letter_topic=f"faultcast.demo.{run}.dead-letter",
        )
        config = dataclasses.replace(config, kafka=kafka)
        ensure_model(Path(config.models[0].path))
        service = build_service(config, CollectorRegistry(), on_alert=print_alert)
        assert service.http_server is not None  # build_service always starts it
        port = service.http_server.server_address[1]
        print(
            f"metrics: http://{config.metrics.host}:{port}/metrics  health: http://{config.metrics.host}:{port}"
            f"/healthz",
            flush=True,
        )
        return _run(service, config.kafka.bootstrap_servers, kafka.readings_topic, exit_when_done)
    finally:
        if own_broker:
            subprocess.run([str(BROKER), "stop"], check=False)


def _run(service: Service, bootstrap: str, topic: str, exit_when_done: bool) -> int:
    service.install_signal_handlers()
    worker = threading.Thread(target=service.run, name="faultcast-daemon")
    worker.start()
    producer = make_producer(service.config.kafka)
    try:
        sent = replay(producer, topic, DEMO_STREAM, load_nab_csv(DEMO_SERIES, "temp_c"))
    finally:
        producer.close()
    print(f"replay: published {sent} readings of {DEMO_SERIES.name} to {topic} on {bootstrap}", flush=True)
    if not exit_when_done:
        print("daemon: scoring; Ctrl-C stops the daemon and the broker", flush=True)
    if exit_when_done:
        service.wait_processed(sent, timeout=600)
        service.stop_requested.set()
    worker.join()
    print(f"daemon: stopped after {service.processed} readings", flush=True)
    return 0
