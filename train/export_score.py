"""The step graph's score stages after the smoothed error: each stream's own scale, the adaptive score,
the peak gate, the range check and the season check, each the one-reading twin of its train.score
reference."""

from __future__ import annotations

import numpy as np
import onnx

from train.onnx_graph import GraphBuilder
from train.score import SEASON_POINTS, ScoreParams
from train.state_layout import StateLayout


def stream_scale(
    g: GraphBuilder, layout: StateLayout, steps: str, n_base: str, raw_err: str, features: int, floor: float
) -> tuple[str, str]:
    """The stream's error spread, summed over the second half of its baseline, and the score's divisor."""
    spread = g.columns("state", layout.steps + 1, layout.steps + 2)
    start = g.op("Floor", g.op("Mul", g.op("Add", n_base, g.const([1.0])), g.const([0.5])))
    in_window = g.op(
        "Cast",
        g.op("And", g.op("GreaterOrEqual", steps, start), g.op("Less", steps, n_base)),
        to=onnx.TensorProto.FLOAT,
    )
    mean_sq = g.op(
        "Mul",
        g.op("ReduceSum", g.op("Mul", raw_err, raw_err), g.const([1], "ax", np.int64), keepdims=1),
        g.const([1.0 / features]),
    )
    new_spread = g.op("Add", spread, g.op("Mul", in_window, mean_sq))
    count = g.op("Max", g.op("Sub", n_base, start), g.const([1.0]))
    scale = g.op("Max", g.op("Sqrt", g.op("Div", new_spread, count)), g.const([floor]))
    # Without a baseline there is nothing to measure: the score is not scaled.
    has_base = g.op("Greater", n_base, g.const([0.0]))
    return new_spread, g.op("Where", has_base, scale, g.const([1.0]))


def adaptive(
    g: GraphBuilder, at: int, score: str, stats: tuple[str, str, str], params: ScoreParams
) -> tuple[str, list[str]]:
    """The adaptive score (see train.score.adaptive_score) of ``score[B, 1]``, whose moving mean and
    variance are the state columns ``at`` and ``at + 1``, and the new statistics. ``stats`` says which
    rows they take (``scored``), how many they took before (``taken``, ``[B, 1]``, counted at least up
    to the warm-up) and whether the score is past its warm-up (``warmed_up``, 0 or 1; the score is 0
    before)."""
    assert params.adapt is not None
    scored, taken, warmed_up = stats
    mean = g.columns("state", at, at + 1)
    var = g.columns("state", at + 1, at + 2)
    rate = g.op(
        "Max", g.const([params.adapt]), g.op("Div", g.const([1.0]), g.op("Add", taken, g.const([1.0])))
    )
    d = g.op("Sub", score, mean)
    std = g.op("Max", g.op("Sqrt", var), g.const([params.adapt_floor]))
    z = g.op("Mul", g.op("Min", g.op("Relu", g.op("Div", d, std)), g.const([params.adapt_cap])), warmed_up)
    moved_mean = g.op("Add", mean, g.op("Mul", rate, d))
    moved_var = g.op(
        "Mul", g.op("Sub", g.const([1.0]), rate), g.op("Add", var, g.op("Mul", rate, g.op("Mul", d, d)))
    )
    return z, [g.op("Where", scored, moved_mean, mean), g.op("Where", scored, moved_var, var)]


def peak_gate(g: GraphBuilder, at: int, score: str, params: ScoreParams) -> tuple[str, str]:
    """The peak gate (see train.score.peak_gate) of ``score[B, 1]``, whose recent peak is the state
    column ``at``, and the new recent peak."""
    peak = g.columns("state", at, at + 1)
    gated = g.op("Where", g.op("Greater", score, peak), score, g.const([0.0]))
    return gated, g.op("Max", score, g.op("Mul", peak, g.const([params.peak_decay])))


