"""`faultcast demo`: local broker, trained model, fast replay of shipped data, daemon, alerts on screen."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from daemon.app import build_service
from daemon.config import Config, load_config
from daemon.errors import ConfigError
from daemon.kafka_io import CLOSE_TIMEOUT_S, close_producer, make_producer
from daemon.replay import replay
from daemon.service import Service
from train.evaluate_congestion import CongestionOptions
from train.fit import FitConfig
from train.pipeline import train_load_series, train_series
from train.series import Series, load_nab_csv
from train.train_spec import TrainSpec

REPO = Path(__file__).resolve().parents[1]
BROKER = REPO / "scripts" / "kafka" / "broker.sh"
NAB_DATA = REPO / "data" / "nab" / "data"


@dataclass(frozen=True)
class DemoStream:
    """A shipped series the demo replays as one stream, and how the model for it is trained."""

    model: str  # the config's model name this stream is meant for
    stream: str
    path: Path
    channel: str
    congestion: bool  # a load series: train a congestion model on it

    def series(self) -> Series:
        return load_nab_csv(self.path, self.channel)


DEMO_STREAMS = (
    DemoStream(
        "machine-temperature",
        "machine-temperature",
        NAB_DATA / "realKnownCause" / "machine_temperature_system_failure.csv",
        "temp_c",
        congestion=False,
    ),
    DemoStream(
        "traffic-occupancy", "lane-6005", NAB_DATA / "realTraffic" / "occupancy_6005.csv", "occupancy", True
    ),
)

log = logging.getLogger("faultcast.demo")


def print_alert(alert: dict[str, Any]) -> None:
    top = ", ".join(f"{c['name']} {c['share']:.0%}" for c in alert["top_channels"])
    extra = ""
    if alert["kind"] == "congestion" and alert["state"] == "firing":
        extra = f"  forecast {alert['forecast']['value']:.2f} in {alert['forecast']['horizon_s'] / 60:g} min"
        if alert["expected_at"] is not None:
            extra += f", limit reached {alert['expected_at']}"
    print(
        f"ALERT {alert['state']:<8} {alert['severity']:<8} {alert['kind']} {alert['stream']}  "
        f"reading {alert['ts']}  score {alert['score']:.2f} (threshold {alert['threshold']:.2f}, peak "
        f"{alert['peak']:.2f})  since {alert['started_at']}  top: {top}{extra}  id {alert['id']}",
        flush=True,
    )


def ensure_model(demo: DemoStream, path: Path) -> None:
    if path.exists():
        print(f"model: reusing {path} (delete it to train a new one)", flush=True)
        return
    series = demo.series()
    if demo.congestion:
        print(f"model: training a congestion model on {demo.path.name} (first half) ...", flush=True)
        o = CongestionOptions()
        report = train_load_series(series, o.congestion, o.fit, path, name=demo.model)
    else:
        print(f"model: training on {demo.path.name} (first 15%, the NAB probation period) ...", flush=True)
        report = train_series(series, TrainSpec(name=demo.model), FitConfig(), path)
    print(
        f"model: wrote {path} (threshold {report.threshold:.3f}, export parity {report.parity_max_abs:.1e})",
        flush=True,
    )


def demo_streams(config: Config) -> list[DemoStream]:
    """The shipped streams whose models the config names; a model the demo cannot train must exist."""
    streams = []
    for model in config.models:
        known = [d for d in DEMO_STREAMS if d.model == model.name]
        if known:
            ensure_model(known[0], Path(model.path))
            streams += known
        elif not Path(model.path).exists():
            raise ConfigError(
                f"models: the demo trains only {', '.join(d.model for d in DEMO_STREAMS)}; "
                f"{model.name} needs its file at {model.path}"
            )
    return streams


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
        streams = demo_streams(config)
        service = build_service(config, CollectorRegistry(), on_alert=print_alert)
        assert service.http_server is not None  # build_service always starts it
        port = service.http_server.server_address[1]
        print(
            f"metrics: http://{config.metrics.host}:{port}/metrics  health: http://{config.metrics.host}:{port}"
            f"/healthz",
            flush=True,
        )
        return _run(service, kafka.readings_topic, streams, exit_when_done)
    finally:
        if own_broker:
            subprocess.run([str(BROKER), "stop"], check=False)


def _run(service: Service, topic: str, streams: list[DemoStream], exit_when_done: bool) -> int:
    service.install_signal_handlers()
    worker = threading.Thread(target=service.run, name="faultcast-daemon")
    worker.start()
    producer = make_producer(service.config.kafka)
    sent = 0
    try:
        for demo in streams:
            count = replay(producer, topic, [(demo.stream, demo.series())])
            print(f"replay: published {count} readings of {demo.path.name} as {demo.stream}", flush=True)
            sent += count
    finally:
        close_producer(producer, CLOSE_TIMEOUT_S)
    print(f"replay: {sent} readings on {topic} at {service.config.kafka.bootstrap_servers}", flush=True)
    if not exit_when_done:
        print("daemon: scoring; Ctrl-C stops the daemon and the broker", flush=True)
    if exit_when_done:
        service.wait_processed(sent, timeout=600)
        service.stop_requested.set()
    worker.join()
    print(f"daemon: stopped after {service.processed} readings", flush=True)
    return 0
