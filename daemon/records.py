"""Decodes reading records into typed readings, or into rejections with a reason; never raises."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Source:
    """Where a record came from; identifies it for alerts, dead letters and logs."""

    topic: str
    partition: int
    offset: int
    record_ts: float | None = None  # the Kafka record's timestamp, epoch seconds: where latency starts


@dataclass(frozen=True)
class Reading:
    stream: str
    ts: float  # epoch seconds
    values: dict[str, float]
    source: Source


@dataclass(frozen=True)
class Rejection:
    """A record that cannot be scored; it goes to the dead-letter topic with ``reason``."""

    reason: str
    detail: str
    source: Source
    stream: str | None = None


def parse_timestamp(raw: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string (naive means UTC) or a number of epoch seconds."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw) if math.isfinite(raw) else None
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_timestamp(ts: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the form alerts carry."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def decode(key: bytes | None, value: bytes | None, source: Source, max_bytes: int) -> Reading | Rejection:
    """Checks one record's structure; channel values are checked later against the stream's model."""
    if value is None:
        return Rejection("empty_value", "record has no value (tombstone)", source)
    if len(value) > max_bytes:
        return Rejection("too_large", f"{len(value)} bytes > records.max_bytes={max_bytes}", source)
    key_stream = None
    if key is not None:
        try:
            key_stream = key.decode("utf-8")
        except UnicodeDecodeError:
            return Rejection("bad_key", "record key is not UTF-8", source)
    try:
        body = json.loads(value)
    except (ValueError, RecursionError) as exc:
        return Rejection("malformed_json", str(exc)[:200], source, key_stream)
    if not isinstance(body, dict):
        return Rejection("not_an_object", f"value is a JSON {type(body).__name__}", source, key_stream)
    stream = body.get("stream", key_stream)
    if not isinstance(stream, str) or not stream:
        return Rejection("missing_stream", "no stream id in key or 'stream' field", source, key_stream)
    if key_stream is not None and stream != key_stream:
        return Rejection("stream_mismatch", f"key {key_stream!r} != stream {stream!r}", source, key_stream)
    ts = parse_timestamp(body.get("ts"))
    if ts is None:
        return Rejection(
            "bad_timestamp", f"ts {body.get('ts')!r} is not ISO-8601 or epoch seconds", source, stream
        )
    values = body.get("values")
    if not isinstance(values, dict) or not values:
        return Rejection("missing_values", "'values' must be a non-empty object", source, stream)
    return Reading(stream=stream, ts=ts, values=values, source=source)


def to_vector(
    reading: Reading, channels: tuple[str, ...], last: npt.NDArray[np.float32] | None
) -> tuple[npt.NDArray[np.float32], list[str], int] | Rejection:
    """The reading as a vector in the model's channel order.

    Returns (vector, carried channel names, unknown channel count). A missing channel takes its value
    from ``last`` when given (the caller decides whether carrying is still allowed), otherwise the
    reading is rejected.
    """
    vector = np.empty(len(channels), dtype=np.float32)
    carried: list[str] = []
    for i, name in enumerate(channels):
        raw = reading.values.get(name)
        if raw is None:
            if last is None:
                return Rejection(
                    "missing_channel", f"channel {name!r} missing", reading.source, reading.stream
                )
            vector[i] = last[i]
            carried.append(name)
            continue
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            return Rejection("non_numeric", f"channel {name!r} is {raw!r}", reading.source, reading.stream)
        if not math.isfinite(raw) or abs(raw) > 3.0e38:
            return Rejection("non_finite", f"channel {name!r} is {raw!r}", reading.source, reading.stream)
        vector[i] = raw
    unknown = sum(1 for name in reading.values if name not in channels)
    return vector, carried, unknown
