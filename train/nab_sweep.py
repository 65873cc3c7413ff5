"""NAB's sweep scorer (upstream ``nab/sweeper.py`` and ``nab/optimizer.py``), reproduced exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

Window = tuple[datetime, datetime]

PROBATION_PERCENT = 0.15
# Upstream caps the probation at ``probationPercent * 5000`` rows (750 rows at the default 15 %).
PROBATION_CAP_ROWS = 5000
# Upstream starts the sweep above any possible score so that its first row means "no detections".
START_THRESHOLD = 1.1


@dataclass(frozen=True)
class CostMatrix:
    """Weights of one NAB application profile (``CostMatrix`` in ``config/profiles.json``)."""

    tp_weight: float
    fp_weight: float
    fn_weight: float
    # NAB carries a TN weight in its profiles but never uses it when scoring.
    tn_weight: float = 1.0


@dataclass(frozen=True)
class AnomalyPoint:
    """One scored row: its sweep score and the window it counts for (``None`` when outside all)."""

    timestamp: datetime
    anomaly_score: float
    sweep_score: float
    window: str | None
    probationary: bool


@dataclass(frozen=True)
class ThresholdScore:
    """Raw NAB score and row counts when every row with ``anomaly_score >= threshold`` is a detection."""

    threshold: float
    score: float
    tp: int
    tn: int
    fp: int
    fn: int

    @property
    def total_count(self) -> int:
        """Scored rows (probation excluded), as the current upstream writes in ``Total_Count``."""
        return self.tp + self.tn + self.fp + self.fn


def sigmoid(x: float) -> float:
    """Standard logistic function."""
    return 1.0 / (1.0 + math.exp(-x))


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's reward: ~0.987 at a window's left edge (-1), 0 at its right edge, -1 far past it (> 3)."""
    if relative_position > 3.0:
        return -1.0
    return 2.0 * sigmoid(-5.0 * relative_position) - 1.0


def probationary_length(num_rows: int, probation_percent: float = PROBATION_PERCENT) -> float:
    """Rows at the start of a file that are never scored: ``min(floor(p * n), p * 5000)``."""
    return min(math.floor(probation_percent * num_rows), probation_percent * PROBATION_CAP_ROWS)


def sweep_points(
    timestamps: Sequence[datetime],
    anomaly_scores: Sequence[float],
    windows: Sequence[Window],
    costs: CostMatrix,
    name: str,
    probation_percent: float = PROBATION_PERCENT,
) -> list[AnomalyPoint]:
    """Per-row sweep scores of one file (upstream ``Sweeper.calcSweepScore``).

    ``name`` must be unique per file: windows are keyed by ``name|start`` when files are pooled.
    """
    if len(timestamps) != len(anomaly_scores):
        raise ValueError(f"{name}: {len(timestamps)} timestamps but {len(anomaly_scores)} anomaly scores")
    if any(math.isnan(s) for s in anomaly_scores):
        # NaN breaks the descending sort the sweep relies on, silently corrupting every threshold.
        raise ValueError(f"{name}: anomaly scores contain NaN")
    first_index: dict[datetime, int] = {}
    for i, ts in enumerate(timestamps):
        first_index.setdefault(ts, i)
    for start, end in windows:
        # Upstream's labeler refuses such windows; the sweep would otherwise silently skip them.
        if start not in first_index or end not in first_index:
            raise ValueError(f"{name}: window [{start}, {end}] does not match a row timestamp")
    pending = list(windows)
    max_tp = scaled_sigmoid(-1.0)
    probation = probationary_length(len(timestamps), probation_percent)

    cur: Window | None = None
    cur_name: str | None = None
    cur_right = cur_width = 0
    prev_right: int | None = None
    prev_width = 0
    points: list[AnomalyPoint] = []
    for i, (ts, score) in enumerate(zip(timestamps, anomaly_scores, strict=True)):
        if pending and ts == pending[0][0]:
            cur = pending.pop(0)
            cur_name = f"{name}|{cur[0]}"
            cur_right = first_index[cur[1]]
            cur_width = cur_right - first_index[cur[0]] + 1
        if cur is not None:
            # The ``+ 1`` makes the left edge exactly -1, so a detection there earns the full tp weight.
            sweep = scaled_sigmoid(-(cur_right - i + 1) / cur_width) * costs.tp_weight / max_tp
        elif prev_right is None:
            sweep = -1.0 * costs.fp_weight
        else:
            if prev_width <= 1:
                # Upstream divides by zero here; NAB's windows are always wider than one row.
                raise ValueError(f"{name}: a one-row window cannot score the false positives after it")
            sweep = scaled_sigmoid(abs(prev_right - i) / (prev_width - 1)) * costs.fp_weight
        in_probation = i < probation
        window = None if in_probation else cur_name
        points.append(AnomalyPoint(ts, float(score), sweep, window, in_probation))
        if cur is not None and ts == cur[1]:
            prev_right, prev_width = i, cur_width
            cur, cur_name = None, None
    return points


def scores_by_threshold(points: Sequence[AnomalyPoint], costs: CostMatrix) -> list[ThresholdScore]:
    """Score at every distinct threshold, highest first (upstream ``Sweeper.calcScoreByThreshold``).

    ``points`` may pool several files; a window counts its best detection, each FP counts once.
    """
    # sorted() is stable with reverse=True, so tied rows keep file order as upstream, which fixes
    # the float summation order of the FP part.
    scorable = sorted((p for p in points if not p.probationary), key=lambda p: p.anomaly_score, reverse=True)
    parts: dict[str, float] = {"fp": 0.0}
    for p in scorable:
        if p.window is not None:
            parts[p.window] = -costs.fn_weight
    tn = sum(1 for p in scorable if p.window is None)
    fn = len(scorable) - tn
    tp = fp = 0
    threshold = START_THRESHOLD
    rows: list[ThresholdScore] = []
    for p in scorable:
        if p.anomaly_score != threshold:
            rows.append(ThresholdScore(threshold, sum(parts.values()), tp, tn, fp, fn))
            threshold = p.anomaly_score
        if p.window is None:
            fp, tn = fp + 1, tn - 1
            parts["fp"] += p.sweep_score
        else:
            tp, fn = tp + 1, fn - 1
            parts[p.window] = max(parts[p.window], p.sweep_score)
    rows.append(ThresholdScore(threshold, sum(parts.values()), tp, tn, fp, fn))
    return rows


def row_at_threshold(rows: Sequence[ThresholdScore], threshold: float) -> ThresholdScore:
    """The row of ``scores_by_threshold`` that holds for ``threshold`` (upstream ``scoreDataSet``).

    Upstream fails (``None``) above 1.1 or below every score; those get the first / last row here.
    """
    prev = rows[0]
    for row in rows:
        if row.threshold == threshold:
            return row
        if row.threshold < threshold:
            return prev
        prev = row
    return rows[-1]


def best_row(rows: Sequence[ThresholdScore]) -> ThresholdScore:
    """Highest score; ties go to the higher threshold, as upstream's stable sort does."""
    return sorted(rows, key=lambda r: r.score, reverse=True)[0]
