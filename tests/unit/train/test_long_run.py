"""Long-run stability: a stream is never reset, so its score must not drift over time on normal data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from train.export_check import Stepped, step_through
from train.fit import FitConfig
from train.pipeline import train_series
from train.series import Series
from train.train_spec import TrainSpec

WINDOW = 48
STEPS = 100 * WINDOW  # 100x the truncation window the model was trained on
FIT_ROWS = 3000


def _normal(n: int, seed: int) -> np.ndarray:
    """A machine's normal behaviour: a daily cycle, a slow AR(1) wander and sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    wander = np.zeros(n)
    for i in range(1, n):
        wander[i] = 0.98 * wander[i - 1] + rng.normal(0, 0.1)
    return (60 + 5 * np.sin(2 * np.pi * t / 288) + wander + rng.normal(0, 0.2, n)).astype(np.float32)


def _run(tmp_path: Path, spec: TrainSpec) -> tuple[Stepped, float, dict[str, object]]:
    """Trains on 3,000 normal readings, then steps the exported model over the whole stream, fitted part
    first, as the daemon would run it from the stream's first reading: the outputs after the fitted part,
    the model's threshold and its score settings."""
    # One stream throughout: two joined at the fitted part's end would shift its daily cycle there,
    # which the season check rightly flags.
    values = _normal(FIT_ROWS + STEPS, seed=1)
    series = Series("normal", np.arange(len(values)) * 300.0, values[:, None], ("temp_c",))
    spec = replace(spec, fit_fraction=FIT_ROWS / len(values))
    report = train_series(
        series, spec, FitConfig(window=WINDOW, epochs=20, hidden=16), tmp_path / "m.onnx", progress=False
    )
    out = step_through(onnx.load(str(report.model_path)), values[:, None])
    after = Stepped(*(a[FIT_ROWS:] for a in dataclasses.astuple(out)))
    return after, report.threshold, report.metadata["score"]


def _tenths(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tenth = STEPS // 10
    return a[:tenth], a[-tenth:]


def _assert_stays_put(
    spread: np.ndarray, gated: np.ndarray, threshold: float, centre: Callable[[np.ndarray], float], name: str
) -> None:
    """From the first to the last tenth of the run: the ``centre`` of ``spread`` moves by -20%/+25% at
    most, its p99 by -30%/+40%, and at most 1% of ``gated`` is over the threshold in either tenth."""
    first, last = _tenths(spread)
    centres = centre(first), centre(last)
    p99s = np.quantile(first, 0.99), np.quantile(last, 0.99)
    alarms = [(part >= threshold).mean() for part in _tenths(gated)]
    print(
        f"{name} {centres[0]:.3f} -> {centres[1]:.3f}, p99 {p99s[0]:.3f} -> {p99s[1]:.3f}, "
        f"above threshold {alarms[0]:.2%} -> {alarms[1]:.2%} (threshold {threshold:.3f})"
    )
    assert 0.8 <= centres[1] / centres[0] <= 1.25
    assert 0.7 <= p99s[1] / p99s[0] <= 1.4
    assert max(alarms) <= 0.01


def test_score_distribution_and_false_alarms_stay_put_over_100_windows(tmp_path: Path) -> None:
    out, threshold, _ = _run(tmp_path, TrainSpec(name="normal"))
    _assert_stays_put(out.score, out.score, threshold, lambda a: float(np.median(a)), "median")
    assert np.isfinite(out.score).all()


def test_the_checks_evaluate_nab_ships_stay_put_over_100_windows_too(tmp_path: Path) -> None:
    """The adaptive score, the peak gate, the range and creep checks and the season check all keep
    per-stream state that only grows older in a stream that is never reset."""
    checked = TrainSpec("normal", adapt=0.01, peak_half_life=50.0, range_tolerance=0.05, range_creep=100)
    out, threshold, score = _run(tmp_path, replace(checked, season="auto"))
    assert score["season"] is not None and abs(int(score["season"]) - 288) <= 2  # the daily cycle
    # Gated, a score is mostly 0: its distribution is the ungated one (hold), its alarms the gated one's.
    _assert_stays_put(out.hold, out.score, threshold, lambda a: float(a.mean()), "ungated mean")
    assert np.isfinite(out.score).all() and out.score.max() < 100.0  # no range or creep break: all normal
