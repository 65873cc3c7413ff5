"""Long-run stability: a stream is never reset, so its score must not drift over time on normal data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from train.export_check import step_through
from train.fit import FitConfig
from train.pipeline import train_series
from train.series import Series
from train.train_spec import TrainSpec

WINDOW = 48
STEPS = 100 * WINDOW  # 100x the truncation window the model was trained on


def _normal(n: int, seed: int) -> np.ndarray:
    """A machine's normal behaviour: a daily cycle, a slow AR(1) wander and sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    wander = np.zeros(n)
    for i in range(1, n):
        wander[i] = 0.98 * wander[i - 1] + rng.normal(0, 0.1)
    return (60 + 5 * np.sin(2 * np.pi * t / 288) + wander + rng.normal(0, 0.2, n)).astype(np.float32)


def test_score_distribution_and_false_alarms_stay_put_over_100_windows(tmp_path: Path) -> None:
    fit_rows = 3000
    values = np.concatenate([_normal(fit_rows, seed=1), _normal(STEPS, seed=2)])
    series = Series("normal", np.arange(len(values)) * 300.0, values[:, None], ("temp_c",))
    report = train_series(
        series,
        TrainSpec(name="normal", fit_fraction=fit_rows / len(values)),
        FitConfig(window=WINDOW, epochs=20, hidden=16),
        tmp_path / "m.onnx",
        progress=False,
    )
    proto = onnx.load(str(report.model_path))
    # One uninterrupted stream over fresh normal data, as the daemon would run it.
    scores = step_through(proto, values[fit_rows:][:, None]).score
    tenth = STEPS // 10
    first, last = scores[1:tenth], scores[-tenth:]
    medians = np.median(first), np.median(last)
    p99s = np.quantile(first, 0.99), np.quantile(last, 0.99)
    alarms = (first >= report.threshold).mean(), (last >= report.threshold).mean()
    print(
        f"median {medians[0]:.3f} -> {medians[1]:.3f}, p99 {p99s[0]:.3f} -> {p99s[1]:.3f}, "
        f"above threshold {alarms[0]:.2%} -> {alarms[1]:.2%} (threshold {report.threshold:.3f})"
    )
    assert 0.8 <= medians[1] / medians[0] <= 1.25
    assert 0.7 <= p99s[1] / p99s[0] <= 1.4
    assert max(alarms) <= 0.01
    assert np.isfinite(scores).all()
