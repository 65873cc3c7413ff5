"""Congestion warnings: the scoring rules, the calibration, and the evaluation on real occupancy data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from daemon.errors import DataError
from tests.support import NAB, OCCUPANCY
from train.congestion import CongestionSpec, calibrate
from train.evaluate_congestion import (
    METHODS,
    CongestionOptions,
    CongestionStream,
    congestion_summary,
    evaluate_congestion,
    pooled,
    score_warnings,
)
from train.export_check import step_through
from train.fit import FitConfig
from train.pipeline import train_series
from train.series import Series, load_nab_csv
from train.train_spec import TrainSpec

SPEC = CongestionSpec("load", horizon=2, step_s=60.0)


def test_warnings_are_scored_against_the_load_at_the_horizon() -> None:
    load = np.array([0, 0, 0, 0, 5, 5, 0, 0, 0, 5, 0], dtype=np.float32)
    ts = 60.0 * np.arange(len(load))
    ts[8:] += 600  # a gap: readings 6 and 7 have no reading 2 steps later
    warn = np.array([0, 0, 1, 1, 1, 0, 0, 1, 0, 0, 0], dtype=bool)
    forecast = np.arange(len(load), dtype=np.float64)
    w = score_warnings(ts, load, warn, forecast, 1.0, SPEC, 0, np.ones(len(load), dtype=bool))
    # rows with a target: 0-5 (their targets 0 0 5 5 0 0) and 8 (target 0); 6, 7, 9 and 10 have none
    assert (w.tp, w.fp, w.fn) == (2, 1, 0)
    # episodes: row 4 (rows 2-3 under the limit before it) and row 9 (rows 7-8 under it); row 4 is warned
    # from row 2, 2 minutes ahead; row 7's warning came 12 minutes before row 9, past the horizon's time
    assert (w.episodes, w.ahead) == (2, 1)
    assert w.lead_s == pytest.approx(120.0)
    expected_err = np.abs(forecast[[0, 1, 2, 3, 4, 5, 8]] - load[[2, 3, 4, 5, 6, 7, 10]]).sum()
    assert (w.abs_err, w.errors) == (pytest.approx(expected_err), 7)


def test_limit_comes_from_the_training_load_only() -> None:
    ts = 60.0 * np.arange(6)
    val = Series("s", ts, np.array([[0.0], [50], [50], [0], [0], [0]], dtype=np.float32), ("load",))
    forecast = np.array([[9.5, 9.5], [0, 9.5], [0, 9.5], [0, 9.5], [0, 9.5], [0, 9.5]])
    meta = calibrate(SPEC, np.arange(11, dtype=np.float64), [(val, 0, forecast)])
    assert meta["limit"] == 9.0  # the 90th percentile of 0..10, whatever the validation load is
    # rows 0-3 have a target 2 steps later; only row 0's (50) is over the limit
    assert meta["validation"] == {"crossings": 1, "warnings": [1, 4], "f1": [1.0, 0.4]}
    assert meta["warn_quantile"] == 0 and meta["horizon_steps"] == 2


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> list[CongestionStream]:
    return evaluate_congestion(NAB, CongestionOptions(), tmp_path_factory.mktemp("congestion"))


def test_evaluation_runs_the_daemons_path(evaluated: list[CongestionStream], tmp_path: Path) -> None:
    stream = next(s for s in evaluated if s.series.name == OCCUPANCY.stem)
    assert stream.series.ts.tolist() == load_nab_csv(OCCUPANCY).ts.tolist()
    stepped = step_through(onnx.load(str(stream.report.model_path)), stream.series.values, stream.series.ts)
    np.testing.assert_allclose(stream.result.forecast, stepped.congestion, rtol=1e-6)
    # pointwise alerting: the daemon's congestion alert is on exactly where the median forecast is over
    assert np.array_equal(stream.warnings["faultcast"], stepped.congestion[:, 0] > stream.limit)


def test_summary_names_the_training_seed(evaluated: list[CongestionStream]) -> None:
    seeded = replace(CongestionOptions(), fit=replace(CongestionOptions().fit, seed=23))
    assert "seed=23," in congestion_summary(evaluated, seeded, "faultcast evaluate congestion --seed 23")


def test_warnings_beat_both_baselines(evaluated: list[CongestionStream]) -> None:
    """The issue's bar, on the shipped data: better F1 than persistence and yesterday, no less lead."""
    scores = {m: pooled(evaluated, m) for m in METHODS}
    ours = scores["faultcast"]
    for baseline in ("persistence", "yesterday"):
        assert ours.f1 > scores[baseline].f1
        assert ours.mean_lead_min >= scores[baseline].mean_lead_min
    assert ours.mae < min(scores["persistence"].mae, scores["yesterday"].mae)


def test_a_load_with_jittering_timestamps_is_refused_with_the_reason(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ts = 1.7e9 + 300.0 * np.arange(2000) + rng.uniform(-0.5, 0.5, 2000)
    series = Series("lane", ts, rng.uniform(0, 10, (2000, 1)).astype(np.float32), ("load",))
    spec = TrainSpec("lane", fit_fraction=0.5, congestion=CongestionSpec("load", step_s=300.0))
    message = r"only 31 of 700 .* the intervals vary around 299.98 s \(only 1% are that exactly\): resample"
    with pytest.raises(DataError, match=message):
        train_series(series, spec, FitConfig(epochs=1), tmp_path / "m.onnx", progress=False)
