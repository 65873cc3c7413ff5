"""Shared helpers for tests: paths to shipped data, small trained models, Kafka round trips."""

from __future__ import annotations

import socket
from pathlib import Path

from train.export import untrained_model

REPO = Path(__file__).resolve().parents[1]
NAB = REPO / "data" / "nab"
MACHINE_TEMPERATURE = NAB / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
WINDOWS = NAB / "labels" / "combined_windows.json"
OCCUPANCY = NAB / "data" / "realTraffic" / "occupancy_6005.csv"
BROKER = REPO / "scripts" / "kafka" / "broker.sh"


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