def range_breaks(
    g: GraphBuilder, layout: StateLayout, steps: str, settled: str, params: ScoreParams
) -> tuple[str, list[str]]:
    """Whether ``x[B, F]`` breaks the stream's range (see train.score.range_breaks), as ``[B, 1]`` 0 or 1,
    and the new range."""
    assert params.range_tolerance is not None
    f = layout.features
    low = g.columns("state", layout.range_at, layout.range_at + f)
    high = g.columns("state", layout.range_at + f, layout.range_at + 2 * f)
    margin = g.op("Mul", g.const([params.range_tolerance]), g.op("Sub", high, low))
    outside = g.op(
        "Or", g.op("Greater", "x", g.op("Add", high, margin)), g.op("Less", "x", g.op("Sub", low, margin))
    )
    breaks = g.op("Cast", g.op("And", outside, g.op("Greater", high, low)), to=onnx.TensorProto.FLOAT)
    flag = g.op("Mul", g.op("ReduceMax", breaks, axes=[1], keepdims=1), settled)
    # A reset stream (steps 0) starts its range at this reading.
    fresh = g.op("Less", steps, g.const([1.0]))
    new_low = g.op("Where", fresh, "x", g.op("Min", low, "x"))
    new_high = g.op("Where", fresh, "x", g.op("Max", high, "x"))
    if params.range_creep is None:
        return flag, [new_low, new_high]
    creep, creep_part = creeping_breaks(g, layout, (low, high), (new_low, new_high), settled, params)
    return g.op("Max", flag, creep), [new_low, new_high, *creep_part]


def creeping_breaks(
    g: GraphBuilder,
    layout: StateLayout,
    seen: tuple[str, str],
    new_seen: tuple[str, str],
    settled: str,
    params: ScoreParams,
) -> tuple[str, list[str]]:
    """Whether ``x[B, F]`` carries the stream's range (``seen``: its lowest and highest readings before
    this one; ``new_seen``: with it) beyond where it stood lately (see train.score.creeping_breaks), as
    ``[B, 1]`` 0 or 1, and the new creep state. A zeroed (reset) state is a stream ready to fire whose
    range held lately is its range."""
    assert params.range_tolerance is not None and params.range_creep is not None
    (low, high), (new_low, new_high) = seen, new_seen
    gap_low, gap_high, wait = (
        g.columns("state", *layout.span(name)) for name in ("creep_low_gap", "creep_high_gap", "creep_wait")
    )
    lately_low, lately_high = g.op("Add", low, gap_low), g.op("Sub", high, gap_high)
    margin = g.op("Mul", g.const([params.range_tolerance]), g.op("Sub", lately_high, lately_low))
    below = g.op("And", g.op("Less", "x", low), g.op("Less", "x", g.op("Sub", lately_low, margin)))
    above = g.op("And", g.op("Greater", "x", high), g.op("Greater", "x", g.op("Add", lately_high, margin)))
    moved = g.op(
        "Cast",
        g.op("And", g.op("Or", below, above), g.op("Greater", lately_high, lately_low)),
        to=onnx.TensorProto.FLOAT,
    )
    ready = g.op("Cast", g.op("LessOrEqual", wait, g.const([0.0])), to=onnx.TensorProto.FLOAT)
    creep = g.op("Mul", g.op("Mul", g.op("ReduceMax", moved, axes=[1], keepdims=1), settled), ready)
    lag = g.const([float(params.range_creep)])
    counted = g.op("Max", g.op("Sub", wait, g.const([1.0])), g.const([0.0]))
    new_wait = g.op("Where", g.op("Greater", creep, g.const([0.0])), lag, counted)
    # A stream not yet settled (a reset one too) holds its range itself: no gap to keep.
    keep = g.op("Mul", settled, g.const([1.0 - 1.0 / params.range_creep]))
    new_gap_low = g.op("Mul", g.op("Add", gap_low, g.op("Sub", low, new_low)), keep)
    new_gap_high = g.op("Mul", g.op("Add", gap_high, g.op("Sub", new_high, high)), keep)
    return creep, [new_gap_low, new_gap_high, new_wait]


