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

import numpy as np
import numpy.typing as npt

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
