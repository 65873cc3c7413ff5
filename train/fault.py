"""The fault head: its training target from labelled faults, and the probability threshold that alerts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FaultSpec:
    """Learn the probability that a labelled fault starts within the next ``horizon`` readings."""

    horizon: int = 60

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"fault horizon {self.horizon}: must be >= 1 reading")


def fault_target(labels: BoolArray, horizon: int) -> tuple[np.ndarray, BoolArray]:
    """1 where a labelled row comes within the next ``horizon`` rows; the mask drops the last rows,
    whose future is not in the data.

    >>> target, mask = fault_target(np.array([0, 0, 0, 1, 1, 0], dtype=bool), 2)
    >>> target.tolist(), mask.tolist()
    ([0.0, 1.0, 1.0, 1.0, 0.0, 0.0], [True, True, True, True, False, False])
    """
    n = len(labels)
    padded = np.concatenate([labels.astype(np.int64), np.zeros(horizon, dtype=np.int64)])
    ahead = np.cumsum(padded)
    # labelled rows among t+1 .. t+horizon
    within = ahead[horizon : horizon + n] - ahead[:n]
    mask = np.arange(n) < n - horizon
    return np.where(mask, (within > 0).astype(np.float32), np.float32(0.0)), mask


def calibrate(spec: FaultSpec, val: list[tuple[BoolArray, np.ndarray]]) -> dict[str, Any]:
    """The probability threshold with the best F1 on validation (pairs of labels and probabilities).

    Without a labelled fault in validation there is nothing to choose on: 0.5 is kept.
    """
    targets, probs = [], []
    for labels, prob in val:
        target, mask = fault_target(labels, spec.horizon)
        targets.append(target[mask] > 0.5)
        probs.append(prob[mask])
    y, p = np.concatenate(targets), np.concatenate(probs)
    candidates = np.linspace(0.05, 0.95, 19)
    f1 = [2 * np.sum(y & (p >= c)) / max(np.sum(y) + np.sum(p >= c), 1) for c in candidates]
    best = int(np.argmax(f1))
    threshold = float(candidates[best]) if y.any() else 0.5
    return {
        "horizon_steps": spec.horizon,
        "threshold": round(threshold, 4),
        "validation": {"positives": int(y.sum()), "rows": len(y), "f1": round(float(f1[best]), 4)},
    }
