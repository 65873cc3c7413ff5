"""The step graph's score stages after the smoothed error: each stream's own scale, the adaptive score,
the peak gate and the range check, each the one-reading twin of its train.score reference."""

from __future__ import annotations

import numpy as np
import onnx

from train.onnx_graph import GraphBuilder
from train.score import ScoreParams
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
    g: GraphBuilder,
    layout: StateLayout,
    steps: str,
    first: str,
    settled: str,
    score: str,
    params: ScoreParams,
) -> tuple[str, list[str]]:
    """The adaptive score (see train.score.adaptive_score) of ``score[B, 1]`` and the new statistics,
    which only scored readings (``steps >= first``) move; it is 0 until ``settled`` is 1."""
    assert params.adapt is not None
    mean = g.columns("state", layout.adapt_at, layout.adapt_at + 1)
    var = g.columns("state", layout.adapt_at + 1, layout.adapt_at + 2)
    rate = g.const([params.adapt])
    d = g.op("Sub", score, mean)
    std = g.op("Max", g.op("Sqrt", var), g.const([params.adapt_floor]))
    z = g.op("Mul", g.op("Min", g.op("Relu", g.op("Div", d, std)), g.const([params.adapt_cap])), settled)
    scored = g.op("GreaterOrEqual", steps, first)
    moved_mean = g.op("Add", mean, g.op("Mul", rate, d))
    moved_var = g.op(
        "Mul", g.const([1.0 - params.adapt]), g.op("Add", var, g.op("Mul", rate, g.op("Mul", d, d)))
    )
    return z, [g.op("Where", scored, moved_mean, mean), g.op("Where", scored, moved_var, var)]


def peak_gate(g: GraphBuilder, layout: StateLayout, score: str, params: ScoreParams) -> tuple[str, str]:
    """The peak gate (see train.score.peak_gate) of ``score[B, 1]`` and the new recent peak."""
    peak = g.columns("state", layout.peak_at, layout.peak_at + 1)
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
    return flag, [new_low, new_high]
