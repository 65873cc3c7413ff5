"""Integration fixtures: the alerts of one uninterrupted run of the failure replay, computed once."""

from __future__ import annotations

import pytest

from tests.integration.failure_replay import Uninterrupted, alerts_of, config_for, produce
from tests.integration.harness import run_daemon
from train.pipeline import TrainReport


@pytest.fixture(scope="session")
def uninterrupted(kafka_bootstrap: str, machine_model: TrainReport) -> Uninterrupted:
    """The failure replay's records, and the alerts of a daemon that never stopped, by stream."""
    records = produce()
    config = config_for(kafka_bootstrap, machine_model.model_path, None)
    run_daemon(config, records)
    return records, alerts_of(kafka_bootstrap, config)
