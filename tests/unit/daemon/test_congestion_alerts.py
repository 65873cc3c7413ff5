"""Congestion alerts from the daemon core: when they fire and resolve, and what they say."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from daemon.alerts import KindAlerts
from daemon.checkpoint import load, restore, save, take
from daemon.config import parse_config
from daemon.engine import HostEngine
from daemon.errors import ModelError
from daemon.model_file import read_model
from daemon.processor import Processor, RawRecord
from daemon.records import Source, format_timestamp
from daemon.runtime import policy_for
from tests.support import OCCUPANCY
from train.evaluate_congestion import CongestionOptions
from train.export import untrained_model
from train.export_check import step_through
from train.pipeline import TrainReport
from train.series import load_nab_csv

STEP = 300.0


def _processor(model: Path, **alerting: object) -> Processor:
    data = {"models": [{"name": "m", "path": str(model)}], "alerting": {"congestion": alerting}}
    config = parse_config(data, Path("."), env={})
    return Processor(config, {"m": HostEngine(model, 8)})


def _records(stream: str, channel: str, values: list[float], start: float = 1.7e9) -> list[RawRecord]:
    out = []
    for i, v in enumerate(values):
        body = json.dumps({"stream": stream, "ts": start + i * STEP, "values": {channel: v}}).encode()
        out.append(RawRecord(stream.encode(), body, Source("readings", 0, i)))
    return out


def test_fires_after_n_forecasts_over_the_limit_and_resolves_under_the_lower_one(tmp_path: Path) -> None:
    # The model's median forecast is the current reading, its 0.9 quantile the reading + 5.
    model = untrained_model(tmp_path / "m.onnx", ("occupancy",), congestion_limit=20.0)
    processor = _processor(model, fire_after=2, resolve_after=2, resolve_ratio=0.9)
    values = [10.0, 15, 21, 24, 30, 19, 17, 17, 21]
    out = processor.process(_records("lane-1", "occupancy", values))
    alerts = [a for a in out.alerts if a["kind"] == "congestion"]
    # 21 then 24 fire; 30 is 1.5x the limit (critical from 1.25x); 19 holds (resolve under 18); two 17s
    # resolve; 21 falls in the cool-down
    expected = [("firing", "warning", 3), ("firing", "critical", 4), ("resolved", "critical", 7)]
    assert [(a["state"], a["severity"], a["source"]["offset"]) for a in alerts] == expected
    first = alerts[0]
    assert first["started_at"] == format_timestamp(1.7e9 + 2 * STEP)  # the first forecast over the limit
    assert first["limit"] == 20.0 and first["threshold"] == 20.0 and first["current"] == 24.0
    assert first["forecast"] == {
        "value": 24.0, "quantile": 0.5, "horizon_s": 1800.0, "quantiles": {"0.5": 24.0, "0.9": 29.0}
    }  # fmt: skip
    # already over the limit: it is reached now
    assert first["time_to_limit_s"] == 0.0 and first["expected_at"] == first["ts"]
    assert first["top_channels"] == [{"name": "occupancy", "share": 1.0}]
    assert {a["id"] for a in alerts} == {first["id"]}  # escalation and resolution keep the alert's id
    assert alerts[-1]["resolution"] == "recovered"
    assert [s.forecast.tolist() for s in out.scored()][:2] == [[10.0, 15.0], [15.0, 20.0]]


def test_limit_from_config_overrides_the_models(tmp_path: Path) -> None:
    model = untrained_model(tmp_path / "m.onnx", ("occupancy",), congestion_limit=20.0)
    out = _processor(model, threshold=50.0, fire_after=1).process(
        _records("lane-1", "occupancy", [30.0, 40, 55])
    )
    fired = [a for a in out.alerts if a["kind"] == "congestion"]
    assert [(a["source"]["offset"], a["limit"]) for a in fired] == [(2, 50.0)]


def test_model_without_a_congestion_head_never_raises_congestion_alerts(tmp_path: Path) -> None:
    model = untrained_model(tmp_path / "m.onnx", ("occupancy",))
    out = _processor(model, threshold=1.0, fire_after=1).process(
        _records("lane-1", "occupancy", [30.0, 40, 55])
    )
    assert all(a["kind"] == "fault" for a in out.alerts)
    assert all(s.forecast is None for s in out.scored())


def test_congestion_output_without_its_metadata_is_refused(tmp_path: Path) -> None:
    path = untrained_model(tmp_path / "m.onnx", ("occupancy",), congestion_limit=20.0)
    proto = onnx.load(str(path))
    meta = json.loads(proto.metadata_props[0].value)
    del meta["congestion"]
    proto.metadata_props[0].value = json.dumps(meta)
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match="unreadable 'faultcast' metadata"):
        read_model(path)


def test_trained_model_alerts_where_its_forecasts_say(traffic_model: TrainReport) -> None:
    """The processor wires the engine's forecasts into the alert state machine, reading by reading."""
    series = load_nab_csv(OCCUPANCY, "occupancy")
    n = 1200
    processor = _processor(traffic_model.model_path)
    rows = zip(series.ts[:n].tolist(), series.values[:n, 0].tolist(), strict=True)
    records = [
        RawRecord(b"lane-1", json.dumps({"ts": t, "values": {"occupancy": v}}).encode(), Source("r", 0, i))
        for i, (t, v) in enumerate(rows)
    ]
    alerts = [a for i in range(0, n, 100) for a in processor.process(records[i : i + 100]).alerts]
    congestion = [a for a in alerts if a["kind"] == "congestion"]
    forecast = step_through(onnx.load(str(traffic_model.model_path)), series.values[:n], series.ts[:n])
    config = parse_config({"models": [{"name": "m", "path": "x"}]}, Path("."), env={})
    limit = traffic_model.metadata["congestion"]["limit"]
    machine = KindAlerts(policy_for("congestion", config.alerting.congestion, limit))
    expected = []
    for i in range(n):
        event = machine.observe("lane-1", float(forecast.congestion[i, 0]), float(series.ts[i]), ("r", 0, i))
        if event is not None:
            expected.append((event.state, event.source[2]))
    assert expected, "the first 1,200 readings hold congestion the model forecasts"
    assert [(a["state"], a["source"]["offset"]) for a in congestion] == expected
    assert CongestionOptions().congestion.warn == traffic_model.metadata["congestion"]["quantiles"][0]


