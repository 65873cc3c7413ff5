from __future__ import annotations

import json

import numpy as np
import pytest

from daemon.messages import congestion_detail
from daemon.model_file import CongestionInfo
from daemon.records import (
    Reading,
    Rejection,
    Source,
    cached_timestamps,
    decode,
    format_timestamp,
    loads,
    parse_timestamp,
    to_vector,
)

SRC = Source("readings", 0, 42)
CHANNELS = ("vib_rms", "temp_c")


def _decode(value: bytes | None, key: bytes | None = b"press-07") -> Reading | Rejection:
    return decode(key, value, SRC, max_bytes=1024)


def test_valid_reading_with_iso_or_epoch_timestamp() -> None:
    body = {"stream": "press-07", "ts": "2026-11-26T10:15:02.250Z", "values": {"vib_rms": 0.41}}
    reading = _decode(json.dumps(body).encode())
    assert isinstance(reading, Reading)
    assert reading.ts == pytest.approx(1795688102.25)
    assert format_timestamp(reading.ts) == "2026-11-26T10:15:02.250Z"
    assert parse_timestamp(1795688102.25) == reading.ts
    keyless = _decode(json.dumps(body).encode(), key=None)
    assert isinstance(keyless, Rejection) and keyless.reason == "missing_key"


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (None, b"s", "empty_value"),
        (b"", b"s", "empty_value"),
        (b"x" * 2000, b"s", "too_large"),
        (b"{not json", b"s", "malformed_json"),
        (b"[1, 2]", b"s", "not_an_object"),
        (b'{"stream": "s", "ts": 1, "values": {"a": 1}}', None, "missing_key"),
        (b'{"stream": "", "ts": 1, "values": {"a": 1}}', b"s", "missing_stream"),
        (b'{"stream": "s", "ts": 1' + b"9" * 400 + b', "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": 1e12, "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": -5, "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": "0001-01-01T00:00:00+01:00", "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": "9999-12-31T23:59:59-01:00", "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": NaN, "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b"[" * 100000 + b"]" * 100000, b"s", "too_large"),
        (b'{"stream": "a", "ts": 1, "values": {"a": 1}}', b"b", "stream_mismatch"),
        (b'{"stream": "s", "ts": "yesterday", "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": true, "values": {"a": 1}}', b"s", "bad_timestamp"),
        (b'{"stream": "s", "ts": 1, "values": {}}', b"s", "missing_values"),
        (b'{"stream": "s", "ts": 1, "values": [1]}', b"s", "missing_values"),
        (b'{"stream": "s", "ts": 1, "values": {"a": 1}}', b"\xff", "bad_key"),
    ],
)
def test_structural_problems_are_rejected_with_a_reason(
    value: bytes | None, key: bytes | None, reason: str
) -> None:
    result = _decode(value, key)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.source == SRC


def test_reading_stamped_far_after_its_record_is_rejected() -> None:
    src = Source("readings", 0, 42, record_ts=1_700_000_000.0)
    ahead = json.dumps({"stream": "s", "ts": 1_700_000_000.0 + 2 * 86400, "values": {"a": 1}}).encode()
    result = decode(b"s", ahead, src, max_bytes=1024, max_future_s=86400)
    assert isinstance(result, Rejection) and result.reason == "future_timestamp"
    late = json.dumps({"stream": "s", "ts": 1_600_000_000.0, "values": {"a": 1}}).encode()
    assert isinstance(decode(b"s", late, src, max_bytes=1024, max_future_s=86400), Reading)
    # A record without a timestamp (-1 on the wire) is held to when it was read instead: unchecked, one
    # reading stamped in year 9999 would move event time past every stream's idle limit.
    unstamped = Source("readings", 0, 43)
    result = decode(b"s", ahead, unstamped, 1024, 86400, read_at=1_700_000_000.0)
    assert isinstance(result, Rejection) and result.reason == "future_timestamp"
    assert result.detail == "ts is 172800s after it was read (no record timestamp)"
    assert isinstance(decode(b"s", late, unstamped, 1024, 86400, read_at=1_700_000_000.0), Reading)


def test_a_limit_expected_past_year_9999_has_no_date() -> None:
    head = CongestionInfo(channel=0, quantiles=(0.9,), warn=0, limit=20.0, horizon_s=1800.0)
    end = parse_timestamp("9999-12-31T23:50:00Z")
    assert end is not None
    detail = congestion_detail(head, np.array([30.0]), 10.0, end, 20.0)
    assert detail["time_to_limit_s"] == 900.0 and detail["expected_at"] is None


def test_deeply_nested_json_is_rejected_not_raised() -> None:
    result = decode(b"s", b"[" * 50000 + b"]" * 50000, SRC, max_bytes=10**6)
    assert isinstance(result, Rejection) and result.reason == "malformed_json"


def _reading(values: dict[str, object]) -> Reading:
    return Reading("press-07", 1.0, values, SRC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"vib_rms": 0.4}, "missing_channel"),
        ({"vib_rms": 0.4, "temp_c": "hot"}, "non_numeric"),
        ({"vib_rms": 0.4, "temp_c": True}, "non_numeric"),
        ({"vib_rms": 0.4, "temp_c": None}, "missing_channel"),
        ({"vib_rms": float("nan"), "temp_c": 1.0}, "non_finite"),
        ({"vib_rms": float("inf"), "temp_c": 1.0}, "non_finite"),
        ({"vib_rms": 1e39, "temp_c": 1.0}, "non_finite"),
        ({"vib_rms": 10**400, "temp_c": 1.0}, "non_finite"),
    ],
)
def test_channel_problems_are_rejected(values: dict[str, object], reason: str) -> None:
    result = to_vector(_reading(values), CHANNELS, None)
    assert isinstance(result, Rejection) and result.reason == reason


