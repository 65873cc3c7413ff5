"""`faultcast demo` as the README runs it, on the session broker: trains, replays, prints alerts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import REPO

pytestmark = pytest.mark.integration


def test_demo_prints_alerts_and_stops_cleanly(kafka_bootstrap: str, tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for model in config["models"]:  # trained by the demo itself, next to this config
        model["path"] = f"{model['name']}.onnx"
    config["metrics"]["port"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "KAFKA_BOOTSTRAP": kafka_bootstrap}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon.cli",
            "demo",
            "--config",
            str(tmp_path / "config.yaml"),
            "--exit-when-done",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "model: training on machine_temperature_system_failure.csv" in out
    assert "model: training a congestion model on occupancy_6005.csv" in out
    assert (tmp_path / "machine-temperature.onnx").exists() and (tmp_path / "traffic-occupancy.onnx").exists()
    assert "metrics: http://127.0.0.1:" in out
    assert "replay: published 22695 readings of machine_temperature_system_failure.csv" in out
    assert "replay: published 2380 readings of occupancy_6005.csv as lane-6005" in out
    firing = [line for line in out.splitlines() if line.startswith("ALERT firing")]
    assert any(" fault machine-temperature " in line for line in firing)
    congestion = [line for line in firing if " congestion lane-6005 " in line]
    assert congestion and all("forecast " in line and " in 30 min" in line for line in congestion)
    assert "daemon: stopped after 25075 readings" in out
