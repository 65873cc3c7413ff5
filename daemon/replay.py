"""Publishes a recorded series as readings (the README's reading format) to the readings topic."""

from __future__ import annotations

import time
from collections.abc import Callable

from kafka import KafkaProducer

from daemon.errors import BrokerError
from daemon.kafka_io import encode_json
from daemon.records import format_timestamp
from train.series import Series


def reading_message(
    stream: str, ts: float, channels: tuple[str, ...], values: list[float]
) -> dict[str, object]:
    return {"stream": stream, "ts": format_timestamp(ts), "values": dict(zip(channels, values, strict=True))}


def replay(
    producer: KafkaProducer,
    topic: str,
    stream: str,
    series: Series,
    speedup: float | None = None,
    limit: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Sends ``series`` row by row keyed by ``stream``; ``speedup`` paces by the series' own clock.

    Returns the number of records acknowledged by the broker.
    """
    rows = len(series) if limit is None else min(limit, len(series))
    started = time.monotonic()
    futures = []
    for t in range(rows):
        if speedup is not None:
            due = (series.ts[t] - series.ts[0]) / speedup - (time.monotonic() - started)
            if due > 0:
                sleep(due)
        message = reading_message(stream, float(series.ts[t]), series.channels, series.values[t].tolist())
        futures.append(producer.send(topic, key=stream.encode("utf-8"), value=encode_json(message)))
    producer.flush()
    failed = [f for f in futures if f.failed()]
    if failed:
        raise BrokerError(f"{len(failed)} of {rows} readings were not acknowledged: {failed[0].exception}")
    return rows
