"""Shared helpers for tests: paths to shipped data, small trained models, Kafka round trips."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from train.export import build_step_model, save, untrained_model
from train.model import Forecaster, ModelShape
from train.score import ScoreParams

REPO = Path(__file__).resolve().parents[1]
NAB = REPO / "data" / "nab"
MACHINE_TEMPERATURE = NAB / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
WINDOWS = NAB / "labels" / "combined_windows.json"
OCCUPANCY = NAB / "data" / "realTraffic" / "occupancy_6005.csv"
BROKER = REPO / "scripts" / "kafka" / "broker.sh"
SHARED_DATA = REPO.parent / "shared" / "data"  # the read-only data beside the clone (not shipped)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def write_model(path: Path, hidden: int = 8, seed: int = 0, version: str = "1") -> Path:
    """An untrained one-channel ``temp_c`` step model with random weights (fast; for engine tests)."""
    return untrained_model(path, ("temp_c",), hidden, seed, version)


# A one-channel model's score settings: readings of 70 +- 5 degrees, prediction errors of 0.2 of that.
PLAIN_SCORE = ScoreParams(mean=(70.0,), std=(5.0,), resid_std=(0.2,))


def model_exporter(path: Path) -> Callable[[ScoreParams, str], None]:
    """Writes one untrained ``temp_c`` forecaster to ``path`` as a step model under the score settings and
    version given (fault threshold 3): for reloads of the same weights whose score is made differently."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(features=1, hidden=8)).eval()

    def export(params: ScoreParams, version: str) -> None:
        meta = {"name": "m", "version": version, "features": ["temp_c"], "score": asdict(params)}
        meta["thresholds"] = {"fault": {"threshold": 3.0}}
        save(build_step_model(model, params, meta), path)

    return export
