"""Fits the score's scale and the alert threshold on validation data, never on test data.

The threshold follows the nonparametric dynamic threshold of Hundman et al. (KDD 2018, "Detecting
spacecraft anomalies using LSTMs and nonparametric dynamic thresholding"): among candidates
``mean + z * std`` of the smoothed scores, pick the one whose removal of the points above it
shrinks the mean and spread the most per point (and per run of points) removed.

>>> scores = np.array([1.0, 1.1, 0.9, 1.0, 1.2, 0.8, 1.0, 6.0, 1.1, 0.9])
>>> 1.2 < dynamic_threshold(scores) < 6.0
True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt

from daemon.alerts import AlertState, Observation, step
from daemon.config import AlertKindConfig
from daemon.runtime import policy_for

FloatArray = npt.NDArray[np.floating]


def _runs(mask: npt.NDArray[np.bool_]) -> int:
    """Number of contiguous runs of True."""
    return int(mask[0]) + int(np.count_nonzero(mask[1:] & ~mask[:-1])) if len(mask) else 0


def dynamic_threshold(scores: FloatArray, z_values: FloatArray | None = None) -> float:
    """The threshold that best separates the few high scores from the bulk; max + margin if none stand out."""
    scores = np.asarray(scores, dtype=np.float64)
    zs = np.arange(2.0, 10.5, 0.5) if z_values is None else z_values
    mean, std = float(scores.mean()), float(scores.std())
    best_z, best_gain = None, 0.0
    for z in zs:
        eps = mean + z * std
        above = scores > eps
        if not above.any() or above.all():
            continue
        below = scores[~above]
        gain = ((mean - below.mean()) / mean + (std - below.std()) / std) / (above.sum() + _runs(above) ** 2)
        if gain > best_gain:
            best_z, best_gain = z, gain
    if best_z is None:
        return float(scores.max() + std)
    return mean + float(best_z) * std


def alert_rows(
    score: np.ndarray,
    threshold: float,
    alerting: Mapping[str, float] | None = None,
    hold: np.ndarray | None = None,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Rows where the daemon's fault alert state machine (with ``alerting``'s settings, no cool-down)
    fires on ``score`` (and a peak-gated model's ``hold`` score), and the rows where an alert starts.

    >>> settings = {"fire_after": 2, "resolve_after": 2}
    >>> firing, onsets = alert_rows(np.array([0.0, 2, 2, 2, 0, 0]), 1.0, settings)
    >>> firing.astype(int).tolist(), np.flatnonzero(onsets).tolist()
    ([0, 0, 1, 1, 1, 0], [2])
    """
    policy = policy_for("fault", AlertKindConfig(cooldown_s=0.0), threshold, alerting)
    state, firing = AlertState(), np.zeros(len(score), dtype=bool)
    holds = [None] * len(score) if hold is None else np.nan_to_num(hold).tolist()
    for t, (value, held) in enumerate(zip(np.nan_to_num(score).tolist(), holds, strict=True)):
        state, _ = step(policy, state, Observation(value, float(t), ("validation", 0, t), held))
        firing[t] = state.phase == "firing"
    return firing, firing & ~np.concatenate([[False], firing[:-1]])
