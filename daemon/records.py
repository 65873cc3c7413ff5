"""Decodes reading records into typed readings, or into rejections with a reason; never raises."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal


# The per-record types are slotted and not frozen: every record builds several, and a frozen
# dataclass's __init__ costs about 4x as much (measured in docs/benchmarks.md). Nothing mutates them.
@dataclass(slots=True)
class Source:
    """Where a record came from; identifies it for alerts, dead letters and logs."""

    topic: str
    partition: int
    offset: int
    record_ts: float | None = None  # the Kafka record's timestamp, epoch seconds: where latency starts


@dataclass(slots=True)
class Reading:
    stream: str
    ts: float  # epoch seconds
    values: dict[str, float]
    source: Source


RejectReason = Literal[
    "empty_value", "too_large", "missing_key", "bad_key", "malformed_json", "not_an_object",
    "missing_stream", "stream_mismatch", "bad_timestamp", "future_timestamp", "missing_values",
    "missing_channel", "non_numeric", "non_finite", "unknown_stream", "non_finite_score",
]  # fmt: skip


@dataclass(frozen=True)
class Rejection:
    """A record that cannot be scored; it goes to the dead-letter topic with ``reason``."""

    reason: RejectReason
    detail: str
    source: Source
    stream: str | None = None
    # Where it failed (the dead letter's errors.stage): decode (not a reading), validate (a reading its
    # model cannot take) or score (the model overflowed on it).
    stage: Literal["decode", "validate", "score"] = "decode"


# Years 1970-9999: what every timestamp must lie in to be formatted back into an alert.
MAX_TS = 253402300799.0


def _finite(raw: Any) -> float | None:
    """``raw`` as a float if it is a real (non-bool) number that fits one, else None."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    try:
        value = float(raw)
    except OverflowError:  # an int beyond float range
        return None
    return value if math.isfinite(value) else None


def parse_timestamp(raw: Any) -> float | None:
    """Epoch seconds from an ISO-8601 string (naive means UTC) or a number of epoch seconds."""
    if type(raw) is float:  # the common case, checked first
        return raw if 0.0 <= raw <= MAX_TS else None
    if isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            ts: float | None = parsed.timestamp()
        except (OverflowError, ValueError):
            return None
    else:
        ts = _finite(raw)
    return ts if ts is not None and 0.0 <= ts <= MAX_TS else None


