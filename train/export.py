"""Exports a trained forecaster as the single-step ONNX model the daemon runs (docs/model-format.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import torch

from daemon.model_file import BASELINE_INPUT, FORMAT_VERSION, METADATA_KEY
from train.export_score import adaptive, peak_gate, range_breaks, season_check, stream_scale
from train.model import DAY_S, Forecaster, ModelShape
from train.onnx_graph import GraphBuilder
from train.score import ScoreParams
from train.state_layout import StateLayout

# steps since a stream's last reset; capped so float32 keeps counting exactly
_STEPS_CAP = 1.0e6


def _weights(model: Forecaster, kind: str, layer: int) -> npt.NDArray[np.float32]:
    return getattr(model.core, f"{kind}_l{layer}").detach().numpy().T.astype(np.float32)  # type: ignore[no-any-return]


def _cell(
    g: GraphBuilder, model: Forecaster, layer: int, x: str, h: str, c: str | None
) -> tuple[str, str | None]:
    """One recurrent layer's step in PyTorch's gate order; returns the new (h, c)."""
    hid = model.shape.hidden
    w_ih, w_hh = _weights(model, "weight_ih", layer), _weights(model, "weight_hh", layer)
    b_ih, b_hh = _weights(model, "bias_ih", layer), _weights(model, "bias_hh", layer)
    if model.shape.cell == "rnn":
        pre = g.op("Add", g.matmul_add(x, w_ih, b_ih), g.matmul_add(h, w_hh, b_hh))
        return g.op("Tanh", pre), None
    if model.shape.cell == "gru":
        gi, gh = g.matmul_add(x, w_ih, b_ih), g.matmul_add(h, w_hh, b_hh)

        def part(t: str, i: int) -> str:
            return g.columns(t, i * hid, (i + 1) * hid)

        r = g.op("Sigmoid", g.op("Add", part(gi, 0), part(gh, 0)))
        z = g.op("Sigmoid", g.op("Add", part(gi, 1), part(gh, 1)))
        n = g.op("Tanh", g.op("Add", part(gi, 2), g.op("Mul", r, part(gh, 2))))
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        return g.op("Add", n, g.op("Mul", z, g.op("Sub", h, n))), None
    assert c is not None
    gates = g.op("Add", g.matmul_add(x, w_ih, b_ih + b_hh), g.op("MatMul", h, g.const(w_hh, "w")))
    i, f, gg, o = (g.columns(gates, k * hid, (k + 1) * hid) for k in range(4))
    c_new = g.op("Add", g.op("Mul", g.op("Sigmoid", f), c), g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gg)))
    h_new = g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c_new))
    return h_new, c_new


def _clock(g: GraphBuilder) -> str:
    """Time of day from ``ts[B]`` (epoch seconds, float64) as ``[B, 2]`` (sine, cosine); see clock_inputs."""
    day = g.op("Mod", "ts", g.const(DAY_S, "day", np.float64), fmod=1)
    phase = g.op("Mul", g.op("Cast", day, to=onnx.TensorProto.FLOAT), g.const(np.float32(2 * np.pi / DAY_S)))
    column = g.op("Unsqueeze", phase, g.const([1], "ax", np.int64))
    return g.op("Concat", g.op("Sin", column), g.op("Cos", column), axis=1)


def build_step_model(model: Forecaster, params: ScoreParams, metadata: dict[str, Any]) -> onnx.ModelProto:
    """The step graph: ``x[B, F]``, ``state[B, S]`` (and ``ts[B]`` with clock inputs) -> ``score[B]``,
    ``contrib[B, F]``, ``next_state`` (and ``congestion[B, Q]``, ``fault[B]`` with those heads)."""
    shape = model.shape
    layout = StateLayout(
        shape.hidden,
        shape.layers,
        shape.state_tensors,
        shape.features,
        params.scale_floor is not None,
        params.adapt is not None,
        params.peak_half_life is not None,
        params.range_tolerance is not None,
        params.season_ring,
        params.season_block if params.season is not None else 0,
        creep=params.range_creep is not None,
    )
    g = GraphBuilder()
    # How many readings form a stream's baseline is an input (the trained value is in the metadata), so
    # that the daemon's config can set it per model.
    n_base = BASELINE_INPUT
    std = np.asarray(params.std, dtype=np.float32)
    z_raw = g.op("Mul", g.op("Sub", "x", g.const(params.mean, "mean")), g.const(1.0 / std, "inv_std"))
    base = g.columns("state", layout.base, layout.base + shape.features)
    prev_pred = g.columns("state", layout.pred, layout.pred + shape.features)
    level = g.columns("state", layout.level, layout.level + 1)
    steps = g.columns("state", layout.steps, layout.steps + 1)
    # The stream's baseline: a running mean of its first `baseline` readings, then held.
    in_base = g.op("Cast", g.op("Less", steps, n_base), to=onnx.TensorProto.FLOAT)
    base_step = g.op(
        "Div", g.op("Mul", in_base, g.op("Sub", z_raw, base)), g.op("Add", steps, g.const([1.0]))
    )
    new_base = g.op("Add", base, base_step)
    z = g.op("Sub", z_raw, new_base)
    first = g.op("Max", n_base, g.const([1.0]))

    def past(readings: int) -> str:
        """1.0 once the stream has had ``readings`` scored readings, counted from its first one (which
        the run-time baseline length sets), else 0.0."""
        start = g.op("Add", first, g.const([float(readings)]))
        return g.op("Cast", g.op("GreaterOrEqual", steps, start), to=onnx.TensorProto.FLOAT)

    scored = g.op("GreaterOrEqual", steps, first)
    warm = g.op("Cast", scored, to=onnx.TensorProto.FLOAT)
    inv_resid = g.const(1.0 / np.asarray(params.resid_std, dtype=np.float32), "inv_resid")
    raw_err = g.op("Mul", g.op("Sub", z, prev_pred), inv_resid)
    err = g.op("Mul", raw_err, warm)
    sq = g.op("Mul", err, err)
    total = g.op("ReduceSum", sq, g.const([1], "ax", np.int64), keepdims=1)
    inst = g.op("Sqrt", g.op("Mul", total, g.const([1.0 / shape.features])))
    step_gain = g.op("Mul", warm, g.const([params.smoothing]))
    keep = g.op("Sub", g.const([1.0]), step_gain)
    # Weighted sums, not level + gain * (new - level): with a gain of 1 (no smoothing) that loses a small
    # value that follows a large one to cancellation, where the reference keeps it.
    new_level = g.op("Add", g.op("Mul", step_gain, inst), g.op("Mul", keep, level))
    # Each channel's share of the score, smoothed as the score is: an alert names the channels that
    # raised it over the last readings, not the one reading it fired on.
    chan_level = g.columns("state", layout.shares_at, layout.shares_at + shape.features)
    new_chan_level = g.op("Add", g.op("Mul", step_gain, sq), g.op("Mul", keep, chan_level))
    chan_total = g.op("ReduceSum", new_chan_level, g.const([1], "ax", np.int64), keepdims=1)
    g.op("Div", new_chan_level, g.op("Add", chan_total, g.const([1e-12])), out="contrib")
    spread_part: list[str] = []
    if params.scale_floor is not None:
        new_spread, scale = stream_scale(
            g, layout, steps, n_base, raw_err, shape.features, params.scale_floor
        )
        spread_part = [new_spread]
        score = g.op("Div", new_level, scale)
    else:
        score = new_level
    adapt_part: list[str] = []
    if params.adapt is not None:  # and so with the range check, which ScoreParams lets run only with it
        taken = g.op("Max", g.op("Sub", steps, first), g.const([0.0]))
        warmed_up = past(params.adapt_warmup)
        score, adapt_part = adaptive(g, layout.adapt_at, score, (scored, taken, warmed_up), params)
    peak_part: list[str] = []
    if params.peak_half_life is not None:
        # Alerts fire on the gated score and stay up while the ungated one stays high.
        hold = score
        score, new_peak = peak_gate(g, layout.peak_at, score, params)
        peak_part = [new_peak]
    season_part: list[str] = []
    if params.season is not None:  # and so with the adaptive score and the gate
        season, held, season_part = season_check(g, layout, z, params)
        hold = g.op("Max", hold, held)
        score = g.op("Max", score, season)
    if params.peak_half_life is not None:
        g.op("Squeeze", hold, g.const([1], "ax", np.int64), out="hold_score")
    range_part: list[str] = []
    if params.range_tolerance is not None:
        flag, range_part = range_breaks(g, layout, steps, past(params.range_warmup), params)
        capped = g.op("Max", score, g.const([params.adapt_cap]))
        score = g.op("Where", g.op("Greater", flag, g.const([0.0])), capped, score)
    g.op("Squeeze", score, g.const([1], "ax", np.int64), out="score")

    size = shape.layers * shape.hidden
    hs, cs, layer_in = [], [], (g.op("Concat", z, _clock(g), axis=1) if shape.clock else z)
    for layer in range(shape.layers):
        h = g.columns("state", layer * shape.hidden, (layer + 1) * shape.hidden)
        c = (
            g.columns("state", size + layer * shape.hidden, size + (layer + 1) * shape.hidden)
            if shape.cell == "lstm"
            else None
        )
        h_new, c_new = _cell(g, model, layer, layer_in, h, c)
        hs.append(h_new)
        if c_new is not None:
            cs.append(c_new)
        layer_in = h_new
    head_w = model.head.weight.detach().numpy().T.astype(np.float32)
    pred = g.op("Add", z, g.matmul_add(layer_in, head_w, model.head.bias.detach().numpy().astype(np.float32)))
    new_steps = g.op("Min", g.op("Add", steps, g.const([1.0])), g.const([_STEPS_CAP]))
    g.op(
        "Concat",
        *hs,
        *cs,
        new_base,
        pred,
        new_level,
        new_steps,
        *spread_part,
        *adapt_part,
        *peak_part,
        *range_part,
        *season_part,
        new_chan_level,
        axis=1,
        out="next_state",
    )
    outputs: list[tuple[str, list[str | int]]] = [
        ("score", ["batch"]),
        ("contrib", ["batch", shape.features]),
        ("next_state", ["batch", layout.width]),
    ]
    if params.peak_half_life is not None:
        outputs.append(("hold_score", ["batch"]))
    if model.congestion is not None:
        # Back to raw units: forecast (normalised, offset by the stream's baseline) * std + mean.
        load = shape.load
        ahead = g.op(
            "Add",
            g.op("Add", g.columns(z, load, load + 1), g.columns(new_base, load, load + 1)),
            g.matmul_add(
                layer_in,
                model.congestion.weight.detach().numpy().T.astype(np.float32),
                model.congestion.bias.detach().numpy().astype(np.float32),
            ),
        )
        scale = g.op("Mul", ahead, g.const([params.std[load]]))
        g.op("Add", scale, g.const([params.mean[load]]), out="congestion")
        outputs.append(("congestion", ["batch", len(shape.quantiles)]))
    if model.fault is not None:
        logit = g.matmul_add(
            layer_in,
            model.fault.weight.detach().numpy().T.astype(np.float32),
            model.fault.bias.detach().numpy().astype(np.float32),
        )
        g.op("Squeeze", g.op("Sigmoid", logit), g.const([1], "ax", np.int64), out="fault")
        outputs.append(("fault", ["batch"]))

    meta = {
        **metadata,
        "format_version": FORMAT_VERSION,
        "baseline_readings": params.baseline,
        "features_count": shape.features,
        "state_width": layout.width,
        "state_layout": layout.describe(),
    }
    inputs: list[tuple[str, list[str | int]]] = [
        ("x", ["batch", shape.features]),
        ("state", ["batch", layout.width]),
        (BASELINE_INPUT, [1]),
    ]
    if shape.clock:
        inputs.append(("ts", ["batch"]))
    return g.model(
        inputs, outputs, {METADATA_KEY: json.dumps(meta, sort_keys=True)}, doubles=frozenset({"ts"})
    )


def save(proto: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(proto.SerializeToString())


def untrained_model(
    path: Path,
    channels: tuple[str, ...],
    hidden: int = 8,
    seed: int = 0,
    version: str = "1",
    congestion_limit: float | None = None,
    peak_half_life: float | None = None,
) -> Path:
    """A step model with random weights and a fixed threshold: for engine tests and benchmarks.

    With ``congestion_limit`` it has a congestion head on the first channel whose quantiles (0.5, 0.9)
    forecast the current reading and the reading plus 5: alerts that are easy to predict.
    With ``peak_half_life`` its score is peak-gated and it has a ``hold_score`` output.
    """
    torch.manual_seed(seed)
    quantiles = (0.5, 0.9) if congestion_limit is not None else ()
    model = Forecaster(ModelShape(features=len(channels), hidden=hidden, quantiles=quantiles)).eval()
    n = len(channels)
    params = ScoreParams(
        mean=(70.0,) * n, std=(5.0,) * n, resid_std=(0.2,) * n, peak_half_life=peak_half_life
    )
    meta: dict[str, Any] = {
        "name": "m",
        "version": version,
        "features": list(channels),
        "cell": "lstm",
        "hidden": hidden,
        "layers": 1,
        "thresholds": {"fault": {"threshold": 3.0}},
    }
    if model.congestion is not None:
        with torch.no_grad():
            model.congestion.weight.zero_()
            model.congestion.bias.copy_(torch.tensor([0.0, 5.0 / params.std[0]]))
        meta["congestion"] = {
            "channel": channels[0],
            "horizon_steps": 6,
            "step_s": 300.0,
            "quantiles": list(quantiles),
            "warn_quantile": 0,
            "limit": congestion_limit,
        }
    save(build_step_model(model, params, meta), path)
    return path
