"""Many streams and poison records through the real broker: every expected alert once, bad records
dead-lettered with reasons while the good records around them are scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.config import Config
from daemon.engine import HostEngine
from daemon.kafka_io import encode_json
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from daemon.replay import reading_message
from tests.integration.harness import daemon_config, read_all, run_daemon
from tests.support import MACHINE_TEMPERATURE
from train.pipeline import TrainReport
from train.series import load_nab_csv

pytestmark = pytest.mark.integration

STREAMS = 1000
READINGS = 48
# The first reading of the failure of 2013-12-16 (NAB window 1) that the demo model alarms on.
EVENT_ROW = 3971


def _good_records() -> list[tuple[bytes, bytes]]:
    """Stream i replays 48 readings reaching the failure 11-30 readings in, interleaved as a plant sends."""
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    per_stream = []
    for i in range(STREAMS):
        start = EVENT_ROW - 30 + i % 20
        stream = f"machine-{i:04d}"
        per_stream.append(
            [
                (
                    stream.encode(),
                    encode_json(
                        reading_message(
                            stream, float(series.ts[t]), series.channels, series.values[t].tolist()
                        )
                    ),
                )
                for t in range(start, start + READINGS)
            ]
        )
    return [rec for step in zip(*per_stream, strict=True) for rec in step]


def _poison() -> list[tuple[bytes | None, bytes, str]]:
    """(key, value, expected reason); all keyed to a live stream so they sit among its good readings."""
    key = b"machine-0007"
    reading = {"stream": "machine-0007", "ts": "2013-12-16T00:00:00Z", "values": {"temp_c": 80.0}}
    return [
        (key, b'{"stream": "machine-0007", "ts": ', "malformed_json"),
        (key, json.dumps({**reading, "values": {"pressure": 1.0}}).encode(), "missing_channel"),
        (key, b'{"stream": "machine-0007", "ts": 1387152000, "values": {"temp_c": NaN}}', "non_finite"),
        (key, json.dumps({**reading, "values": {"temp_c": "82"}}).encode(), "non_numeric"),
        (key, json.dumps({**reading, "values": {"temp_c": 80.0}, "pad": "x" * 70000}).encode(), "too_large"),
        (b"oven-1", json.dumps({**reading, "stream": "oven-1"}).encode(), "unknown_stream"),
        (key, b"[1, 2, 3]", "not_an_object"),
    ]


def _expected_alerts(
    config: Config, model: Path, records: list[tuple[bytes | None, bytes]]
) -> list[dict[str, Any]]:
    """The same core, offline, one poll: what the daemon must publish."""
    processor = Processor(config, {"machine-temperature": HostEngine(model, 1024)})
    raw = [RawRecord(k, v, Source(config.kafka.readings_topic, 0, i)) for i, (k, v) in enumerate(records)]
    return processor.process(raw).alerts


def test_thousand_streams_with_poison_records(kafka_bootstrap: str, machine_model: TrainReport) -> None:
    good = _good_records()
    poison = _poison()
    rng = np.random.default_rng(5)
    positions = sorted(rng.choice(len(good), size=len(poison), replace=False).tolist())
    records: list[tuple[bytes | None, bytes]] = list(good)
    for pos, (key, value, _) in zip(reversed(positions), reversed(poison), strict=True):
        records.insert(pos, (key, value))
    config = daemon_config(kafka_bootstrap, machine_model.model_path, streams=("machine-*",), scores=True)
    service = run_daemon(config, records, timeout=300)
    assert service.processed == len(records)

    dead = read_all(kafka_bootstrap, config.kafka.dead_letter_topic)
    assert len(dead) == len(poison)
    by_value = {r.value: r for r in dead}
    for key, value, reason in poison:
        record = by_value[value]
        headers = {k: v.decode() for k, v in record.headers}
        assert record.key == key
        assert headers["errors.reason"] == reason
        stage = (
            "validate"
            if reason in {"missing_channel", "non_finite", "non_numeric", "unknown_stream"}
            else "decode"
        )
        assert headers["errors.stage"] == stage, reason
        assert headers["errors.topic"] == config.kafka.readings_topic
        assert int(headers["errors.offset"]) == records.index((key, value))

    assert config.kafka.scores_topic is not None
    scores = read_all(kafka_bootstrap, config.kafka.scores_topic)
    assert len(scores) == len(good), "every good record is scored, the poison ones are not"
    assert len({(r.key, json.loads(r.value)["ts"]) for r in scores}) == len(good)

    alerts = [json.loads(r.value) for r in read_all(kafka_bootstrap, config.kafka.alerts_topic)]
    expected = _expected_alerts(config, machine_model.model_path, records)
    assert len(expected) >= STREAMS, "every stream meets the failure, so each should alarm at least once"
    assert sorted(a["id"] for a in alerts) == sorted(a["id"] for a in expected)
    identity = sorted((a["id"], a["state"], a["severity"]) for a in alerts)
    assert len(set(identity)) == len(identity), "an alert appeared twice"
    assert identity == sorted((a["id"], a["state"], a["severity"]) for a in expected)
    by_identity = {(a["id"], a["state"], a["severity"]): a for a in expected}
    for alert in alerts:
        assert alert == by_identity[(alert["id"], alert["state"], alert["severity"])]
