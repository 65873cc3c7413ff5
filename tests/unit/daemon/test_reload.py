"""Model hot reload: a new version takes over between polls; state kept when its layout is unchanged."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import CollectorRegistry

from daemon.config import parse_config
from daemon.engine import HostEngine, Reloaded, fixed_inputs
from daemon.kafka_io import HandOffListener
from daemon.metrics import Metrics
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from daemon.runtime import fault_score
from daemon.service import Service
from daemon.systemd import Notifier
from tests.support import PLAIN_SCORE, model_exporter, write_model


def _records(start: int, count: int) -> list[RawRecord]:
    return [
        RawRecord(
            b"s",
            json.dumps({"stream": "s", "ts": t * 60.0, "values": {"temp_c": 70.0 + t % 5}}).encode(),
            Source("r", 0, t),
        )
        for t in range(start, start + count)
    ]


def _setup(tmp_path: Path) -> tuple[Path, Processor]:
    live = write_model(tmp_path / "live.onnx", seed=1)
    config = parse_config({"models": [{"name": "m", "path": str(live)}]}, Path("."), env={})
    return live, Processor(config, {"m": HostEngine(live, 4)})


def test_same_layout_keeps_state_and_scores_with_the_new_weights(tmp_path: Path) -> None:
    live, processor = _setup(tmp_path)
    runtime = processor.runtimes["m"]
    processor.process(_records(0, 10))
    state_before = runtime.engine.table.gather(np.array([0]))
    write_model(tmp_path / "v2.onnx", seed=2, version="2")
    shutil.copy(tmp_path / "v2.onnx", live)
    assert runtime.reload(live) == Reloaded(kept_state=True, streams_reset=0)
    assert runtime.engine.info.version == "2"
    out = processor.process(_records(10, 1))
    session = ort.InferenceSession(str(live), providers=["CPUExecutionProvider"])
    x = np.array([[70.0 + 10 % 5]], dtype=np.float32)
    expected, _, _ = session.run(
        None, {"x": x, "state": state_before, **fixed_inputs(runtime.engine.info, None)}
    )
    assert out.scored()[0].score == expected[0]
    assert runtime.reload(live) is None  # same bytes again: nothing to do


def test_new_layout_resets_every_live_stream(tmp_path: Path) -> None:
    live, processor = _setup(tmp_path)
    runtime = processor.runtimes["m"]
    processor.process(_records(0, 10))
    write_model(live, hidden=16, seed=3)
    assert runtime.reload(live) == Reloaded(kept_state=False, streams_reset=1)
    assert runtime.engine.table.width == runtime.engine.info.state_width == 2 * 16 + 5
    out = processor.process(_records(10, 2))
    assert out.scored()[0].score == 0.0 and out.scored()[1].score > 0.0  # cold start, then warm
    assert not out.dropped  # the stream kept its last timestamp


class _NoKafka:
    """The reload path touches neither consumer nor producer."""


def test_service_reloads_on_file_change_and_counts_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = write_model(tmp_path / "live.onnx", seed=1)
    config = parse_config(
        {"models": [{"name": "m", "path": str(live)}], "reload": {"watch_interval_s": 1e-9}},
        Path("."),
        env={},
    )
    processor = Processor(config, {"m": HostEngine(live, 4)})
    registry = CollectorRegistry()
    service = Service(
        config,
        processor,
        _NoKafka(),
        _NoKafka(),
        HandOffListener(),
        Metrics(registry),  # type: ignore[arg-type]
        Notifier(env={}),
    )
    write_model(live, hidden=16, seed=4, version="3")
    service.reloader.check()
    assert processor.runtimes["m"].engine.info.version == "3"
    assert (
        registry.get_sample_value("faultcast_model_reloads_total", {"model": "m", "result": "reset_state"})
        == 1
    )
    live.write_bytes(b"not onnx")
    service.reloader.check()
    assert processor.runtimes["m"].engine.info.version == "3"  # the loaded model keeps running
    assert registry.get_sample_value("faultcast_model_reloads_total", {"model": "m", "result": "failed"}) == 1
    service.reloader.requested.set()  # SIGHUP with an unchanged (still broken) file: one more failed attempt
    service.reloader.check()
    assert registry.get_sample_value("faultcast_model_reloads_total", {"model": "m", "result": "failed"}) == 2
    write_model(live, hidden=16, seed=4, version="3")
    service.reloader.check()
    service.reloader.requested.set()  # SIGHUP with nothing new: the operator still hears what came of it
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="faultcast.reload"):
        service.reloader.check()
    said = [(r.getMessage(), getattr(r, "model", None)) for r in caplog.records]
    assert said == [("reloading models", None), ("model unchanged; the loaded version keeps running", "m")]


def test_every_check_of_the_score_is_part_of_what_fault_alerts_follow(tmp_path: Path) -> None:
    """Models that differ only in the creep check's lag, in having one, or in the season check's period
    raise alerts that mean other things; models without the later checks keep the fault score that
    checkpoints written before those checks hold."""
    live = tmp_path / "live.onnx"
    export = model_exporter(live)
    ranged = replace(PLAIN_SCORE, adapt=0.01, peak_half_life=50.0, range_tolerance=0.05)
    variants = [
        ranged,
        replace(ranged, range_creep=100),
        replace(ranged, range_creep=400),
        replace(ranged, season=48, season_memory=750),
    ]
    seen = []
    for params in variants:
        export(params, "1")
        seen.append(fault_score(HostEngine(live, 4).info))
    assert len(set(seen)) == len(variants)
    assert seen[0] == (False, 0.01, 50.0, 0.05)


def test_a_fault_score_made_differently_resolves_the_alerts_it_raised(tmp_path: Path) -> None:
    """A model whose anomaly score is made another way (here: peak-gated) cannot continue the old
    score's alerts: they end as resolved (model_reload)."""
    live = tmp_path / "live.onnx"
    export, plain = model_exporter(live), PLAIN_SCORE
    export(plain, "1")
    data = {"models": [{"name": "m", "path": str(live)}], "alerting": {"fault": {"fire_after": 1}}}
    processor = Processor(parse_config(data, Path("."), env={}), {"m": HostEngine(live, 4)})
    wild = [
        RawRecord(b"s", json.dumps({"ts": 60.0 * t, "values": {"temp_c": 70.0 + 30 * (-1) ** t}}).encode(),
                  Source("r", 0, t))
        for t in range(4)
    ]  # fmt: skip
    fired = {a["id"] for a in processor.process(wild[:3]).alerts if a["state"] == "firing"}
    assert len(fired) == 1  # one alert (it may escalate)
    export(replace(plain, peak_half_life=50.0), "2")
    assert processor.runtimes["m"].reload(live) is not None
    ended = processor.process(wild[3:]).alerts
    assert [(a["id"], a["state"], a["resolution"]) for a in ended] == [
        (fired.pop(), "resolved", "model_reload")
    ]
