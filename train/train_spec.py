"""What `faultcast train` is asked to build (TrainSpec), and the score's command-line options checked as it
checks them."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypedDict, TypeVar

from daemon.errors import UsageError
from train.congestion import CongestionSpec
from train.fault import FaultSpec
from train.score import ScoreParams, ScoreSettingError


@dataclass(frozen=True)
class TrainSpec:
    name: str
    version: str = "1"
    fit_fraction: float = 0.15  # NAB's probation period: the only part a detector may learn from
    val_fraction: float = 0.3  # of the fitted part, the most recent readings
    smoothing: float = 0.1
    baseline: int = 0  # readings that calibrate each stream's own offsets (see ScoreParams.baseline)
    scale_floor: float | None = None  # and its own score scale (see ScoreParams.scale_floor)
    adapt: float | None = None  # adaptive score's rate (see ScoreParams.adapt)
    # With an adaptive score the threshold is in standard deviations of each stream's own recent
    # scores, so it is set, not fitted: validation segments leave too few readings past the warm-up to
    # fit a tail on (NAB's probation: 225 at most, 100 of them the warm-up).
    adapt_threshold: float = 4.0
    peak_half_life: float | None = None  # the peak gate (see ScoreParams.peak_half_life)
    range_tolerance: float | None = None  # the range check (see ScoreParams.range_tolerance)
    range_creep: int | None = None  # and its creep check's lag in readings (see ScoreParams.range_creep)
    # The season check's period in readings (see ScoreParams.season); "auto": the daily or weekly rhythm
    # the training data shows (train.season.calendar_period), off where it shows none. Its memory is the
    # longest fitted stretch.
    season: int | Literal["auto"] | None = None
    # The validation split is assumed normal, so it must not alarm: the threshold stays this far above
    # its highest score even when the dynamic threshold would cut lower.
    headroom: float = 1.5
    parity_steps: int = 2000
    clock: bool = False  # time of day as an input: for loads that follow a daily rhythm
    congestion: CongestionSpec | None = None
    fault: FaultSpec | None = None  # needs labels on the training parts and the validation segments

    def __post_init__(self) -> None:
        if not 0.0 < self.fit_fraction <= 1.0 or not 0.0 < self.val_fraction < 1.0:
            raise ValueError(
                f"fit_fraction={self.fit_fraction} must lie in (0, 1] and val_fraction={self.val_fraction} "
                "in (0, 1)"
            )
        if self.baseline < 0:
            raise ValueError(f"baseline={self.baseline}: readings that set a stream's offsets, >= 0")
        if self.scale_floor is not None and not (self.scale_floor > 0 and self.baseline >= 2):
            raise ValueError(
                f"scale_floor={self.scale_floor}: a per-stream score scale needs a floor > 0 and a baseline "
                "of at least 2 readings (--baseline N) to measure it on"
            )
        # ScoreParams checks the score's settings; trying them here refuses bad ones before the fit. The
        # season check's memory is only known from the data: checked with room enough here.
        ScoreParams(
            (0.0,),
            (1.0,),
            (1.0,),
            adapt=self.adapt,
            peak_half_life=self.peak_half_life,
            range_tolerance=self.range_tolerance,
            range_creep=self.range_creep,
            season=2 if self.season == "auto" else self.season,
            season_memory=2**40,
        )


SCORE_FLAGS = {
    "adapt": "--adapt",
    "peak_half_life": "--peak-half-life",
    "range_tolerance": "--range-tolerance",
    "range_creep": "--range-creep",
    "season": "--season",
}


class ScoreOptions(TypedDict):
    """The score's command-line options, named as TrainSpec and NabOptions name them."""

    adapt: float | None
    peak_half_life: float | None
    range_tolerance: float | None
    range_creep: int | None
    season: int | Literal["auto"] | None


def score_options(
    args: argparse.Namespace,
    command: str,
    default_tolerance: float | None = None,
    default_season: int | Literal["auto"] | None = None,
    default_creep: int | None = None,
) -> ScoreOptions:
    """A command line's ``--adapt``, ``--peak-half-life`` (0 or unset: off), ``--range-tolerance``
    (``off``: off; 0 is a tolerance), ``--range-creep`` (``off`` or readings) and ``--season`` (``auto``,
    ``off`` or readings), checked as TrainSpec checks them: a bad one stops ``command`` with UsageError,
    before any fitting. Unset, the tolerance and the season are ``default_tolerance`` and
    ``default_season`` where the adaptive score and the peak gate they need are on, else off, and the
    creep check's lag is ``default_creep`` where the range check is on."""
    adapt, peak_half_life = args.adapt or None, args.peak_half_life or None
    text, season_text, creep_text = args.range_tolerance, args.season, args.range_creep
    tolerance = _number(
        text, float, f"{command}: --range-tolerance", "a share of the stream's range (e.g. 0.05) or off"
    )
    season: int | Literal["auto"] | None = (
        "auto"
        if season_text == "auto"
        else _number(
            season_text, int, f"{command}: --season", "auto, off or the period in readings (e.g. 48)"
        )
    )
    creep = _number(creep_text, int, f"{command}: --range-creep", "the lag in readings (e.g. 100) or off")
    if adapt is not None and peak_half_life is not None:
        tolerance = default_tolerance if text is None else tolerance
        season = default_season if season_text is None else season
    if creep_text is None and tolerance is not None:
        creep = default_creep
    options = ScoreOptions(
        adapt=adapt,
        peak_half_life=peak_half_life,
        range_tolerance=tolerance,
        range_creep=creep,
        season=season,
    )
    try:
        TrainSpec("check", **options)
    except ScoreSettingError as exc:
        raise UsageError(f"{command}: {exc.naming(SCORE_FLAGS, ' ')}") from exc
    return options


Number = TypeVar("Number", int, float)


def _number(text: str | None, kind: Callable[[str], Number], flag: str, give: str) -> Number | None:
    """A numeric option's ``text`` as ``kind``; None where it is unset or ``off``."""
    if text in (None, "off"):
        return None
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give {give}") from None
