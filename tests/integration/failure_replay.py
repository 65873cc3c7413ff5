"""Twenty machines replaying the failure of 2013-12-16 on a two-partition topic: the workload of the
restart and rebalance tests, and the alerts of one run that never stopped."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.kafka_io import encode_json
from daemon.replay import reading_message
from tests.integration.harness import by_stream, daemon_config, read_all
from tests.support import MACHINE_TEMPERATURE
from train.series import load_nab_csv

STREAMS = 20
FIRST_ROW = 3900  # 150 readings from here hold the failure: alerts fire and resolve
# the records, and the alerts of one uninterrupted run by stream
Uninterrupted = tuple[list[tuple[bytes, bytes]], dict[str, list[dict[str, Any]]]]


def produce() -> list[tuple[bytes, bytes]]:
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


def config_for(bootstrap: str, model: Path, checkpoints: Path | None) -> Config:
    """Fresh topics with two partitions; checkpoints in ``checkpoints`` (None: off)."""
    config = daemon_config(bootstrap, model)
    return replace(
        config,
        kafka=replace(config.kafka, topic_partitions=2),
        state=replace(config.state, checkpoint_dir=None if checkpoints is None else str(checkpoints)),
    )


def alerts_of(bootstrap: str, config: Config) -> dict[str, list[dict[str, Any]]]:
    return by_stream([json.loads(r.value) for r in read_all(bootstrap, config.kafka.alerts_topic)])
