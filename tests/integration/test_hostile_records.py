"""Records Kafka carries but a well-behaved producer would not write, through the real broker: each
dead-lettered as a record Kafka takes, with the good readings around it scored, and the daemon running on."""

from __future__ import annotations

import json

import pytest

from daemon.kafka_io import encode_json
from daemon.replay import reading_message
from tests.integration.harness import Unchecked, daemon_config, read_all, run_daemon
from tests.support import MACHINE_TEMPERATURE
from train.pipeline import TrainReport
from train.series import load_nab_csv

pytestmark = pytest.mark.integration

PAD = 1_048_000  # with its key and headers, just under what the broker takes in one record


def test_records_kafka_would_refuse_to_take_back_are_dead_lettered(
    kafka_bootstrap: str, machine_model: TrainReport
) -> None:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    readings = [
        reading_message("m-1", float(series.ts[t]), series.channels, series.values[t].tolist())
        for t in range(3000, 3012)
    ]
    good = [(b"m-1", encode_json(reading)) for reading in readings]
    year_9999 = {"stream": "m-2", "ts": 253402200000.0, "values": {"temp_c": 70.0}}
    hostile: list[tuple[Unchecked, str]] = [
        (Unchecked(None, None), "empty_value"),
        (Unchecked(b"m-1", b"{broken", (("trace", None),)), "malformed_json"),
        (Unchecked(b"m-1", b"[1]", (("errors.reason", b"forged"),)), "not_an_object"),
        (Unchecked(b"m-1", b'{"pad": "' + b"x" * PAD + b'"}'), "too_large"),
        (Unchecked(b"m-2", json.dumps(year_9999).encode(), timestamp_ms=-1), "future_timestamp"),
    ]
    records: list[tuple[bytes | None, bytes] | Unchecked] = []
    for i, (bad, _) in enumerate(hostile):
        records += [*good[2 * i : 2 * i + 2], bad]
    records += good[2 * len(hostile) :]
    config = daemon_config(kafka_bootstrap, machine_model.model_path, scores=True)
    service = run_daemon(config, records)
    assert service.processed == len(records)

    dead = read_all(kafka_bootstrap, config.kafka.dead_letter_topic)
    assert [dict(r.headers)["errors.reason"] for r in dead] == [reason.encode() for _, reason in hostile]
    assert [int(dict(r.headers)["errors.offset"]) for r in dead] == [records.index(b) for b, _ in hostile]
    null_record, null_header, _, too_large, _ = (dict(r.headers) for r in dead)
    assert dead[0].key is None and dead[0].value == b"" and null_record["errors.original.value"] == b"null"
    assert null_header["trace"] == b"" and null_header["errors.original.null_headers"] == b"trace"
    assert [v for k, v in dead[2].headers if k.startswith("errors.reason")] == [b"not_an_object"]
    assert dead[3].value == b""
    assert too_large["errors.original.value"] == f"left out: {PAD + 11} bytes".encode()

    assert config.kafka.scores_topic is not None
    scores = [json.loads(r.value) for r in read_all(kafka_bootstrap, config.kafka.scores_topic)]
    assert [(s["stream"], s["ts"]) for s in scores] == [("m-1", r["ts"]) for r in readings], (
        "every good reading is scored, in order, and the year-9999 one is not"
    )