def test_reload_to_a_model_without_the_head_resolves_its_firing_alerts(tmp_path: Path) -> None:
    live = tmp_path / "live.onnx"
    untrained_model(live, ("occupancy",), congestion_limit=20.0)
    processor = _processor(live, fire_after=1)
    fired = [a for a in processor.process(_records("lane-1", "occupancy", [25.0, 26.0])).alerts]
    congestion = [a for a in fired if a["kind"] == "congestion"]
    assert [a["state"] for a in congestion] == ["firing"]
    untrained_model(live, ("occupancy",), version="2")  # same channels and state, no congestion head
    runtime = processor.runtimes["m"]
    assert runtime.reload(live) is not None and "congestion" not in runtime.kinds
    later = processor.process(_records("lane-1", "occupancy", [27.0], start=1.7e9 + 2 * STEP)).alerts
    resolved = [a for a in later if a["kind"] == "congestion"]
    assert [(a["id"], a["state"], a["resolution"]) for a in resolved] == [
        (congestion[0]["id"], "resolved", "model_reload")
    ]
    assert resolved[0]["model"]["version"] == "1"  # the version that raised it


def test_per_stream_limits_for_lines_of_different_capacity(tmp_path: Path) -> None:
    model = untrained_model(tmp_path / "m.onnx", ("occupancy",), congestion_limit=20.0)
    processor = _processor(model, fire_after=1, limits={"lane-big-*": 40.0, "lane-*": 30.0})
    records = [
        *_records("belt-3", "occupancy", [21.0, 22.0]),  # no pattern matches: the model's 20
        *_records("lane-big-1", "occupancy", [35.0, 45.0]),  # 40: only the second reading is over
        *_records("lane-7", "occupancy", [25.0, 31.0]),  # 30: the first pattern does not match
    ]
    out = processor.process(records)
    fired = {
        (a["stream"], a["source"]["offset"], a["limit"])
        for a in out.alerts
        if a["kind"] == "congestion" and a["state"] == "firing" and a["severity"] == "warning"
    }
    assert fired == {("belt-3", 0, 20.0), ("lane-big-1", 1, 40.0), ("lane-7", 1, 30.0)}


def test_a_per_stream_limit_under_the_models_fires_too(tmp_path: Path) -> None:
    """Readings under every limit but a stream's own lower one still reach the alert state machine."""
    model = untrained_model(tmp_path / "m.onnx", ("occupancy",), congestion_limit=20.0)
    processor = _processor(model, fire_after=1, limits={"lane-small-*": 10.0})
    out = processor.process(
        _records("lane-small-1", "occupancy", [12.0]) + _records("lane-2", "occupancy", [12.0])
    )
    fired = [(a["stream"], a["limit"]) for a in out.alerts if a["kind"] == "congestion"]
    assert fired == [("lane-small-1", 10.0)]  # the forecast, 12, is over 10 and under 20


def test_a_checkpoint_taken_with_the_head_ends_its_alerts_under_a_model_without(tmp_path: Path) -> None:
    """A snapshot (parked at a revoke, or the file a crash leaves) taken under a model with a congestion
    head and restored under one without: the alerts it held as firing are resolved as model_reload, in
    the name of the version that raised them, as a reload resolves its own."""
    live = tmp_path / "live.onnx"
    untrained_model(live, ("occupancy",), congestion_limit=20.0)
    before = _processor(live, fire_after=1)
    out = before.process(_records("lane-1", "occupancy", [25.0, 26.0])).alerts
    [fired] = {a["id"] for a in out if a["kind"] == "congestion" and a["state"] == "firing"}
    path = tmp_path / "m.ckpt.npz"
    save(take(before, "readings", {0: 2}), path)
    untrained_model(live, ("occupancy",), version="2")  # same channels and state, no congestion head
    after = _processor(live, fire_after=1)
    snapshot = load(path)
    assert snapshot is not None and restore(after, snapshot, {0}) == 1
    resolved = [a for a in after.process([]).alerts if a["kind"] == "congestion"]
    assert [(a["id"], a["state"], a["resolution"], a["model"]["version"]) for a in resolved] == [
        (fired, "resolved", "model_reload", "1")
    ]
