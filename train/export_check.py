"""The export's own check: the ONNX step model stepped a reading at a time, against PyTorch's full series."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch

from daemon.model_file import BASELINE_INPUT, METADATA_KEY
from train.model import Forecaster
from train.score import ScoreParams, recent_peaks, stream_scores


@dataclass(frozen=True)
class Stepped:
    """What the step model produced for each reading of one series."""

    score: npt.NDArray[np.float32]  # [T]
    contrib: npt.NDArray[np.float32]  # [T, F]
    congestion: npt.NDArray[np.float32]  # [T, Q]; Q = 0 without a congestion head
    fault: npt.NDArray[np.float32]  # [T] fault probability; empty without a fault head
    hold: npt.NDArray[np.float32]  # [T] the score before the peak gate; empty without one


def step_through(
    proto: onnx.ModelProto, x: npt.NDArray[np.float32], ts: npt.NDArray[np.float64] | None = None
) -> Stepped:
    """Runs the step model over one series ``x[T, F]`` a reading at a time, as the daemon would."""
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    width = proto.graph.input[1].type.tensor_type.shape.dim[1].dim_value
    clock = any(i.name == "ts" for i in proto.graph.input)
    times = np.zeros(len(x)) if ts is None else ts
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    fixed = {BASELINE_INPUT: np.array([meta["baseline_readings"]], dtype=np.float32)}
    names = [o.name for o in proto.graph.output]
    state = np.zeros((1, width), dtype=np.float32)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names if name != "next_state"}
    for t in range(len(x)):
        feed = {"x": x[t : t + 1], "state": state, **fixed}
        if clock:
            feed["ts"] = times[t : t + 1]
        out = dict(zip(names, session.run(names, feed), strict=True))
        state = out["next_state"]
        for name, values in rows.items():
            values.append(out[name][0])

    def stacked(name: str, shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
        """All readings' values of one output; an empty array of ``shape`` when the model lacks it."""
        values = rows.get(name)
        return np.zeros(shape, dtype=np.float32) if values is None else np.asarray(values, dtype=np.float32)

    return Stepped(
        stacked("score", (0,)),
        stacked("contrib", (0,)).reshape(x.shape),
        stacked("congestion", (len(x), 0)).reshape(len(x), -1),
        stacked("fault", (0,)),
        stacked("hold_score", (0,)),
    )


def parity(
    model: Forecaster,
    params: ScoreParams,
    proto: onnx.ModelProto,
    x: npt.NDArray[np.float32],
    ts: npt.NDArray[np.float64] | None = None,
    tie: float = 1e-4,
) -> float:
    """Max abs difference between the PyTorch full-sequence outputs and the ONNX step model's.

    The congestion forecast is compared in the load channel's normalised units, like the score. With a
    peak gate, readings whose ungated score lies within ``tie`` of the peak it is gated against may be
    kept on one side and dropped on the other by float noise alone: their gated scores are not
    compared (their ungated ``hold_score`` is). So with the season check's own gate.
    """
    ref = stream_scores(model, torch.from_numpy(x), params, ts)
    got = step_through(proto, x, ts)
    score_gap = np.abs(ref.score.numpy() - got.score)
    if params.peak_half_life is not None:
        for ungated in ref.ungated:  # the forecast's gate, and the season check's own
            score_gap[gate_ties(ungated, params, tie)] = 0.0  # their ungated scores are held below
    gaps = [score_gap.max(), np.abs(ref.contrib.numpy() - got.contrib).max()]
    if got.congestion.size:
        load_std = params.std[model.shape.load]
        gaps.append(np.abs(ref.congestion.numpy() - got.congestion).max() / load_std)
    if got.fault.size:
        gaps.append(np.abs(ref.fault.numpy() - got.fault).max())
    if got.hold.size:
        gaps.append(np.abs(ref.hold.numpy() - got.hold).max())
    return float(max(gaps))


def gate_ties(hold: torch.Tensor, params: ScoreParams, tie: float) -> npt.NDArray[np.bool_]:
    """Readings whose ungated score ``hold[T]`` lies within ``tie`` of the recent peak the gate holds it
    against (train.score.recent_peaks).

    >>> p = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), peak_half_life=1.0)
    >>> gate_ties(torch.tensor([2.0, 0.5, 1.00001, 3.0]), p, 1e-4).tolist()
    [False, False, True, False]
    """
    ties: npt.NDArray[np.bool_] = (torch.abs(hold - recent_peaks(hold, params)) <= tie).numpy()
    return ties
