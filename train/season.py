"""The period a stream's training data repeats with, for the season check (ScoreParams.season)."""

from __future__ import annotations

import math
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
# The rhythms ``season: auto`` looks for, in seconds: a day and a week. The check is for a
# calendar's rhythm (a holiday, a short-staffed shift); the shorter ones found on NAB, every 30 minutes
# to 2 hours on CPU and network metrics, raised more false alarms than they found (docs/evaluation.md,
# session 15). Any other rhythm can still be given as an explicit period.
CALENDAR = (86_400.0, 604_800.0)
# How far a period may be off a day or a week: a daily rhythm at 5-minute readings may peak at 287.
CALENDAR_TOLERANCE = 0.05


def autocorrelation(part: npt.NDArray[np.float32], lags: int) -> npt.NDArray[np.float64]:
    """Lags ``0..lags-1`` of ``part[T, F]``'s autocorrelation: the mean of its varying channels'."""
    centred = part.astype(np.float64) - part.mean(axis=0)
    power = (centred**2).sum(axis=0)
    varying = np.flatnonzero(power > 0)
    if not len(varying):
        return np.zeros(lags)
    # Through the FFT, zero-padded past twice the length so no lag wraps round: a direct correlation
    # costs the square of the length, minutes for a week of 1-second readings.
    # One channel at a time, so a wide fit holds one padded column, not all of them.
    size = 1 << (2 * len(part) - 1).bit_length()
    out = np.zeros(lags)
    for c in varying:
        spectrum = np.fft.rfft(centred[:, c], size)
        out += np.fft.irfft(spectrum * spectrum.conj(), size)[:lags] / power[c]
    return out / len(varying)


def find_period(
    parts: Sequence[npt.NDArray[np.float32]],
    floor: float = FLOOR,
    spans: Sequence[tuple[int, int]] | None = None,
) -> int | None:
    """The lag, in readings, of the highest local peak of the parts' autocorrelation (weighted by their
    lengths) above ``floor`` and RISE above the lowest at a shorter lag, up to a third of the shortest
    part (so each part shows it three times), and inside one of ``spans`` (first and last lag) if given;
    None where none.

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
    lowest = np.minimum.accumulate(acf[1:])  # lowest[k - 1]: the lowest at lags 1..k
    best: int | None = None
    spans = [(SHORTEST, lags - 1)] if spans is None else spans
    candidates = sorted(
        {k for first, last in spans for k in range(max(first, SHORTEST), min(last + 1, lags))}
    )
    for lag in candidates:
        peak = acf[lag] >= acf[lag - 1] and acf[lag] >= acf[lag + 1] and acf[lag] > floor
        if peak and acf[lag] - lowest[lag - 2] >= RISE and (best is None or acf[lag] > acf[best]):
            best = lag
    return best


def reading_step(timestamps: Sequence[npt.NDArray[np.float64]]) -> float | None:
    """The usual time between readings, in seconds: the median of the steps within the series, pooled
    (None if no series has two readings). The median, so that gaps and bursts leave it alone."""
    steps = np.concatenate([np.diff(ts) for ts in timestamps] or [np.zeros(0)])
    steps = steps[steps > 0]
    return float(np.median(steps)) if len(steps) else None


def calendar_period(parts: Sequence[npt.NDArray[np.float32]], step: float | None) -> int | None:
    """find_period among the lags within CALENDAR_TOLERANCE of a day or a week at ``step`` seconds a
    reading: what ``season: auto`` checks.

    A rhythm of 24 readings is a day at hourly readings; at 5-minute ones it is two hours, and 600 of
    them are too few to show the day it also repeats with:

    >>> rhythm = [np.sin(2 * np.pi * np.arange(600) / 24)[:, None].astype(np.float32)]
    >>> calendar_period(rhythm, 3600.0), calendar_period(rhythm, 300.0), find_period(rhythm)
    (24, None, 24)
    """
    if step is None:
        return None
    spans = [
        (
            math.ceil(span * (1 - CALENDAR_TOLERANCE) / step),
            math.floor(span * (1 + CALENDAR_TOLERANCE) / step),
        )
        for span in CALENDAR
    ]
    return find_period(parts, spans=spans)
