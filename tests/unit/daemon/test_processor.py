"""The daemon core without a broker: interleaved streams must score exactly as if each ran alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from daemon.config import Config, parse_config
from daemon.engine import HostEngine
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from train.export_check import step_through
from train.pipeline import TrainReport

STEP = 300.0


def _config(model: Path, **sections: object) -> Config:
    return parse_config(
        {"models": [{"name": "m", "path": str(model), "streams": ["m-*"]}], **sections}, Path("."), env={}
    )


def _record(stream: str, ts: float, value: object, offset: int) -> RawRecord:
    body = json.dumps({"stream": stream, "ts": ts, "values": {"temp_c": value}}).encode()
    return RawRecord(stream.encode(), body, Source("readings", 0, offset))


def _alone(model: Path, values: np.ndarray) -> np.ndarray:
    """Steps one stream through the bare ONNX model, state carried by hand."""
    scores = step_through(onnx.load(str(model)), values.astype(np.float32)[:, None]).score
    return scores


def test_interleaved_streams_match_each_stream_alone_including_eviction(machine_model: TrainReport) -> None:
    model = machine_model.model_path
    rng = np.random.default_rng(3)
    n_streams, steps = 40, 30
    series = {
        f"m-{i}": 70 + np.cumsum(rng.normal(0, 0.5, steps)).astype(np.float32) for i in range(n_streams)
    }
    # Polls mix streams at different points of their lives; streams 0-9 fall silent after 10 readings for
    # longer than the TTL while the others go on, are evicted, and come back cold.
    config = _config(model, state={"initial_capacity": 4, "idle_ttl_s": 5 * STEP}, batching={"max_batch": 7})
    processor = Processor(config, {"m": HostEngine(model, 4)})
    events = []
    for i, (stream, values) in enumerate(series.items()):
        for t, v in enumerate(values):
            ts = t * STEP + i
            if i < 10 and t >= 10:
                ts += 15 * STEP  # the silence that gets these streams evicted
            events.append((ts, stream, float(v)))
    events.sort()
    scored: dict[str, list[float]] = {s: [] for s in series}
    offset, evicted = 0, 0
    for start in range(0, len(events), 97):
        chunk = events[start : start + 97]
        records = [_record(s, ts, v, offset + k) for k, (ts, s, v) in enumerate(chunk)]
        offset += len(chunk)
        out = processor.process(records)
        assert not out.rejected and not out.dropped
        evicted += out.evicted
        for s in out.scored():
            scored[s.stream].append(s.score)
    evicted_streams = [f"m-{i}" for i in range(10)]
    for stream, values in series.items():
        got = np.asarray(scored[stream])
        if stream in evicted_streams:
            expected = np.concatenate([_alone(model, values[:10]), _alone(model, values[10:])])
        else:
            expected = _alone(model, values)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=stream)
    # 0-9 once while silent, then 10-39 once they end before 0-9 do; only 0-9 are still resident
    assert evicted == 40
    assert processor.active_streams == {"m": 10}
    # capacity grew by doubling from 4 and never past what the live streams needed
    assert processor.runtimes["m"].engine.table.slots.capacity == 64


def test_duplicates_out_of_order_unknown_streams_and_gaps(machine_model: TrainReport) -> None:
    config = _config(machine_model.model_path, state={"max_gap_s": 3 * STEP})
    processor = Processor(config, {"m": HostEngine(machine_model.model_path, 4)})
    records = [
        _record("m-1", 0.0, 70.0, 0),
        _record("m-1", STEP, 70.5, 1),
        _record("m-1", STEP, 70.5, 2),  # duplicate timestamp
        _record("m-1", 0.5 * STEP, 70.1, 3),  # out of order
        _record("oven-1", STEP, 70.0, 4),  # no model for it
        _record("m-1", 10 * STEP, 71.0, 5),  # gap beyond max_gap_s: state restarts
        _record("m-1", 11 * STEP, float("nan"), 6),
    ]
    out = processor.process(records)
    assert [(d.reason, d.source.offset) for d in out.dropped] == [
        ("duplicate_timestamp", 2),
        ("out_of_order", 3),
    ]
    assert [(r.reason, r.source.offset) for _, r in out.rejected] == [
        ("unknown_stream", 4),
        ("non_finite", 6),
    ]
    assert [s.source.offset for s in out.scored()] == [0, 1, 5]
    assert out.gap_resets == 1
    assert out.scored()[2].score == 0.0  # a reset stream's first reading has nothing to compare against
    # the later poll still sees the stream's last timestamp
    again = processor.process([_record("m-1", 10 * STEP, 71.0, 7)])
    assert [d.reason for d in again.dropped] == ["duplicate_timestamp"]


def test_readings_under_half_the_trained_step_are_counted(machine_model: TrainReport) -> None:
    assert machine_model.metadata["training"]["reading_step_s"] == STEP  # NAB's machine: 5 minutes
    processor = Processor(_config(machine_model.model_path), {"m": HostEngine(machine_model.model_path, 4)})
    ts = [0.0, STEP, 1.5 * STEP, 1.9 * STEP, 2.4 * STEP, 2.5 * STEP]  # steps 1, 0.5, 0.4, 0.5, 0.1
    out = processor.process([_record("m-1", t, 70.0, i) for i, t in enumerate(ts)])
    assert len(out.scored()) == 6 and out.faster == {"m": 2}  # 0.4 and 0.1 of the step
    # a duplicate and a late reading are dropped, not counted
    out = processor.process([_record("m-1", 2.5 * STEP, 70.0, 6), _record("m-1", STEP, 70.0, 7)])
    assert len(out.dropped) == 2 and out.faster == {}
    # a stream's first reading has no step; a reading after a poll boundary still has one
    out = processor.process([_record("m-2", 0.0, 70.0, 8), _record("m-1", 2.5 * STEP + 10.0, 70.0, 9)])
    assert out.faster == {"m": 1}


def test_missing_channel_carried_for_at_most_k_readings(machine_model: TrainReport) -> None:
    config = _config(machine_model.model_path, records={"carry_missing_for": 2})
    processor = Processor(config, {"m": HostEngine(machine_model.model_path, 4)})
    body = [
        json.dumps({"stream": "m-1", "ts": t * STEP, "values": {"temp_c": 70.0} if t == 0 else {"other": 1}})
        for t in range(4)
    ]
    out = processor.process([RawRecord(b"m-1", b.encode(), Source("r", 0, i)) for i, b in enumerate(body)])
    assert [s.source.offset for s in out.scored()] == [0, 1, 2]
    assert out.carried == 2 and out.unknown_channels == 2
    assert [(r.reason, r.source.offset) for _, r in out.rejected] == [("missing_channel", 3)]


@pytest.mark.parametrize("every", [1, 3])
def test_scores_topic_sampling(machine_model: TrainReport, every: int) -> None:
    config = _config(machine_model.model_path, kafka={"scores_topic": "scores", "scores_every": every})
    processor = Processor(config, {"m": HostEngine(machine_model.model_path, 4)})
    out = processor.process([_record("m-1", t * STEP, 70.0 + t, t) for t in range(9)])
    assert [s.publish for s in out.scored()] == [(t + 1) % every == 0 for t in range(9)]


def test_overflowing_reading_is_dead_lettered_and_the_stream_restarts_cold(
    machine_model: TrainReport,
) -> None:
    processor = Processor(_config(machine_model.model_path), {"m": HostEngine(machine_model.model_path, 4)})
    out = processor.process(
        [_record("m-1", t * STEP, v, t) for t, v in enumerate([70.0, 70.2, 3e38, 70.4, 70.5])]
    )
    assert [(r.reason, r.source.offset) for _, r in out.rejected] == [("non_finite_score", 2)]
    scores = {s.source.offset: s.score for s in out.scored()}
    assert sorted(scores) == [0, 1, 3, 4]
    assert scores[3] == 0.0 and np.isfinite(scores[4])  # cold again, then scoring normally


def test_a_wave_whose_every_row_diverged_reports_no_scored_readings(machine_model: TrainReport) -> None:
    processor = Processor(_config(machine_model.model_path), {"m": HostEngine(machine_model.model_path, 4)})
    processor.process([_record("m-1", t * STEP, 70.0 + t, t) for t in range(2)])
    out = processor.process([_record("m-1", 2 * STEP, 3e38, 2)])
    assert [r.reason for _, r in out.rejected] == ["non_finite_score"]
    assert out.scored_waves == []  # nothing for the metrics to count, not a wave of none


def test_a_diverged_row_leaves_the_rest_of_its_wave_scored_sampled_and_alerting(
    machine_model: TrainReport,
) -> None:
    """One stream's overflow in a wave of several: the others keep their scores, score sampling and
    alerts, each alert with the score of its own reading; the overflow reaches no alert."""
    config = _config(
        machine_model.model_path,
        kafka={"scores_topic": "scores", "scores_every": 2},
        alerting={"fault": {"threshold": 0.01, "fire_after": 1, "resolve_after": 1}},
    )
    processor = Processor(config, {"m": HostEngine(machine_model.model_path, 4)})
    records, offset = [], 0
    for t in range(6):
        for stream in ("m-1", "m-2", "m-3"):
            value = 3e38 if (stream, t) == ("m-2", 3) else 70.0 + 4 * (t % 2) + int(stream[-1])
            records.append(_record(stream, t * STEP, value, offset))
            offset += 1
    out = processor.process(records)
    [(_, diverged)] = out.rejected
    assert (diverged.reason, diverged.stream, diverged.source.offset) == ("non_finite_score", "m-2", 10)
    scored = {(s.stream, s.source.offset): s for s in out.scored()}
    assert sorted(o for _, o in scored) == [o for o in range(18) if o != 10]
    for stream in ("m-1", "m-2", "m-3"):
        published = [s.publish for s in out.scored() if s.stream == stream]
        assert published == [(i + 1) % 2 == 0 for i in range(len(published))]
    firing = [a for a in out.alerts if a["state"] == "firing"]
    assert {a["stream"] for a in firing} == {"m-1", "m-2", "m-3"}
    for alert in firing:
        reading = scored[(alert["stream"], alert["source"]["offset"])]
        assert alert["score"] == pytest.approx(reading.score, abs=1e-6)
    # m-2's alert ends when it restarts cold, its peak from the readings before the overflow.
    [ended] = [a for a in out.alerts if a["state"] == "resolved"]
    assert (ended["stream"], ended["source"]["offset"]) == ("m-2", 13)
    before = [s.score for s in out.scored() if s.stream == "m-2" and s.source.offset < 13]
    assert ended["peak"] == pytest.approx(max(before), abs=1e-6)


def test_stream_evicted_while_firing_gets_a_resolved_alert(machine_model: TrainReport) -> None:
    config = _config(
        machine_model.model_path,
        state={"idle_ttl_s": 10 * STEP},
        alerting={"fault": {"threshold": 0.01, "fire_after": 1}},
    )
    processor = Processor(config, {"m": HostEngine(machine_model.model_path, 4)})
    out = processor.process([_record("m-1", t * STEP, 70.0 + 3 * (t % 2), t) for t in range(4)])
    assert [a["state"] for a in out.alerts] == ["firing"]
    later = processor.process([_record("m-2", 100 * STEP, 70.0, 4)])
    assert later.evicted == 1
    [resolved] = later.alerts
    assert resolved["state"] == "resolved" and resolved["resolution"] == "stream_idle"
    assert resolved["id"] == out.alerts[0]["id"] and resolved["stream"] == "m-1"
    # Named as the config names the model (as metrics and logs do), with the name it was trained under.
    model = {"name": "m", "version": "1", "trained_name": "machine-temperature"}
    assert out.alerts[0]["model"] == model and resolved["model"] == model