def season_check(
    g: GraphBuilder, layout: StateLayout, z: str, params: ScoreParams
) -> tuple[str, str, list[str]]:
    """The season check (see train.score.season_scores) of normalised readings ``z[B, F]``: its score
    ``[B, 1]`` after its own peak gate (0 off a block's end), its score before the gate held until the
    next block's end, and the new season state."""
    assert params.adapt is not None
    f, m, size = layout.features, SEASON_POINTS, params.season_ring
    phase, acc, blocks, flat_ring, seen, held = (
        g.columns("state", *layout.span(f"season_{name}"))
        for name in ("phase", "sum", "blocks", "ring", "seen", "held")
    )
    ring = g.op("Reshape", flat_ring, g.const([-1, f, size], "shape", np.int64))
    moved_phase = g.op("Add", phase, g.const([1.0]))
    moved_acc = g.op("Add", acc, z)
    end = g.op("GreaterOrEqual", moved_phase, g.const([params.season_block - 0.5]))
    block = g.op("Div", moved_acc, g.const([float(params.season_block)]))
    ax2 = g.const([2], "ax", np.int64)
    shifted = g.op(
        "Concat",
        g.op("Slice", ring, g.const([1], "s", np.int64), g.const([size], "e", np.int64), ax2),
        g.op("Unsqueeze", block, ax2),
        axis=2,
    )
    new_ring = g.op("Where", g.op("Unsqueeze", end, ax2), shifted, ring)
    new_blocks = g.op(
        "Where", end, g.op("Min", g.op("Add", blocks, g.const([1.0])), g.const([float(size)])), blocks
    )
    # Only the rows that end a block need the distances, and those cost a gather of every past window:
    # they are computed for those rows alone and scattered back (the other rows' d is never used).
    ending = g.op(
        "Reshape",
        g.op("NonZero", g.op("Reshape", end, g.const([-1], "shape", np.int64))),
        g.const([-1], "shape", np.int64),
    )
    ring_e = g.op("Gather", new_ring, ending, axis=0)
    starts = np.arange(size - 2 * m + 1)
    past = g.op("Gather", ring_e, g.const(starts[:, None] + np.arange(m)[None, :], "past", np.int64), axis=2)
    current = g.op(
        "Unsqueeze",
        g.op("Slice", ring_e, g.const([size - m], "s", np.int64), g.const([size], "e", np.int64), ax2),
        ax2,
    )
    diff_sq = g.op("Mul", *(2 * [g.op("Sub", past, current)]))
    gaps = g.op("Sqrt", g.op("ReduceMean", diff_sq, axes=[1, 3], keepdims=0))
    kept = g.op(
        "GreaterOrEqual",
        g.const(starts[None, :].astype(np.float32)),
        g.op("Sub", g.const([float(size)]), g.op("Gather", new_blocks, ending, axis=0)),
    )
    far = g.const([np.float32(3.0e38)])
    d_e = g.op("ReduceMin", g.op("Where", kept, gaps, far), axes=[1], keepdims=1)
    d = g.op(
        "ScatterND",
        g.op("Add", g.op("Mul", blocks, g.const([0.0])), far),
        g.op("Unsqueeze", ending, g.const([1], "ax", np.int64)),
        d_e,
    )
    scored = g.op("And", end, g.op("GreaterOrEqual", new_blocks, g.const([float(2 * m)])))
    settled = g.op("And", scored, g.op("GreaterOrEqual", seen, g.const([float(params.adapt_warmup)])))
    stats_at = layout.span("season_mean")[0]  # the distances' moving mean, then their variance
    score, stats = adaptive(
        g, stats_at, d, (scored, seen, g.op("Cast", settled, to=onnx.TensorProto.FLOAT)), params
    )
    moved_seen = g.op("Min", g.op("Add", seen, g.const([1.0])), g.const([float(params.adapt_warmup)]))
    new_state = [
        g.op("Where", end, g.const([0.0]), moved_phase),
        g.op("Where", end, g.const(np.zeros(f)), moved_acc),
        new_blocks,
        g.op("Reshape", new_ring, g.const([-1, f * size], "shape", np.int64)),
        *stats,
        g.op("Where", scored, moved_seen, seen),
    ]
    new_held = g.op("Where", settled, score, held)
    gated, new_peak = peak_gate(g, layout.span("season_peak")[0], score, params)
    return gated, new_held, [*new_state, new_peak, new_held]
