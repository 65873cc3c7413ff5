"""The streaming score's reference: how prediction errors become each reading's anomaly score and channel
shares. The exported step model (train.export) must reproduce ``stream_scores`` one reading at a time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
import torch

from train.model import Forecaster, model_inputs

# A season window's points (block means), and the most blocks a stream keeps for it: at most 256 of them
# bound the state at about 1 KiB a channel, 21 windows back.
SEASON_POINTS = 12
SEASON_BLOCKS = 256


class ScoreSettingError(ValueError):
    """A score setting ScoreParams refuses. ``template`` names each setting as ``{field}`` and the bad
    value as ``{value}``, so that a command line can say its flags where ScoreParams says its fields."""

    def __init__(self, template: str, value: float | None = None) -> None:
        self.template, self.value = template, value
        super().__init__(self.naming({}, "="))

    def naming(self, names: Mapping[str, str], assign: str) -> str:
        """The message with each setting called ``names[field]`` (default: the field) and its value
        written after ``assign``."""
        return self.template.format_map(_Named(names, value=f"{assign}{self.value}"))


class _Named(dict[str, str]):
    """Template fields: the given names, and any other ScoreParams field as itself (a typo stays an error)."""

    def __init__(self, names: Mapping[str, str], **fixed: str) -> None:
        super().__init__(names, **fixed)

    def __missing__(self, key: str) -> str:
        if key in {f.name for f in fields(ScoreParams)}:
            return key
        raise KeyError(key)


@dataclass(frozen=True)
class ScoreParams:
    """How prediction errors become the anomaly score; baked into the exported step model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resid_std: tuple[float, ...]
    smoothing: float = 0.1
    # A stream's first ``baseline`` readings calibrate its own offsets (their running mean, in
    # normalised units, is subtracted from then on) and score nothing; 0 turns this off.
    baseline: int = 0
    # With a baseline, the second half of it also measures the stream's own error spread (RMS of its
    # instantaneous scores, which is ~1 on the validation split); later scores are divided by that
    # spread, never by less than ``scale_floor``: a noisier machine than the training data does not
    # alarm for its noise alone. None: no per-stream scale.
    scale_floor: float | None = None
    # Adaptive score: each stream's score becomes how many of its own recent standard deviations it
    # stands above its own recent mean (an exponential moving mean and variance at rate ``adapt``, as
    # Numenta's anomaly likelihood models recent scores, started as the plain mean and variance of the
    # stream's first 1 / ``adapt`` scores), floored at 0. It answers "unusual for this
    # stream lately" rather than "unusual for the training data", for slowly drifting streams. None: off.
    adapt: float | None = None
    adapt_floor: float = 0.03  # the least standard deviation divided by, in score units
    # The most an adaptive score says: far past any threshold, and float32 still resolves 1e-5 there
    # (at ~900, where quiet streams' first bursts landed, its spacing is 6e-5, over export parity's 1e-4).
    adapt_cap: float = 100.0
    # Peak gate: a reading keeps its score only where the score beats the stream's recent peak (its
    # highest score before the gate, halving every ``peak_half_life`` readings), else scores 0. A long
    # excursion then says so as it rises instead of on every reading it lasts; the ungated score (the
    # step model's ``hold_score``) keeps its alert up until it subsides. A peak of p hides scores below
    # it for about ``peak_half_life * log2(p / s)`` readings. None: off.
    peak_half_life: float | None = None
    # Range check, HTM's "spatial anomaly" in NAB's numenta detector (it needs ``adapt`` and
    # ``peak_half_life``): once the stream has had time to show its range (from ``settled`` on), a
    # reading of any channel outside the range the stream has shown since its reset, widened by
    # ``range_tolerance`` times that range on each side, scores ``adapt_cap``. It bypasses the peak
    # gate, so a reading breaking its range one reading after an excursion still says so, and leaves
    # ``hold_score`` alone. A stream that has only shown one value has no range yet. None: off.
    range_tolerance: float | None = None
    # Creep check (it needs ``range_tolerance``): a move beyond the range that comes a little at a time
    # (a temperature climbing past anything seen, one small step a reading) never breaks the range
    # check, and a one-step forecaster follows it. Once settled, a reading that sets a new low or high
    # of any channel beyond the range the stream held lately (its lowest and highest readings, each
    # followed with a lag of ``range_creep`` readings), by more than ``range_tolerance`` of that range,
    # scores ``adapt_cap``, at most once every ``range_creep`` readings: a move counts once, not at
    # each new extreme. It bypasses the peak gate and leaves ``hold_score`` alone, as the range check
    # does. None: off.
    range_creep: int | None = None
    # Season check, for a rhythm a one-step forecaster follows without judging it (a day of a daily
    # load, even one shorter than the training window: docs/evaluation.md, session 13; training's
    # "auto" looks for a day or a week, train.season.calendar_period): the last
    # ``season`` readings, as SEASON_POINTS block means, against every such window of the stream's last
    # ``season_memory`` readings (at most SEASON_BLOCKS blocks); the nearest one's RMS
    # distance, at each block's end, becomes an adaptive score (the adaptive score's rate, warm-up, floor
    # and cap, counted in blocks) gated by its own recent peak (the gate's half-life, in readings). A day
    # unlike any day of the last weeks scores high; a one-step forecaster follows it. It needs ``adapt``
    # and ``peak_half_life``. None: off.
    season: int | None = None
    season_memory: int = 0

    def __post_init__(self) -> None:
        # Above 1 the variance turns negative; below 1e-5 the warm-up outlasts the step counter's cap.
        if self.adapt is not None and not 1e-5 <= self.adapt <= 1.0:
            raise ScoreSettingError(
                "{adapt}{value}: the adaptive score's rate must lie in [1e-5, 1]", self.adapt
            )
        if self.peak_half_life is not None and not self.peak_half_life >= 1.0:
            raise ScoreSettingError(
                "{peak_half_life}{value}: the peak gate's half-life must be >= 1 reading", self.peak_half_life
            )
        if self.range_tolerance is not None and not 0.0 <= self.range_tolerance < math.inf:
            raise ScoreSettingError(
                "{range_tolerance}{value}: the range check's tolerance must be a finite share of the "
                "stream's range, >= 0",
                self.range_tolerance,
            )
        if self.range_tolerance is not None and (self.adapt is None or self.peak_half_life is None):
            raise ScoreSettingError(
                "the range check ({range_tolerance}) needs the adaptive score ({adapt}) and the peak gate "
                "({peak_half_life}): it settles with the adaptive statistics (three of their memories, "
                "time for a stream to show its range) and its break scores the adaptive score's cap; a "
                "break lasts one reading, and gated models alert on one"
            )
        if self.range_creep is not None and self.range_tolerance is None:
            raise ScoreSettingError(
                "the creep check ({range_creep}) needs the range check ({range_tolerance}): it measures a "
                "move against the range with the range check's tolerance"
            )
        # float32 counts readings exactly up to 2**24
        if self.range_creep is not None and not 1 <= self.range_creep <= 2**24:
            raise ScoreSettingError(
                "{range_creep}{value}: the creep check's lag must lie in [1, 2**24] readings",
                self.range_creep,
            )

        if self.season is not None:
            if self.adapt is None or self.peak_half_life is None:
                raise ScoreSettingError(
                    "the season check ({season}) needs the adaptive score ({adapt}) and the peak gate "
                    "({peak_half_life}): it scores its distances the way they score the forecast's errors"
                )
            if self.season < 2:
                raise ScoreSettingError(
                    "{season}{value}: the season check needs a period of at least 2 readings", self.season
                )
            if self.season_memory < 2 * self.season_window:
                raise ScoreSettingError(
                    "{season}{value}: the season check needs a memory "
                    f"({{season_memory}}={self.season_memory}) of at least two windows of the period "
                    f"({2 * self.season_window} readings)",
                    self.season,
                )

    @property
    def season_block(self) -> int:
        """Readings averaged into each point of a season window."""
        assert self.season is not None
        return max(1, round(self.season / SEASON_POINTS))

    @property
    def season_window(self) -> int:
        """Readings a season window spans."""
        return 0 if self.season is None else SEASON_POINTS * self.season_block

    @property
    def season_ring(self) -> int:
        """Blocks a stream keeps for the season check: its memory, and the window being compared."""
        if self.season is None:
            return 0
        return min(self.season_memory // self.season_block, SEASON_BLOCKS) + SEASON_POINTS

    @property
    def peak_decay(self) -> float:
        """What the recent peak is multiplied by per reading."""
        assert self.peak_half_life is not None
        return float(0.5 ** (1.0 / self.peak_half_life))

    @property
    def adapt_warmup(self) -> int:
        """Scored readings (from ``first_scored`` on) whose adaptive score is 0 while the stream's own
        statistics settle: one memory of the moving statistics (1 / ``adapt``), which until then are the
        plain mean and variance of the readings seen. They only take scored readings, not the
        baseline's zeros."""
        return 0 if self.adapt is None else math.ceil(1.0 / self.adapt)

    @property
    def first_scored(self) -> int:
        """Index of a stream's first reading that gets a non-zero score."""
        return max(self.baseline, 1)

    @property
    def range_warmup(self) -> int:
        """Scored readings (from ``first_scored`` on) before the range and creep checks can fire: three
        memories of the adaptive statistics, time for a stream to show its range (its adaptive score
        starts after one, ``adapt_warmup``)."""
        return 0 if self.adapt is None else math.ceil(3.0 / self.adapt)

    @property
    def settled(self) -> int:
        """Index of a stream's first reading whose range and creep checks can fire."""
        return self.first_scored + self.range_warmup

    @property
    def scale_window(self) -> tuple[int, int]:
        """Readings ``[start, stop)`` that measure the stream's spread (the baseline's second half)."""
        return (self.baseline + 1) // 2, self.baseline


def adaptive_score(score: torch.Tensor, params: ScoreParams, first: int | None = None) -> torch.Tensor:
    """``score[T]`` in standard deviations above its own exponential moving mean (ScoreParams.adapt),
    from ``score[first]`` on (default: the stream's first scored reading); the statistics start as the
    plain mean and variance of the scores seen, and the score as 0 for ``adapt_warmup`` of them.

    >>> p = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), adapt=1.0)
    >>> adaptive_score(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.06, 0.0]), p).tolist()
    [0.0, 0.0, 0.0, 0.0, 2.0, 0.0]
    """
    assert params.adapt is not None
    rate = torch.tensor(params.adapt)
    mean, var = torch.zeros(()), torch.zeros(())
    out = torch.zeros_like(score)
    first = params.first_scored if first is None else first
    for t in range(first, len(score)):
        d = score[t] - mean
        if t >= first + params.adapt_warmup:
            z = d / torch.clamp(torch.sqrt(var), min=params.adapt_floor)
            out[t] = torch.clamp(z, min=0.0, max=params.adapt_cap)
        # The n-th reading moves them by 1/n until that is below the rate: the plain mean and variance of
        # the readings seen, where moving statistics started from zero would sit low for memories on end
        # and inflate the first scores after the warm-up.
        step = torch.maximum(rate, 1.0 / torch.tensor(float(t - first + 1)))
        mean = mean + step * d
        var = (1 - step) * (var + step * (d * d))
    return out


def recent_peaks(score: torch.Tensor, params: ScoreParams) -> torch.Tensor:
    """The recent peak each reading of ``score[T]`` is held against (ScoreParams.peak_half_life): the
    highest earlier score, halving every ``peak_half_life`` readings; 0 before the first reading.

    >>> p = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), peak_half_life=1.0)
    >>> recent_peaks(torch.tensor([4.0, 1.0, 3.0]), p).tolist()
    [0.0, 4.0, 2.0]
    """
    decay = torch.tensor(params.peak_decay)
    peak = torch.zeros(())
    out = torch.zeros_like(score)
    for t in range(len(score)):
        out[t] = peak
        peak = torch.maximum(score[t], peak * decay)
    return out


def peak_gate(score: torch.Tensor, params: ScoreParams) -> torch.Tensor:
    """``score[T]`` where it beats the recent peak (ScoreParams.peak_half_life), 0 elsewhere.

    >>> p = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), peak_half_life=1.0)
    >>> peak_gate(torch.tensor([0.0, 4.0, 5.0, 5.0, 2.0, 3.0, 1.0]), p).tolist()
    [0.0, 4.0, 5.0, 0.0, 0.0, 3.0, 0.0]
    """
    return torch.where(score > recent_peaks(score, params), score, torch.zeros_like(score))


def range_breaks(x: torch.Tensor, params: ScoreParams) -> torch.Tensor:
    """Readings of ``x[T, F]`` that break the stream's range so far (ScoreParams.range_tolerance).

    >>> p = ScoreParams((0.0,), (1.0,), (1.0,), adapt=1.0, peak_half_life=1.0, range_tolerance=0.1)
    >>> range_breaks(torch.tensor([[0.0], [0.0], [2.0], [2.1], [3.0], [-0.1], [-1.0]]), p).tolist()
    [False, False, False, False, True, False, True]
    """
    assert params.range_tolerance is not None
    low = torch.cummin(x, dim=0).values
    high = torch.cummax(x, dim=0).values
    out = torch.zeros(len(x), dtype=torch.bool)
    if len(x) > 1:
        lo, hi = low[:-1], high[:-1]  # the range before each reading
        margin = torch.tensor(params.range_tolerance, dtype=x.dtype) * (hi - lo)
        outside = ((x[1:] > hi + margin) | (x[1:] < lo - margin)) & (hi > lo)
        out[1:] = outside.any(dim=1)
    out[: params.settled] = False
    return out


def creeping_breaks(x: torch.Tensor, params: ScoreParams) -> torch.Tensor:
    """Readings of ``x[T, F]`` that carry the stream's range further than the tolerance beyond the range
    it held lately (ScoreParams.range_creep), at most one every ``range_creep`` readings.

    >>> p = ScoreParams((0.0,), (1.0,), (1.0,), adapt=1.0, peak_half_life=1.0, range_tolerance=0.1,
    ...                 range_creep=2)
    >>> x = torch.tensor([[0.0], [1.0], [0.0], [1.0], [1.1], [1.2], [1.3], [1.4], [1.5], [1.6]])
    >>> creeping_breaks(x, p).nonzero().flatten().tolist(), range_breaks(x, p).any().item()
    ([5, 8], False)
    """
    assert params.range_tolerance is not None and params.range_creep is not None
    lag = np.float32(params.range_creep)
    # float32 step by step, in the step model's order of operations, so that the two agree bit for bit.
    # The range held lately is kept as its distance inside the range (``gap``), which a float32 follower
    # of readings far from zero could not resolve.
    v = x.numpy().astype(np.float32)
    tol, follow = np.float32(params.range_tolerance), np.float32(1.0 - 1.0 / params.range_creep)
    out = np.zeros(len(v), dtype=bool)
    if len(v) == 0:
        return torch.from_numpy(out)
    low, high = v[0].copy(), v[0].copy()
    gap_low, gap_high = np.zeros_like(low), np.zeros_like(high)
    wait = np.float32(0.0)  # readings until the check may fire again
    for t in range(1, len(v)):
        lately_low, lately_high = low + gap_low, high - gap_high
        margin = tol * (lately_high - lately_low)
        below = (v[t] < low) & (v[t] < lately_low - margin)
        above = (v[t] > high) & (v[t] > lately_high + margin)
        moved = bool(((below | above) & (lately_high > lately_low)).any())
        out[t] = moved and t >= params.settled and wait <= 0
        wait = lag if out[t] else max(wait - np.float32(1.0), np.float32(0.0))
        new_low, new_high = np.minimum(low, v[t]), np.maximum(high, v[t])
        # until the stream settles the range held lately is its range: no start-up lag to catch up on
        keep = follow if t >= params.settled else np.float32(0.0)
        gap_low = (gap_low + (low - new_low)) * keep
        gap_high = (gap_high + (new_high - high)) * keep
        low, high = new_low, new_high
    return torch.from_numpy(out)


def season_scores(z: torch.Tensor, params: ScoreParams) -> tuple[torch.Tensor, torch.Tensor]:
    """The season check (ScoreParams.season) of normalised readings ``z[T, F]``: its adaptive score at
    each block's end (0 elsewhere), before the gate, and that score held until the next block's end.

    A window is compared with the windows of the kept blocks that end before it starts, once the stream
    has kept two windows' worth of blocks.
    """
    b, m, ring_size = params.season_block, SEASON_POINTS, params.season_ring
    starts = torch.arange(ring_size - 2 * m + 1)
    past = starts[:, None] + torch.arange(m)[None, :]  # [K, m] the past windows' blocks
    ring = torch.zeros((z.shape[1], ring_size))
    acc = torch.zeros(z.shape[1])
    phase = blocks = 0
    ends, distances = [], []  # the readings that end a scored block, and the nearest window's distance
    for t in range(len(z)):
        acc = acc + z[t]
        phase += 1
        if phase == b:
            ring = torch.cat([ring[:, 1:], (acc / float(b))[:, None]], dim=1)
            acc, phase, blocks = torch.zeros_like(acc), 0, min(blocks + 1, ring_size)
            if blocks >= 2 * m:
                gaps = ((ring[:, past] - ring[:, None, ring_size - m :]) ** 2).mean(dim=(0, 2)).sqrt()
                ends.append(t)
                distances.append(gaps[starts >= ring_size - blocks].min())
    scores, held = torch.zeros(len(z)), torch.zeros(len(z))
    if ends:
        at_end = adaptive_score(torch.stack(distances), params, first=0)
        scores[ends] = at_end
        # each reading holds the score of the last block end at or before it
        last = torch.full((len(z),), -1, dtype=torch.long)
        last[ends] = torch.arange(len(ends))
        last = torch.cummax(last, dim=0).values
        held = torch.where(last >= 0, at_end[last.clamp(min=0)], held)
    return scores, held


def baseline_offsets(z: torch.Tensor, baseline: int) -> torch.Tensor:
    """Per-reading offsets of ``z[T, F]``: the running mean of its first ``baseline`` rows (0 if off).

    >>> baseline_offsets(torch.tensor([[1.0], [3.0], [8.0], [9.0]]), 2).flatten().tolist()
    [1.0, 2.0, 2.0, 2.0]
    """
    if baseline <= 0:
        return torch.zeros_like(z)
    head = z[:baseline]
    running = torch.cumsum(head, dim=0) / torch.arange(1, len(head) + 1, dtype=z.dtype).unsqueeze(1)
    return torch.cat([running, running[-1:].expand(len(z) - len(head), -1)])


@dataclass(frozen=True)
class StreamOutputs:
    score: torch.Tensor  # [T]
    contrib: torch.Tensor  # [T, F]
    congestion: torch.Tensor  # [T, Q] the load channel's quantiles ``horizon`` steps ahead, raw units
    fault: torch.Tensor  # [T] the probability of a labelled fault within the fault horizon ([T, 0]: no head)
    hold: torch.Tensor  # [T] the score before the peak gate (the score itself without one)
    # [T] each score before its own peak gate: the forecast's, then the season check's (if on)
    ungated: tuple[torch.Tensor, ...] = ()


def stream_scores(
    model: Forecaster, x: torch.Tensor, params: ScoreParams, ts: npt.NDArray[np.float64] | None = None
) -> StreamOutputs:
    """Score, channel shares and congestion forecast for a raw series ``x[T, F]``, as the daemon sees it.

    The reference the exported ONNX step model must reproduce: readings are normalised and offset by
    the stream's baseline; the error of reading t is measured against the prediction made at t - 1,
    scaled by the validation residual spread, and smoothed with an exponential moving average; readings
    before ``params.first_scored`` score 0. ``ts`` is needed when the model has clock inputs.
    """
    mean, std = torch.tensor(params.mean), torch.tensor(params.std)
    z_raw = (x - mean) / std
    offsets = baseline_offsets(z_raw, params.baseline)
    z = z_raw - offsets
    times = np.zeros(len(x)) if ts is None else ts
    with torch.no_grad():
        pred, ahead, fault, _ = model(model_inputs(model.shape, z, times).unsqueeze(0))
    first = params.first_scored
    raw = torch.zeros_like(z)
    raw[1:] = (z[1:] - pred[0, :-1]) / torch.tensor(params.resid_std)
    err = torch.zeros_like(z)
    err[first:] = raw[first:]
    sq = err * err
    inst = torch.sqrt(sq.mean(dim=1))
    contrib = torch.zeros_like(sq)
    score = torch.zeros_like(inst)
    level = torch.zeros(())
    scale = torch.ones(())
    if params.scale_floor is not None and params.baseline > 0:
        start, stop = params.scale_window
        spread = (raw[start:stop] ** 2).mean(dim=1).sum() / max(stop - start, 1)
        scale = torch.clamp(torch.sqrt(spread), min=params.scale_floor)
    chan_level = torch.zeros(sq.shape[1])
    for t in range(first, len(inst)):
        level = params.smoothing * inst[t] + (1 - params.smoothing) * level
        score[t] = level / scale
        chan_level = params.smoothing * sq[t] + (1 - params.smoothing) * chan_level
        contrib[t] = chan_level / (chan_level.sum() + 1e-12)
    if params.adapt is not None:
        score = adaptive_score(score, params)
    hold = score
    ungated = [score]
    if params.peak_half_life is not None:
        score = peak_gate(score, params)
    if params.season is not None:
        season, season_held = season_scores(z, params)
        ungated.append(season)
        score = torch.maximum(score, peak_gate(season, params))
        hold = torch.maximum(hold, season_held)
    if params.range_tolerance is not None:
        breaks = range_breaks(x, params)
        if params.range_creep is not None:
            breaks = breaks | creeping_breaks(x, params)
        score = torch.where(breaks, torch.maximum(score, torch.tensor(params.adapt_cap)), score)
    load = model.shape.load
    congestion = (ahead[0] + offsets[:, load : load + 1]) * std[load] + mean[load]
    return StreamOutputs(score, contrib, congestion, torch.sigmoid(fault[0]), hold, tuple(ungated))
