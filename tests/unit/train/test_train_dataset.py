"""`faultcast train --spec`: one model over a dataset spec's streams, fitted on their heads only."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from daemon.errors import DataError
from tests.support import NAB
from train.dataset import load_dataset, load_spec
from train.fit import FitConfig
from train.train_dataset import HeadSplit, train_dataset
from train.train_spec import TrainSpec

PATTERN = "*ec2_request_latency*"


def test_fits_the_matching_streams_heads_only(tmp_path: Path) -> None:
    split = HeadSplit(fit_rows=600, val_rows=150)
    config = FitConfig(hidden=8, epochs=3)
    report = train_dataset(
        "nab_realKnownCause", NAB, PATTERN, split, TrainSpec(name="t"), config, tmp_path / "m.onnx", False
    )
    data, _ = load_dataset(load_spec("nab_realKnownCause"), NAB)
    [stream] = [s.series for s in data if s.series.name.endswith("ec2_request_latency_system_failure")]
    head = stream.values[: split.fit_rows - split.val_rows]
    assert report.metadata["training"]["series"] == [stream.name]
    assert report.metadata["training"]["fitted_readings"] == 450
    # normalisation from the fitted rows alone: nothing after them leaks in
    assert report.metadata["score"]["mean"] == pytest.approx([float(head.mean())], rel=1e-6)
    assert report.metadata["score"]["std"] == pytest.approx([float(head.std())], rel=1e-6)
    assert np.isfinite(report.parity_max_abs) and report.model_path.exists()


def test_no_matching_stream_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape("matches 'nothing-*'")):
        train_dataset(
            "nab_realKnownCause", NAB, "nothing-*", HeadSplit(400, 120), TrainSpec(name="t"),
            FitConfig(epochs=1), tmp_path / "m.onnx", False,
        )  # fmt: skip


def test_a_spec_that_keeps_no_row_says_why_and_where(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("when,x\n01.02.2024 10:00,1\n01.02.2024 10:01,2\n")
    spec = tmp_path / "mine.yaml"
    spec.write_text("files: ['*.csv']\ntimestamp: {column: when, format: '%Y-%m-%d %H:%M'}\nchannels: [x]\n")
    message = f"kept 0; skipped 2 (timestamp; first at {tmp_path / 'data.csv'}:2); check the spec's separator"
    with pytest.raises(DataError, match=re.escape(message)):
        train_dataset(
            str(spec), tmp_path, "*", HeadSplit(400, 120), TrainSpec(name="t"), FitConfig(epochs=1),
            tmp_path / "m.onnx", False,
        )  # fmt: skip


def test_a_channel_that_never_moves_or_a_short_stream_is_refused_by_name(tmp_path: Path) -> None:
    rows = [f"{i * 60},{i % 5},50.0\n" for i in range(300)]
    (tmp_path / "press.csv").write_text("t,x,setpoint\n" + "".join(rows))
    (tmp_path / "short.csv").write_text("t,x,setpoint\n" + "".join(rows[:150]))
    spec = tmp_path / "mine.yaml"
    spec.write_text("files: ['*.csv']\ntimestamp: {column: t, format: epoch}\nchannels: [x, setpoint]\n")

    def train(pattern: str) -> None:
        train_dataset(
            str(spec), tmp_path, pattern, HeadSplit(200, 60), TrainSpec(name="t"), FitConfig(epochs=1),
            tmp_path / "m.onnx", False,
        )  # fmt: skip

    with pytest.raises(DataError, match=r"more than --fit-rows 200 readings.*; short has 150$"):
        train("*")
    with pytest.raises(DataError, match="channel setpoint does not vary in the training data"):
        train("press")
    # A channel in small units (metres of displacement, ~1e-7) moves, and trains.
    (tmp_path / "short.csv").unlink()
    (tmp_path / "press.csv").write_text(
        "t,x,setpoint\n" + "".join(f"{i * 60},{i % 5},{i % 3 * 1e-7}\n" for i in range(300))
    )
    train("press")
    assert (tmp_path / "m.onnx").exists()
