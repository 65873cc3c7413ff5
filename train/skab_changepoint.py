"""SKAB's changepoint task: its NAB variant, scored from the rows where an alert starts or ends.

Each labelled changepoint opens a detection window ``window_s`` wide to its right (a window that would
overlap the next one starts where the previous one ends). The first predicted changepoint inside a
window is a true positive, scored by a tanh-shaped function of how far into the window it came (A_tp at
the window's start, A_fp at its end); a window without one is a false negative; every predicted
changepoint outside all windows is a false positive. Scores are summed over files and normalised
between the null detector (every window missed) and the perfect one, per profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class ChpProfile:
    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES = (
    ChpProfile("standard", 1.0, -0.11, -1.0),
    ChpProfile("low FP", 1.0, -0.22, -1.0),
    ChpProfile("low FN", 1.0, -0.11, -2.0),
)
DETAIL = 1000  # points of the scoring function across a window


def windows(changepoints: FloatArray, window_s: float) -> list[tuple[float, float]]:
    """Detection windows ``[t, t + window_s]``; a window overlapping the previous one starts at its end.

    >>> windows(np.array([0.0, 30.0, 200.0]), 60.0)
    [(0.0, 60.0), (60.0, 90.0), (200.0, 260.0)]
    """
    out: list[tuple[float, float]] = []
    for t in np.sort(changepoints).tolist():
        start = t if not out or out[-1][1] < t else out[-1][1]
        out.append((start, t + window_s))
    return out


def predicted_changepoints(ts: FloatArray, firing: BoolArray) -> FloatArray:
    """Times of the rows where the prediction changes (an alert starts or ends).

    >>> predicted_changepoints(np.arange(5.0), np.array([0, 1, 1, 0, 0], dtype=bool)).tolist()
    [1.0, 3.0]
    """
    changed = np.flatnonzero(np.diff(firing.astype(np.int8)) != 0) + 1
    return ts[changed]


def tp_score(start: float, detected: float, end: float, profile: ChpProfile) -> float:
    """A_tp for a detection at the window's start, falling smoothly to A_fp at its end.

    >>> round(tp_score(0.0, 0.0, 60.0, PROFILES[0]), 4), round(tp_score(0.0, 59.99, 60.0, PROFILES[0]), 4)
    (1.0, -0.11)
    """
    x = np.linspace(-np.pi / 2, np.pi / 2, DETAIL)
    half = (profile.a_tp - profile.a_fp) / 2
    y = -half * np.tanh(x) / np.tanh(np.pi / 2) + half + profile.a_fp
    return float(y[min(int((detected - start) / (end - start) * DETAIL), DETAIL - 1)])


@dataclass(frozen=True)
class FileCounts:
    """One file's windows and detections, independent of the profile."""

    windows: list[tuple[float, float]]
    first_hits: list[float | None]  # per window: the first predicted changepoint in it, if any
    false_positives: int


def count(true_cp: FloatArray, predicted: FloatArray, window_s: float) -> FileCounts:
    """Windows with their first detection, and detections outside every window.

    Window ends are inclusive, as in SKAB's evaluation: a detection exactly where one cut window ends and
    the next begins counts in both (only possible for changepoints closer than the window)."""
    wins = windows(true_cp, window_s)
    inside = np.zeros(len(predicted), dtype=bool)
    hits: list[float | None] = []
    for start, end in wins:
        here = (predicted >= start) & (predicted <= end)
        inside |= here
        hits.append(float(predicted[here][0]) if here.any() else None)
    return FileCounts(wins, hits, int((~inside).sum()))


def nab_scores(files: Sequence[FileCounts]) -> dict[str, float]:
    """Normalised score per profile over all files: 100 perfect, 0 the null detector.

    >>> one = count(np.array([100.0]), np.array([100.0, 500.0]), 60.0)  # on time, plus one false alarm
    >>> nab_scores([one])["standard"]
    94.5
    """
    out = {}
    for p in PROFILES:
        score = null = perfect = 0.0
        for f in files:
            score += p.a_fp * f.false_positives
            for (start, end), hit in zip(f.windows, f.first_hits, strict=True):
                score += p.a_fn if hit is None else tp_score(start, hit, end, p)
            null += p.a_fn * len(f.windows)
            perfect += p.a_tp * len(f.windows)
        out[p.name] = round(100 * (score - null) / (perfect - null), 2) if perfect != null else 0.0
    return out