@pytest.mark.parametrize(
    ("ts", "says"),
    [
        ('"1767225720"', "is epoch seconds as a string; send them as a JSON number"),
        ("1767225780000", "looks like epoch milliseconds; send epoch seconds"),
        ('"yesterday"', "is not ISO-8601 or epoch seconds in 1970-9999"),
        ('"NaN"', "is not ISO-8601 or epoch seconds"),
    ],
)
def test_bad_timestamps_say_what_to_send(ts: str, says: str) -> None:
    result = _decode(f'{{"stream": "press-07", "ts": {ts}, "values": {{"a": 1}}}}'.encode())
    assert isinstance(result, Rejection) and result.reason == "bad_timestamp" and says in result.detail


def test_a_missing_channel_names_what_the_reading_has() -> None:
    result = to_vector(_reading({"value": 0.4, "rpm": 1500}), CHANNELS, None)
    assert isinstance(result, Rejection) and result.reason == "missing_channel"
    assert result.detail == "channel 'vib_rms' missing (the reading has 'value', 'rpm')"
    null = to_vector(_reading({"vib_rms": None, "temp_c": 1.0}), CHANNELS, None)
    assert isinstance(null, Rejection) and null.detail == "channel 'vib_rms' is null"


def test_vector_follows_model_order_counts_unknown_and_carries_missing() -> None:
    result = to_vector(_reading({"temp_c": 61.2, "vib_rms": 0.41, "rpm": 1500}), CHANNELS, None)
    assert not isinstance(result, Rejection)
    vector, carried, unknown = result
    np.testing.assert_allclose(vector, [0.41, 61.2], rtol=1e-6)
    assert (carried, unknown) == ([], 1)
    carried_result = to_vector(_reading({"temp_c": 62.0}), CHANNELS, vector)
    assert not isinstance(carried_result, Rejection)
    np.testing.assert_allclose(carried_result[0], [0.41, 62.0], rtol=1e-6)
    assert carried_result[1] == ["vib_rms"]


def test_integer_channels_become_floats_beside_float_ones() -> None:
    result = to_vector(_reading({"temp_c": 61.5, "vib_rms": 1, "rpm": 2}), CHANNELS, [9.0, 9.0])
    assert not isinstance(result, Rejection)
    vector, carried, unknown = result
    assert vector == [1.0, 61.5] and all(type(v) is float for v in vector)
    assert (carried, unknown) == ([], 1)


def test_a_null_channel_is_carried_and_not_counted_unknown() -> None:
    last = np.array([0.5, 60.0], dtype=np.float32)
    for values, unknown in (
        ({"vib_rms": None, "temp_c": 61.0}, 0),
        ({"vib_rms": None, "x": 1.0, "temp_c": 1.0}, 1),
    ):
        result = to_vector(_reading(values), CHANNELS, last)
        assert not isinstance(result, Rejection)
        assert (result[1], result[2]) == (["vib_rms"], unknown)
    missing = to_vector(_reading({"vib_rms": None, "temp_c": 61.0}), CHANNELS, None)
    assert isinstance(missing, Rejection) and missing.reason == "missing_channel"


@pytest.mark.parametrize(
    "value",
    [
        b'{"stream":"a","ts":1.5,"values":{"x":1e308,"y":-0.0,"z":12345678901234567890123}}',
        b'  {"a": 1}\n',  # whitespace around: json.loads accepts it
        b'\xef\xbb\xbf{"a": 1}',  # a UTF-8 byte-order mark
        '{"a": "\u00e9\u6f22"}'.encode("utf-16"),
        '{"a": "\u00e9"}'.encode(),
        b'{"a": NaN, "b": -Infinity}',
        b'{"a": "\\ud800"}',  # a lone surrogate, escaped
        b'{"a": "\xed\xa0\x80"}',  # a lone surrogate, raw: json.loads decodes it with surrogatepass
        b'{"a": 1} x',
        b'{"a": 1}{"b": 2}',
        b"",
        b"\xff\xfe\xfd",
        b'{"a": 1',
        b"[" * 100_000,
        b"1",
    ],
)
def test_loads_gives_what_json_loads_gives(value: bytes) -> None:
    def outcome(fn: object) -> tuple[str, object]:
        try:
            return "value", repr(fn(value))  # type: ignore[operator]  # repr: NaN != NaN
        except (ValueError, RecursionError) as exc:
            return type(exc).__name__, str(exc)

    assert outcome(loads) == outcome(json.loads)


def test_cached_timestamps_parse_like_parse_timestamp() -> None:
    parse = cached_timestamps()
    for raw in [
        "2026-11-26T10:15:02.250Z",
        "2026-11-26T10:15:02.250Z",
        "nonsense",
        "nonsense",
        12.5,
        [1],
        None,
    ]:
        assert parse(raw) == parse_timestamp(raw)
