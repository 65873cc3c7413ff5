"""SKAB's changepoint scoring (its NAB variant) on cases worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from train.skab_changepoint import count, nab_scores, predicted_changepoints, windows


def test_overlapping_windows_are_cut_and_detections_counted_once() -> None:
    true_cp = np.array([100.0, 130.0])
    # windows [100, 160] and [160, 190]; 105 and 110 fall in the first (only 105 counts), 170 in the
    # second, 400 nowhere
    got = count(true_cp, np.array([105.0, 110.0, 170.0, 400.0]), 60.0)
    assert got.windows == windows(true_cp, 60.0) == [(100.0, 160.0), (160.0, 190.0)]
    assert got.first_hits == [105.0, 170.0] and got.false_positives == 1


def test_normalised_score_against_hand_computation() -> None:
    # one file: a detection halfway into the first window, the second window missed, one false alarm
    files = [count(np.array([0.0, 1000.0]), np.array([30.0, 500.0]), 60.0)]
    x = -np.pi / 2 + 500 * np.pi / 999  # where the halfway detection sits on the scoring curve
    for name, a_fp, a_fn in (("standard", -0.11, -1.0), ("low FP", -0.22, -1.0), ("low FN", -0.11, -2.0)):
        half = (1.0 - a_fp) / 2
        tp = -half * np.tanh(x) / np.tanh(np.pi / 2) + half + a_fp
        score, null, perfect = tp + a_fn + a_fp, 2 * a_fn, 2.0
        assert nab_scores(files)[name] == pytest.approx(100 * (score - null) / (perfect - null), abs=0.005)


def test_no_detection_scores_zero_and_perfect_scores_100() -> None:
    true_cp = np.array([10.0, 500.0])
    assert nab_scores([count(true_cp, np.array([]), 60.0)])["standard"] == 0.0
    assert nab_scores([count(true_cp, true_cp, 60.0)]) == {
        "standard": 100.0,
        "low FP": 100.0,
        "low FN": 100.0,
    }


def test_alert_start_and_end_are_the_predicted_changepoints() -> None:
    ts = np.arange(8.0)
    firing = np.array([1, 1, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert predicted_changepoints(ts, firing).tolist() == [2.0, 4.0, 7.0]
