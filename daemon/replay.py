"""Publishes recorded series as readings (the README's reading format) to the readings topic."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice

import numpy as np
from kafka import KafkaProducer

from daemon.errors import BrokerError
from daemon.kafka_io import encode_json
from daemon.records import format_timestamp
from train.series import Series


def reading_message(
    stream: str, ts: float, channels: tuple[str, ...], values: list[float]
) -> dict[str, object]:
    return {"stream": stream, "ts": format_timestamp(ts), "values": dict(zip(channels, values, strict=True))}


def in_time_order(streams: Sequence[Series]) -> Iterator[tuple[int, int]]:
    """(stream index, row) of every row of ``streams``, merged by time as a topic would deliver them; rows
    at the same time come in stream order, and a stream's own rows in their order."""
    if not streams:
        return
    ts = np.concatenate([s.ts for s in streams])
    which = np.concatenate([np.full(len(s), i) for i, s in enumerate(streams)])
    row = np.concatenate([np.arange(len(s)) for s in streams])
    order = np.lexsort((row, which, ts))  # the last key sorts first
    yield from zip(which[order].tolist(), row[order].tolist(), strict=True)


def replay(
    producer: KafkaProducer,
    topic: str,
    streams: Sequence[tuple[str, Series]],
    speedup: float | None = None,
    limit: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Sends the rows of ``streams`` (stream id, series) merged in time order, each keyed by its stream id;
    ``speedup`` paces them by their own clock. Returns the number of records acknowledged by the broker.
    """
    order = list(islice(in_time_order([s for _, s in streams]), limit))
    first = float(streams[order[0][0]][1].ts[order[0][1]]) if order else 0.0
    started = time.monotonic()
    futures = []
    for i, row in order:
        stream, series = streams[i]
        ts = float(series.ts[row])
        if speedup is not None:
            due = (ts - first) / speedup - (time.monotonic() - started)
            if due > 0:
                sleep(due)
        message = reading_message(stream, ts, series.channels, series.values[row].tolist())
        futures.append(producer.send(topic, key=stream.encode("utf-8"), value=encode_json(message)))
    producer.flush()
    failed = [f for f in futures if f.failed()]
    if failed:
        raise BrokerError(
            f"{len(failed)} of {len(order)} readings were not acknowledged: {failed[0].exception}"
        )
    return len(order)
