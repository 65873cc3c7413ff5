"""The congestion head: its training target, and the limit it is calibrated against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.errors import DataError
from train.series import Series


@dataclass(frozen=True)
class CongestionSpec:
    """The congestion head: quantiles of one load channel ``horizon`` steps of ``step_s`` ahead."""

    channel: str
    horizon: int = 6
    step_s: float = 300.0
    quantiles: tuple[float, ...] = (0.5, 0.9)
    # The quantile whose forecast is held against the limit. The median warns when the load is more
    # likely over the limit than under it; picking a level by validation F1 instead was tried and was
    # noisy (a day of validation holds a few dozen crossings), and upper levels warned 3-6x too often.
    warn: float = 0.5
    limit_percentile: float = 90.0  # the limit: this percentile of the training part's load values

    def __post_init__(self) -> None:
        if self.horizon < 1 or not self.step_s > 0:
            raise ValueError(
                f"congestion horizon {self.horizon} readings of {self.step_s} s: need >= 1 reading of > 0 s"
            )
        if self.warn not in self.quantiles:
            raise ValueError(f"warn quantile {self.warn} is not one of the quantiles {self.quantiles}")


def ahead_target(
    ts: npt.NDArray[np.float64], load: np.ndarray, spec: CongestionSpec
) -> tuple[np.ndarray, npt.NDArray[np.bool_]]:
    """``load[t + horizon]`` and where it is defined: only when no reading is missing between.

    >>> ts, load = np.array([0.0, 1, 2, 4]), np.array([1.0, 2, 5, 9])
    >>> target, mask = ahead_target(ts, load, CongestionSpec("v", horizon=1, step_s=1.0))
    >>> target.tolist(), mask.tolist()
    ([2.0, 5.0, 0.0, 0.0], [True, True, False, False])
    """
    h = spec.horizon
    target = np.zeros(len(load), dtype=np.float32)
    mask = np.zeros(len(load), dtype=bool)
    if len(load) > h:
        target[:-h] = load[h:]
        mask[:-h] = np.isclose(ts[h:] - ts[:-h], h * spec.step_s)
    target[~mask] = 0.0
    return target, mask


def crossing_ahead(
    ts: npt.NDArray[np.float64], load: np.ndarray, limit: float, spec: CongestionSpec
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Whether the load ``horizon`` readings later is above ``limit``, and where that is known."""
    target, mask = ahead_target(ts, load, spec)
    return (target > limit) & mask, mask


def calibrate(
    spec: CongestionSpec, train_load: np.ndarray, val: list[tuple[Series, int, np.ndarray]]
) -> dict[str, Any]:
    """The congestion metadata: the limit (a percentile of the training load) and how each quantile's
    warnings scored on validation, for the record.

    ``val`` holds each validation series, the row its scoring starts at, and its forecasts ``[T, Q]``.
    A warning is a quantile's forecast above the limit; it is right when the load ``horizon`` steps
    later is above the limit.
    """
    limit = float(np.percentile(train_load, spec.limit_percentile))
    hits = np.zeros(len(spec.quantiles))
    warned = np.zeros(len(spec.quantiles))
    crossings = 0
    for series, score_from, forecast in val:
        raw = series.values[:, series.channels.index(spec.channel)]
        actual, mask = crossing_ahead(series.ts, raw, limit, spec)
        mask[:score_from] = False
        warn = forecast > limit
        hits += (warn & actual[:, None])[mask].sum(axis=0)
        warned += warn[mask].sum(axis=0)
        crossings += int(actual[mask].sum())
    return {
        "channel": spec.channel,
        "horizon_steps": spec.horizon,
        "step_s": spec.step_s,
        "quantiles": list(spec.quantiles),
        "warn_quantile": spec.quantiles.index(spec.warn),
        "limit": limit,
        "limit_percentile": spec.limit_percentile,
        "validation": {
            "crossings": crossings,
            "warnings": [int(v) for v in warned],
            "f1": [round(float(v), 4) for v in 2 * hits / np.maximum(warned + crossings, 1)],
        },
    }


def check_load(train: list[Series], spec: CongestionSpec) -> None:
    """The congestion head learns only from readings with one ``horizon`` readings of ``step_s`` later: a
    wrong channel or interval would leave it nothing to learn from. (Real loads have gaps: a third of
    NAB's occupancy readings have a reading 3 steps later.)"""
    channels = train[0].channels
    if spec.channel not in channels:
        raise DataError(f"congestion channel {spec.channel!r} is not among the channels {list(channels)}")
    load = channels.index(spec.channel)
    rows = sum(len(s) for s in train)
    defined = sum(int(ahead_target(s.ts, s.values[:, load], spec)[1].sum()) for s in train)
    if defined * 10 < rows:
        steps = np.concatenate([np.diff(s.ts) for s in train])
        step = float(np.median(steps))
        regular = float(np.isclose(steps, step).mean())
        if regular < 0.5:
            fix = (
                f"the intervals vary around {step:g} s (only {regular:.0%} are that exactly): resample the "
                "data to a regular step"
            )
        elif np.isclose(step, spec.step_s):
            fix = "the data's gaps leave few: forecast fewer readings ahead (--congestion-horizon)"
        else:
            fix = f"the readings come every {step:g} s (median): give that as the step (--congestion-step-s)"
        raise DataError(
            f"the congestion head forecasts {spec.horizon} readings of {spec.step_s:g} s ahead, but only "
            f"{defined} of {rows} training readings have a reading that far ahead; {fix}"
        )
