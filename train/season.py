"""The period a stream's training data repeats with, for the season check (ScoreParams.season)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

# A period must show this autocorrelation: strong enough that its windows resemble each other (a
# weaker rhythm makes every window unlike its neighbours and the check alarm on noise).
FLOOR = 0.5
SHORTEST = 4  # readings; shorter lags are the readings' own smoothness, not a rhythm
# And it must rise this far above the lowest autocorrelation at a shorter lag: a trend's or a random
# walk's autocorrelation decays with bumps that can top the floor. Over 3,600 random walks and AR(1)
# series (phi 0.9-0.995, 525-2,000 readings) the bumps that did rose at most 0.13; this is about twice.
RISE = 0.25


def autocorrelation(part: npt.NDArray[np.float32], lags: int) -> npt.NDArray[np.float64]:
    """Lags ``0..lags-1`` of ``part[T, F]``'s autocorrelation: the mean of its varying channels'."""
    centred = part.astype(np.float64) - part.mean(axis=0)
    power = (centred**2).sum(axis=0)
    varying = np.flatnonzero(power > 0)
    out = np.zeros(lags)
    for c in varying:
        full = np.correlate(centred[:, c], centred[:, c], "full")[len(part) - 1 :]
        out += full[:lags] / power[c]
    out /= max(len(varying), 1)
    return out


def find_period(parts: Sequence[npt.NDArray[np.float32]], floor: float = FLOOR) -> int | None:
    """The lag, in readings, of the highest local peak of the parts' autocorrelation (weighted by their
    lengths) above ``floor`` and RISE above the lowest at a shorter lag, up to a third of the shortest
    part (so each part shows it three times); None where none.

    >>> t = np.arange(600)
    >>> find_period([np.sin(2 * np.pi * t / 48)[:, None].astype(np.float32)])
    48
    >>> find_period([np.random.default_rng(0).normal(size=(600, 1)).astype(np.float32)]) is None
    True
    """
    # A part with no varying channel shows no rhythm, nor the lack of one.
    parts = [p for p in parts if np.ptp(p, axis=0).max(initial=0.0) > 0]
    if not parts:
        return None
    lags = min(len(p) for p in parts) // 3
    if lags <= SHORTEST + 1:
        return None
    weights = np.array([len(p) for p in parts], dtype=np.float64)
    acf = sum(w * autocorrelation(p, lags + 1) for w, p in zip(weights, parts, strict=True)) / weights.sum()
    best: int | None = None
    for lag in range(SHORTEST, lags):
        peak = acf[lag] >= acf[lag - 1] and acf[lag] >= acf[lag + 1] and acf[lag] > floor
        if peak and acf[lag] - acf[1:lag].min() >= RISE and (best is None or acf[lag] > acf[best]):
            best = lag
    return best
