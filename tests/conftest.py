"""Session fixtures: one trained demo model for all tests, one real Kafka broker for integration tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import BROKER, MACHINE_TEMPERATURE, OCCUPANCY, free_port
from train.evaluate_congestion import CongestionOptions
from train.fit import FitConfig
from train.pipeline import TrainReport, train_load_series, train_series
from train.series import load_nab_csv
from train.train_spec import TrainSpec


@pytest.fixture(scope="session")
def machine_model(tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    """The demo model (LSTM on the probation period of the machine-temperature series), trained once."""
    out = tmp_path_factory.mktemp("model") / "machine_temperature.onnx"
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    return train_series(series, TrainSpec(name="machine-temperature"), FitConfig(), out, progress=False)


@pytest.fixture(scope="session")
def traffic_model(tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    """A congestion model (clock inputs, quantile head) fitted on half a freeway occupancy file."""
    out = tmp_path_factory.mktemp("model") / "traffic.onnx"
    series = load_nab_csv(OCCUPANCY, "occupancy")
    o = CongestionOptions()
    return train_load_series(series, o.congestion, o.fit, out, name="traffic")


def broker_env(port: int, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    env.update(KAFKA_PORT=str(port), KAFKA_CONTROLLER_PORT=str(free_port()), FAULTCAST_KAFKA_DIR=str(state))
    return env


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka 4 broker (KRaft) started by the project's script, or $KAFKA_BOOTSTRAP when set."""
    if os.environ.get("KAFKA_BOOTSTRAP"):
        yield os.environ["KAFKA_BOOTSTRAP"]
        return
    port = free_port()
    env = broker_env(port, tmp_path_factory.mktemp("kafka"))
    subprocess.run([str(BROKER), "start"], env=env, check=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([str(BROKER), "stop"], env=env, check=True)
