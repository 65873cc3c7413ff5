"""`faultcast evaluate spec`: a model trained on one's own recordings, scored on their labelled faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.cli import main as cli_main
from daemon.errors import DataError, UsageError
from train.evaluate import main
from train.evaluate_spec import evaluate_spec

SPEC = "files: ['*.csv']\ntimestamp: {column: t, format: epoch}\nchannels: [vib, temp]\n"


def _recordings(folder: Path) -> None:
    """Two presses: normal for 400 readings, a labelled fault (both channels jump) at 400-449, then normal."""
    rng = np.random.default_rng(1)
    for name in ("press-1", "press-2"):
        rows = ["t,vib,temp,fault"]
        for i in range(600):
            fault = 400 <= i < 450
            vib, temp = rng.normal(1.0, 0.05) + 3.0 * fault, 60 + rng.normal(0, 0.2) + 8.0 * fault
            rows.append(f"{i * 10},{vib:.4f},{temp:.3f},{int(fault)}")
        (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")


def test_a_model_trained_on_the_heads_finds_the_labelled_faults_after_them(tmp_path: Path) -> None:
    _recordings(tmp_path)
    spec = tmp_path / "presses.yaml"
    spec.write_text(SPEC + "label_columns: {anomaly: fault}\n")
    model = tmp_path / "presses.onnx"
    train = ["train", "--spec", str(spec), "--root", str(tmp_path), "--fit-rows", "300", "--val-rows", "80"]
    assert cli_main([*train, "--epochs", "3", "--hidden", "8", "--out", str(model)]) == 0
    result = evaluate_spec(str(spec), tmp_path, "*", model, first=300)
    assert [v.labelled.series.name for v in result.streams] == ["press-1", "press-2"]
    assert [(len(v.delays), v.faults) for v in result.streams] == [(1, 1), (1, 1)]
    pooled = result.pooled
    assert pooled.tp + pooled.fp + pooled.fn + pooled.tn == 2 * 300 and pooled.tp > 0
    assert result.rejected == 0 and result.dropped == 0
    report = tmp_path / "report"
    argv = ["spec", "--spec", str(spec), "--root", str(tmp_path), "--model", str(model), "--from", "300"]
    assert main([*argv, "--report", str(report)]) == 0
    summary = (report / "summary.md").read_text()
    assert "| pooled |" in summary and "| 2/2 |" in summary
    assert (report / "spec_press-1.png").stat().st_size > 10_000


def test_recordings_without_labels_are_refused(tmp_path: Path) -> None:
    _recordings(tmp_path)
    spec = tmp_path / "presses.yaml"
    spec.write_text(SPEC)
    with pytest.raises(DataError, match="stream press-1 has no anomaly labels"):
        evaluate_spec(str(spec), tmp_path, "*", tmp_path / "any.onnx")
    with pytest.raises(UsageError, match="--from -1: give the first row to count"):
        evaluate_spec(str(spec), tmp_path, "*", tmp_path / "any.onnx", first=-1)
