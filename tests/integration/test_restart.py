"""A daemon stopped and started again resumes its streams from the checkpoint: the alerts of the two runs
together are those of one run that never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.failure_replay import STREAMS, Uninterrupted, alerts_of, config_for
from tests.integration.harness import run_daemon
from train.pipeline import TrainReport

pytestmark = pytest.mark.integration


def test_restart_resumes_from_the_checkpoint(
    kafka_bootstrap: str, machine_model: TrainReport, tmp_path: Path, uninterrupted: Uninterrupted
) -> None:
    produce, expected = uninterrupted
    half = len(produce) // 2
    assert sum(len(a) for a in expected.values()) >= STREAMS, "the failure makes every stream alert"

    config = config_for(kafka_bootstrap, machine_model.model_path, tmp_path)
    run_daemon(config, produce[:half])
    assert list(tmp_path.glob("*.ckpt.npz")), "a clean stop leaves a checkpoint"
    second = run_daemon(config, produce[half:])
    restored = second.metrics.registry.get_sample_value("faultcast_streams_restored_total")
    assert restored == STREAMS  # every stream came back warm
    assert alerts_of(kafka_bootstrap, config) == expected

    # Without the checkpoint the second half starts cold, and the alerts are not those of one run.
    cold = config_for(kafka_bootstrap, machine_model.model_path, None)
    run_daemon(cold, produce[:half])
    run_daemon(cold, produce[half:])
    assert alerts_of(kafka_bootstrap, cold) != expected
