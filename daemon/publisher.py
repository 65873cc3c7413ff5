"""Publishes what one poll produced: dead letters, alerts and scores, each logged with its source."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from daemon.config import KafkaConfig
from daemon.dead_letter import dead_letter
from daemon.errors import BrokerError
from daemon.kafka_io import encode_json
from daemon.log_budget import LogBudget
from daemon.messages import score_message
from daemon.model_file import ModelInfo
from daemon.processor import Outcome
from daemon.records import Source

log = logging.getLogger("faultcast.service")


def publish(
    producer: KafkaProducer,
    k: KafkaConfig,
    outcome: Outcome,
    infos: dict[str, ModelInfo],
    budget: LogBudget,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
) -> list[Any]:
    """Sends one poll's dead letters, alerts and scores; returns the send futures.

    Every alert is logged. Rejected records and dropped readings are logged within ``budget`` per reason;
    ``log_held_back`` reports the rest."""
    futures = []
    max_bytes = int(k.client.get("max_request_size", KafkaProducer.DEFAULT_CONFIG["max_request_size"]))
    for record, rejection in outcome.rejected:
        if budget.allow(f"rejected:{rejection.reason}"):
            where = _where(record.source)
            fields = {"reason": rejection.reason, "detail": rejection.detail, "stream": rejection.stream}
            log.warning("record rejected", extra={**fields, **where})
        letter = dead_letter(record, rejection, max_bytes)
        futures.append(_send(producer, k.dead_letter_topic, letter.key, letter.value, letter.headers))
    for drop in outcome.dropped:
        if budget.allow(f"dropped:{drop.reason}"):
            log.info(
                "reading dropped", extra={"reason": drop.reason, "stream": drop.stream, **_where(drop.source)}
            )
    for alert in outcome.alerts:
        log.info(
            "alert",
            extra={
                "id": alert["id"],
                "kind": alert["kind"],
                "state": alert["state"],
                "severity": alert["severity"],
                "stream": alert["stream"],
                **{k: alert["source"][k] for k in ("topic", "partition", "offset")},
            },
        )
        futures.append(_send(producer, k.alerts_topic, alert["stream"].encode(), encode_json(alert)))
        if on_alert is not None:
            on_alert(alert)
    if k.scores_topic:
        for wave in outcome.scored_waves:
            for i, sampled in enumerate(wave.publish or ()):
                if not sampled:
                    continue
                s = wave.row(i)
                message = score_message(s.stream, s.ts, s.score, s.model, infos[s.model], s.forecast, s.fault)
                futures.append(_send(producer, k.scores_topic, s.stream.encode(), encode_json(message)))
    return futures


def _send(
    producer: KafkaProducer,
    topic: str,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]] | None = None,
) -> Any:
    """``producer.send``; what it refuses at once (a topic whose metadata does not come within
    max_block_ms, a record over the size limits) is a BrokerError: nothing of this poll is committed."""
    try:
        return producer.send(topic, key=key, value=value, headers=headers)
    except (KafkaError, TypeError, ValueError) as exc:  # ValueError, TypeError: what send() refuses
        raise BrokerError(
            f"publishing to Kafka topic {topic!r} failed: {exc!r}; records are not committed and will be "
            "read again after restart"
        ) from exc


def _where(source: Source) -> dict[str, Any]:
    return {"topic": source.topic, "partition": source.partition, "offset": source.offset}


def log_held_back(budget: LogBudget, final: bool = False) -> None:
    """One line per reason for the rejected records and dropped readings the budget kept out of the log,
    once their window is over (``final``: all of them, when the daemon stops)."""
    for key, count in sorted(budget.held_back(final).items()):
        what, reason = key.split(":", 1)
        if what == "rejected":
            log.warning(
                "more rejected records than the log shows; faultcast_records_rejected_total counts them all",
                extra={"reason": reason, "not_logged": count},
            )
        else:
            log.info(
                "more dropped readings than the log shows; faultcast_readings_dropped_total counts them all",
                extra={"reason": reason, "not_logged": count},
            )
