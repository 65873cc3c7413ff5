"""The fault head learns a precursor from labelled faults and warns before them, in the daemon too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from daemon.config import parse_config
from daemon.engine import HostEngine
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from train.export_check import step_through
from train.fault import FaultSpec
from train.fit import FitConfig
from train.pipeline import Segment, TrainReport, train_streams
from train.series import Series
from train.train_spec import TrainSpec

HORIZON = 30
STEP = 60.0


def _machine(seed: int, rows: int, faults: list[int]) -> tuple[Series, np.ndarray]:
    """Vibration that creeps up over the 40 readings before each fault; faults last 10 readings."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    vib = 1.0 + 0.1 * np.sin(t / 50) + rng.normal(0, 0.05, rows)
    temp = 60 + np.cumsum(rng.normal(0, 0.02, rows))
    labels = np.zeros(rows, dtype=bool)
    for f in faults:
        vib[f - 40 : f] += np.linspace(0.0, 0.6, 40)
        vib[f : f + 10] += 1.0
        labels[f : f + 10] = True
    values = np.stack([vib, temp], axis=1).astype(np.float32)
    return Series(f"machine-{seed}", 1.7e9 + STEP * t, values, ("vib", "temp")), labels


@pytest.fixture(scope="module")
def fault_model(tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    train, train_labels = _machine(1, 3000, [300, 800, 1400, 1900, 2500])
    val, val_labels = _machine(2, 1200, [400, 900])
    spec = TrainSpec(name="faulty", fault=FaultSpec(horizon=HORIZON))
    out = tmp_path_factory.mktemp("fault") / "fault.onnx"
    config = FitConfig(hidden=16, epochs=40, patience=40)
    return train_streams(
        [train], [Segment(val, 0, labels=val_labels)], val, spec, config, out, False, [train_labels]
    )


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    return float((positive[:, None] > negative[None, :]).mean())


def test_probability_rises_before_unseen_faults(fault_model: TrainReport) -> None:
    test, labels = _machine(3, 1500, [300, 700, 1200])
    prob = step_through(onnx.load(str(fault_model.model_path)), test.values, test.ts).fault
    before = np.zeros(len(test), dtype=bool)
    for f in (300, 700, 1200):
        before[f - HORIZON : f] = True
    normal = ~before & ~labels
    normal[:100] = False  # the state warms up
    assert _auc(prob[before], prob[normal]) >= 0.9
    meta = fault_model.metadata
    assert meta["fault"]["horizon_steps"] == HORIZON and meta["fault"]["validation"]["positives"] > 0
    assert meta["thresholds"]["fault"]["threshold"] == meta["fault"]["threshold"]
    assert "anomaly" in meta["thresholds"]


def test_daemon_fault_alerts_follow_the_probability(fault_model: TrainReport) -> None:
    test, _ = _machine(3, 1500, [300, 700, 1200])
    config = parse_config({"models": [{"name": "m", "path": str(fault_model.model_path)}]}, Path("."), env={})
    processor = Processor(config, {"m": HostEngine(fault_model.model_path, 4)})
    records = [
        RawRecord(
            b"press-1",
            json.dumps({"ts": float(t), "values": {"vib": float(v[0]), "temp": float(v[1])}}).encode(),
            Source("r", 0, i),
        )
        for i, (t, v) in enumerate(zip(test.ts, test.values, strict=True))
    ]
    out = processor.process(records)
    firing = [a for a in out.alerts if a["kind"] == "fault" and a["state"] == "firing"]
    threshold = fault_model.metadata["fault"]["threshold"]
    assert firing and all(a["threshold"] == pytest.approx(threshold) and "anomaly_score" in a for a in firing)
    onsets = sorted({a["source"]["offset"] for a in firing if a["severity"] == "warning"})
    warned = [f for f in (300, 700, 1200) if any(f - 2 * HORIZON <= o < f for o in onsets)]
    assert len(warned) >= 2, f"alerts at {onsets} warn before too few of the faults"
    assert len(onsets) <= 4, f"alerts at {onsets}: more than the faults explain"
    assert all(0.0 <= s.fault <= 1.0 for s in out.scored() if s.fault is not None)
