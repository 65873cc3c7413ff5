"""A daemon stopped and started again resumes its streams from the checkpoint: the alerts of the two runs
together are those of one run that never stopped."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daemon.config import Config
from daemon.kafka_io import encode_json
from daemon.replay import reading_message
from tests.integration.harness import daemon_config, read_all, run_daemon
from tests.support import MACHINE_TEMPERATURE
from train.pipeline import TrainReport
from train.series import load_nab_csv

pytestmark = pytest.mark.integration

STREAMS = 20
FIRST_ROW = 3900  # 150 readings from here hold the failure of 2013-12-16: alerts fire and resolve


def _produce() -> list[tuple[bytes, bytes]]:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    out = []
    for t in range(150):
        for i in range(STREAMS):
            row = FIRST_ROW + 3 * i + t
            stream = f"machine-{i:02d}"
            message = reading_message(
                stream, float(series.ts[row]), ("temp_c",), [float(series.values[row, 0])]
            )
            out.append((stream.encode(), encode_json(message)))
    return out


def _config(bootstrap: str, model: Path, checkpoints: Path | None) -> Config:
    config = daemon_config(bootstrap, model)
    return replace(
        config,
        kafka=replace(config.kafka, topic_partitions=2),
        state=replace(config.state, checkpoint_dir=None if checkpoints is None else str(checkpoints)),
    )


def _by_stream(alerts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts:
        out.setdefault(alert["stream"], []).append({**alert, "source": {**alert["source"], "topic": None}})
    return out


def _alerts(bootstrap: str, config: Config) -> dict[str, list[dict[str, Any]]]:
    return _by_stream([json.loads(r.value) for r in read_all(bootstrap, config.kafka.alerts_topic)])


def test_restart_resumes_from_the_checkpoint(
    kafka_bootstrap: str, machine_model: TrainReport, tmp_path: Path
) -> None:
    produce = _produce()
    half = len(produce) // 2

    straight = _config(kafka_bootstrap, machine_model.model_path, None)
    run_daemon(straight, produce)
    expected = _alerts(kafka_bootstrap, straight)
    assert sum(len(a) for a in expected.values()) >= STREAMS, "the failure makes every stream alert"

    config = _config(kafka_bootstrap, machine_model.model_path, tmp_path)
    run_daemon(config, produce[:half])
    assert list(tmp_path.glob("*.ckpt.npz")), "a clean stop leaves a checkpoint"
    second = run_daemon(config, produce[half:])
    restored = second.metrics.registry.get_sample_value("faultcast_streams_restored_total")
    assert restored == STREAMS  # every stream came back warm
    assert _alerts(kafka_bootstrap, config) == expected

    # Without the checkpoint the second half starts cold, and the alerts are not those of one run.
    cold = _config(kafka_bootstrap, machine_model.model_path, None)
    run_daemon(cold, produce[:half])
    run_daemon(cold, produce[half:])
    assert _alerts(kafka_bootstrap, cold) != expected
