"""Records Kafka carries but a well-behaved producer would not write, through the real broker: each
dead-lettered as a record Kafka takes, with the good readings around it scored, and the daemon running on;
and records deleted before the daemon read them, reported."""

from __future__ import annotations

import json
import logging

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from daemon.kafka_io import encode_json, ensure_topics
from daemon.logs import quiet_kafka
from daemon.replay import reading_message
from tests.integration.harness import Unchecked, daemon_config, read_all, run_daemon
from tests.support import MACHINE_TEMPERATURE
from train.pipeline import TrainReport
from train.series import load_nab_csv

pytestmark = pytest.mark.integration

PAD = 1_048_000  # with its key and headers, just under what the broker takes in one record


def _readings(stream: str, count: int) -> list[dict[str, object]]:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    return [
        reading_message(stream, float(series.ts[t]), series.channels, series.values[t].tolist())
        for t in range(3000, 3000 + count)
    ]


def test_records_kafka_would_refuse_to_take_back_are_dead_lettered(
    kafka_bootstrap: str, machine_model: TrainReport
) -> None:
    readings = _readings("m-1", 12)
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


def test_readings_deleted_before_they_were_read_are_reported(
    kafka_bootstrap: str, machine_model: TrainReport, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention deleted records the group had not read yet: kafka-python skips them, saying so at INFO
    only. faultcast's log makes it a warning that names the partition and the offset."""
    config = daemon_config(kafka_bootstrap, machine_model.model_path, scores=True)
    ensure_topics(config.kafka)
    readings = _readings("m-1", 20)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for reading in readings:
        producer.send(config.kafka.readings_topic, key=b"m-1", value=encode_json(reading))
    producer.close()
    partition = TopicPartition(config.kafka.readings_topic, 0)
    group = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=config.kafka.group_id)
    group.commit({partition: OffsetAndMetadata(5, "", -1)})  # the group had read 5 readings
    group.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    admin.delete_records({partition: 15})  # retention takes the next 10 before the daemon is back
    admin.close()

    quiet_kafka(logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="kafka"):
        run_daemon(config, [], expect=5)
    [line] = [r for r in caplog.records if r.getMessage().startswith("readings skipped or read again")]
    assert line.levelno == logging.WARNING
    assert "Fetch offset 5 is out of range" in line.getMessage() and "partition=0" in line.getMessage()
    assert config.kafka.scores_topic is not None
    scores = [json.loads(r.value)["ts"] for r in read_all(kafka_bootstrap, config.kafka.scores_topic)]
    assert scores == [r["ts"] for r in readings[15:]]


def test_readings_of_an_aborted_transaction_are_not_scored(
    kafka_bootstrap: str, machine_model: TrainReport
) -> None:
    """A producer that aborts a transaction never meant those readings; kafka-python reads them unless
    told otherwise (faultcast's consumer reads committed records only)."""
    config = daemon_config(kafka_bootstrap, machine_model.model_path, scores=True)
    ensure_topics(config.kafka)
    readings = _readings("m-1", 15)
    topic = config.kafka.readings_topic
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for reading in readings[:5]:
        plain.send(topic, key=b"m-1", value=encode_json(reading))
    plain.flush()
    aborted = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{config.kafka.group_id}")
    aborted.init_transactions()
    aborted.begin_transaction()
    for reading in readings[5:10]:
        aborted.send(topic, key=b"m-1", value=encode_json(reading))
    aborted.flush()
    aborted.abort_transaction()
    aborted.close()
    for reading in readings[10:]:
        plain.send(topic, key=b"m-1", value=encode_json(reading))
    plain.close()

    run_daemon(config, [], expect=10)
    assert config.kafka.scores_topic is not None
    scores = [json.loads(r.value)["ts"] for r in read_all(kafka_bootstrap, config.kafka.scores_topic)]
    assert scores == [r["ts"] for r in readings[:5] + readings[10:]]
