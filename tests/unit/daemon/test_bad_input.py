"""Bad input of every kind at once, seeded: the daemon core never raises, accounts for every record, and
scores the good readings around the bad ones as if the bad ones had not come."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from daemon.config import parse_config
from daemon.engine import HostEngine
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from train.pipeline import TrainReport

STEP = 300.0
MAX_BYTES = 4096

Record = tuple[bytes | None, bytes | None]
Mutator = Callable[[np.random.Generator, str, float, float], Record]


def _good(stream: str, ts: float, value: float) -> Record:
    return stream.encode(), json.dumps({"stream": stream, "ts": ts, "values": {"temp_c": value}}).encode()


def _body(stream: str, body: object) -> Record:
    return stream.encode(), json.dumps(body).encode()


# Each takes (rng, stream, ts, value) and returns a (key, value) pair that must not be scored as is, or
# a reading that is valid but may be carried, dropped or rejected by the stream's model.
MUTATORS: dict[str, Mutator] = {
    "truncated": lambda r, s, t, v: (s.encode(), _good(s, t, v)[1][: int(r.integers(1, 20))]),
    "flipped_byte": lambda r, s, t, v: (s.encode(), _flip(r, _good(s, t, v)[1])),
    "not_utf8": lambda r, s, t, v: (s.encode(), b'{"stream": "\xff\xfe", "ts": 1}'),
    "empty": lambda r, s, t, v: (s.encode(), b""),
    "tombstone": lambda r, s, t, v: (s.encode(), None),
    "no_key": lambda r, s, t, v: (None, _good(s, t, v)[1]),
    "bad_key": lambda r, s, t, v: (b"\xc3\x28", _good(s, t, v)[1]),
    "huge": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"temp_c": v}, "pad": "x" * 5000}),
    "deep": lambda r, s, t, v: (s.encode(), b"[" * 1500 + b"]" * 1500),
    "array": lambda r, s, t, v: _body(s, [s, t, v]),
    "null": lambda r, s, t, v: (s.encode(), b"null"),
    "values_list": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": [v]}),
    "values_empty": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {}}),
    "value_text": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"temp_c": str(v)}}),
    "value_bool": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"temp_c": True}}),
    "value_null": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"temp_c": None}}),
    "value_nested": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"temp_c": {"v": v}}}),
    "value_nan": lambda r, s, t, v: (s.encode(), _good(s, t, v)[1].replace(str(v).encode(), b"NaN")),
    "value_inf": lambda r, s, t, v: (s.encode(), _good(s, t, v)[1].replace(str(v).encode(), b"1e999")),
    "value_overflow": lambda r, s, t, v: _good(s, t, 3e38),
    "missing_channel": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"pressure": v}}),
    "extra_channel": lambda r, s, t, v: _body(s, {"stream": s, "ts": t, "values": {"temp_c": v, "rpm": 1.0}}),
    "ts_text": lambda r, s, t, v: _body(s, {"stream": s, "ts": "yesterday", "values": {"temp_c": v}}),
    "ts_nan": lambda r, s, t, v: (s.encode(), _good(s, t, v)[1].replace(f"{t}".encode(), b"NaN", 1)),
    "ts_bool": lambda r, s, t, v: _body(s, {"stream": s, "ts": True, "values": {"temp_c": v}}),
    "ts_missing": lambda r, s, t, v: _body(s, {"stream": s, "values": {"temp_c": v}}),
    "ts_far_future": lambda r, s, t, v: _good(s, t + 1e9, v),
    "ts_old": lambda r, s, t, v: _good(s, t - 10 * STEP, v),
    "ts_repeated": lambda r, s, t, v: _good(s, t - STEP, v),
    "stream_mismatch": lambda r, s, t, v: (s.encode(), _good("other-" + s, t, v)[1]),
    "stream_number": lambda r, s, t, v: _body(s, {"stream": 7, "ts": t, "values": {"temp_c": v}}),
    "stream_empty": lambda r, s, t, v: (b"", _good("", t, v)[1]),
    "unknown_stream": lambda r, s, t, v: _good("pump-" + s, t, v),
    "duplicate_key": lambda r, s, t, v: (s.encode(), _good(s, t, v)[1][:-1] + b', "ts": "x"}'),
}


def _flip(rng: np.random.Generator, value: bytes) -> bytes:
    data = bytearray(value)
    data[int(rng.integers(len(data)))] = int(rng.integers(256))
    return bytes(data)


def _polls(seed: int) -> tuple[list[list[RawRecord]], list[float]]:
    """Ten streams with a good reading every 300 s, among which about half the records are mutated, and
    a control stream that only ever sends good readings, in polls of 97 records; and the control
    stream's timestamps."""
    rng = np.random.default_rng(seed)
    names = list(MUTATORS)
    records: list[Record] = []
    control: list[float] = []
    for step in range(300):
        for k in range(11):
            stream = "m-control" if k == 10 else f"m-{k}"
            ts, value = 1.7e9 + STEP * step, round(70.0 + float(rng.normal(0, 1)), 3)
            if stream != "m-control" and rng.random() < 0.5:
                records.append(MUTATORS[names[int(rng.integers(len(names)))]](rng, stream, ts, value))
            else:
                records.append(_good(stream, ts, value))
            if stream == "m-control":
                control.append(ts)
    raw = [
        RawRecord(key, value, Source("readings", 0, offset, 1.7e9 + STEP * 300))
        for offset, (key, value) in enumerate(records)
    ]
    return [raw[i : i + 97] for i in range(0, len(raw), 97)], control