def format_timestamp(ts: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the form alerts carry."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# The json module's scanner, called directly: json.loads spends more on detecting the encoding and on
# its Python wrappers than on scanning a reading's few dozen bytes.
_scan: Callable[[str, int], tuple[Any, int]] = vars(json.JSONDecoder())["scan_once"]


def loads(value: bytes) -> Any:
    """``json.loads(value)``: the same result, or the same error, at about half the cost per record."""
    try:
        text = value.decode("utf-8")
        body, end = _scan(text, 0)
        if end == len(text):
            return body
    except (UnicodeDecodeError, StopIteration, ValueError, RecursionError):
        pass
    # Anything else (whitespace around the value, a BOM, UTF-16, malformed JSON) takes json.loads's path,
    # so that what is accepted and every error message stay json.loads's own.
    return json.loads(value)


def cached_timestamps() -> Callable[[Any], float | None]:
    """``parse_timestamp`` that parses each distinct text once: for one poll, whose readings of one tick
    usually share their timestamp's text."""
    stamps: dict[str, float | None] = {}

    def timestamp(raw: Any) -> float | None:
        if type(raw) is not str:
            return parse_timestamp(raw)
        if raw not in stamps:
            stamps[raw] = parse_timestamp(raw)
        return stamps[raw]

    return timestamp


def decode(
    key: bytes | None,
    value: bytes | None,
    source: Source,
    max_bytes: int,
    max_future_s: float = 86400.0,
    timestamp: Callable[[Any], float | None] = parse_timestamp,
    read_at: float | None = None,
) -> Reading | Rejection:
    """Checks one record's structure; channel values are checked later against the stream's model.

    A reading stamped more than ``max_future_s`` after its Kafka record was written (or, for a record
    without a timestamp, after ``read_at``, when it was read) is rejected: one bad clock would otherwise
    push event time ahead for every stream (idle eviction runs on it).
    """
    if value is None:
        return Rejection("empty_value", "record has no value (tombstone)", source)
    if not value:
        return Rejection("empty_value", "record's value is empty (0 bytes)", source)
    if len(value) > max_bytes:
        return Rejection("too_large", f"{len(value)} bytes > records.max_bytes={max_bytes}", source)
    if key is None:
        # Kafka spreads unkeyed records over partitions, which would split a stream between instances.
        return Rejection("missing_key", "records must be keyed by their stream id", source)
    try:
        key_stream = key.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection("bad_key", "record key is not UTF-8", source)
    try:
        body = loads(value)
    except (ValueError, RecursionError) as exc:
        return Rejection("malformed_json", str(exc)[:200], source, key_stream)
    if not isinstance(body, dict):
        return Rejection("not_an_object", f"value is a JSON {type(body).__name__}", source, key_stream)
    stream = body.get("stream", key_stream)
    if not isinstance(stream, str) or not stream:
        return Rejection("missing_stream", "'stream' must be a non-empty string", source, key_stream)
    if stream != key_stream:
        return Rejection("stream_mismatch", f"key {key_stream!r} != stream {stream!r}", source, key_stream)
    ts = timestamp(body.get("ts"))
    if ts is None:
        return Rejection("bad_timestamp", _timestamp_problem(body.get("ts")), source, stream)
    written = source.record_ts if source.record_ts is not None else read_at
    if written is not None and ts > written + max_future_s:
        when = (
            "the record was written" if source.record_ts is not None else "it was read (no record timestamp)"
        )
        return Rejection("future_timestamp", f"ts is {ts - written:.0f}s after {when}", source, stream)
    values = body.get("values")
    if not isinstance(values, dict) or not values:
        return Rejection("missing_values", "'values' must be a non-empty object", source, stream)
    return Reading(stream=stream, ts=ts, values=values, source=source)


def _timestamp_problem(raw: Any) -> str:
    """Why ``raw`` is not a timestamp, with the likely fix for the usual mistakes."""
    shown = repr(raw)[:40]
    number = _finite(raw)
    if isinstance(raw, str):
        try:
            if math.isfinite(float(raw)):
                return f"ts {shown} is epoch seconds as a string; send them as a JSON number, or ISO-8601"
        except ValueError:
            pass
    elif number is not None and MAX_TS < number <= MAX_TS * 1000:
        return f"ts {shown} looks like epoch milliseconds; send epoch seconds (or ISO-8601)"
    return f"ts {shown} is not ISO-8601 or epoch seconds in 1970-9999"


def to_vector(
    reading: Reading, channels: tuple[str, ...], last: Sequence[float] | None
) -> tuple[list[float], list[str], int] | Rejection:
    """The reading as a vector in the model's channel order.

    Returns (vector, carried channel names, unknown channel count). A missing channel takes its value
    from ``last`` when given (the caller decides whether carrying is still allowed), otherwise the
    reading is rejected; a JSON ``null`` counts as missing. Values are what JSON decodes to: a float or
    an int; anything else (numpy scalars included) is ``non_numeric``.
    """
    values = reading.values
    row: list[float] = []
    carried: list[str] = []
    matched = 0  # channel names that are keys of ``values``, null ones included
    for i, name in enumerate(channels):
        raw: Any = values.get(name)  # whatever JSON gave
        kind = type(raw)
        if kind is float:  # what JSON numbers with a fraction decode to: the common case
            value: float = raw
        elif kind is int:
            try:
                value = float(raw)
            except OverflowError:  # an int beyond float range
                value = math.inf
        elif raw is None:
            if last is None:
                sent = ", ".join(repr(k[:40]) for k in list(values)[:8]) + (
                    ", ..." if len(values) > 8 else ""
                )
                detail = "is null" if name in values else f"missing (the reading has {sent})"
                return Rejection(
                    "missing_channel",
                    f"channel {name!r} {detail}",
                    reading.source,
                    reading.stream,
                    "validate",
                )
            row.append(float(last[i]))
            carried.append(name)
            matched += name in values  # a null: sent, but without a value
            continue
        else:  # bool, str, list, object
            detail = f"channel {name!r} is {repr(raw)[:40]}"
            return Rejection("non_numeric", detail, reading.source, reading.stream, "validate")
        if not -3.0e38 <= value <= 3.0e38:  # NaN fails both comparisons
            shown = repr(raw)[:40]
            detail = f"channel {name!r} is {shown}"
            return Rejection("non_finite", detail, reading.source, reading.stream, "validate")
        row.append(value)
    # Channel names are unique, so the keys not matched are exactly the unknown ones.
    unknown = len(values) - (matched + len(channels) - len(carried))
    return row, carried, unknown