@pytest.mark.parametrize("seed", [0, 1])
def test_bad_input_of_every_kind_never_stops_the_core_and_every_record_is_accounted_for(
    machine_model: TrainReport, seed: int
) -> None:
    config = parse_config(
        {
            "models": [{"name": "m", "path": str(machine_model.model_path), "streams": ["m-*"]}],
            "records": {"max_bytes": MAX_BYTES},
        },
        Path("."),
        env={},
    )
    processor = Processor(config, {"m": HostEngine(machine_model.model_path, 8)})
    polls, control_ts = _polls(seed)
    reasons: set[str] = set()
    control: list[tuple[float, float]] = []
    for poll in polls:
        out = processor.process(poll)
        scored = out.scored()
        handled = [s.source.offset for s in scored]
        handled += [r.source.offset for r, _ in out.rejected] + [d.source.offset for d in out.dropped]
        assert sorted(handled) == [r.source.offset for r in poll]  # each record exactly once
        for record, rejection in out.rejected:
            assert rejection.source.offset == record.source.offset and rejection.detail
        reasons |= {rejection.reason for _, rejection in out.rejected} | {d.reason for d in out.dropped}
        control += [(s.ts, s.score) for s in scored if s.stream == "m-control"]
    # The good stream among them: every reading, in order, scored as if it had come alone
    alone = Processor(config, {"m": HostEngine(machine_model.model_path, 8)})
    own = [r for poll in polls for r in poll if r.key == b"m-control"]
    expected_scores = [(s.ts, s.score) for s in alone.process(own).scored()]
    assert [ts for ts, _ in control] == control_ts == [ts for ts, _ in expected_scores]
    np.testing.assert_allclose([v for _, v in control], [v for _, v in expected_scores], atol=1e-5)
    # Each kind of bad input met its own outcome (the scored ones: an extra channel, an overflow
    # that reset its stream, a carried reading)
    expected = {
        "malformed_json",
        "empty_value",
        "missing_key",
        "bad_key",
        "too_large",
        "not_an_object",
        "missing_values",
        "non_numeric",
        "non_finite",
        "missing_channel",
        "bad_timestamp",
        "future_timestamp",
        "stream_mismatch",
        "missing_stream",
        "unknown_stream",
        "out_of_order",
    }
    assert expected <= reasons, expected - reasons
