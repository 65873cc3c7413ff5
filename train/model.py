"""The recurrent forecaster (LSTM by default; GRU and plain RNN for comparison) and its streaming score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Cell = Literal["lstm", "gru", "rnn"]
CORES: dict[str, Callable[..., nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass(frozen=True)
class ModelShape:
    features: int
    hidden: int = 32
    layers: int = 1
    cell: Cell = "lstm"
    dropout: float = 0.0

    @property
    def state_tensors(self) -> int:
        return 2 if self.cell == "lstm" else 1


def init_recurrent(core: nn.RNNBase, cell: str, hidden: int) -> None:
    """Xavier input maps and orthogonal recurrent maps keep early gradients from vanishing or exploding."""
    for name, param in core.named_parameters():
        if name.startswith("weight_ih"):
            nn.init.xavier_uniform_(param)
        elif name.startswith("weight_hh"):
            nn.init.orthogonal_(param)
        else:
            nn.init.zeros_(param)
            if cell == "lstm" and name.startswith("bias_ih"):
                # forget-gate bias 1: remember by default until the data says otherwise
                param.data[hidden : 2 * hidden] = 1.0


class Forecaster(nn.Module):
    """Predicts each channel's next normalised value as the current one plus a learned step."""

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        self.core: nn.RNNBase = CORES[shape.cell](
            input_size=shape.features,
            hidden_size=shape.hidden,
            num_layers=shape.layers,
            batch_first=True,
            dropout=shape.dropout if shape.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(shape.dropout)
        self.head = nn.Linear(shape.hidden, shape.features)
        self._init_weights()

    def _init_weights(self) -> None:
        init_recurrent(self.core, self.shape.cell, self.shape.hidden)
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, z: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``z[B, T, F]`` normalised readings -> predictions of ``z[:, t + 1]`` and the final state."""
        if self.shape.cell == "lstm":
            out, (h, c) = self.core(z, None if state is None else (state[0], state[1]))
            new_state: tuple[torch.Tensor, ...] = (h, c)
        else:
            out, h = self.core(z, None if state is None else state[0])
            new_state = (h,)
        return z + self.head(self.drop(out)), new_state


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

    @property
    def first_scored(self) -> int:
        """Index of a stream's first reading that gets a non-zero score."""
        return max(self.baseline, 1)


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


def stream_scores(
    model: Forecaster, x: torch.Tensor, params: ScoreParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score and channel shares for a raw series ``x[T, F]``, step by step as the daemon sees it.

    The reference the exported ONNX step model must reproduce: readings are normalised and offset by
    the stream's baseline; the error of reading t is measured against the prediction made at t - 1,
    scaled by the validation residual spread, and smoothed with an exponential moving average; readings
    before ``params.first_scored`` score 0.
    """
    z = (x - torch.tensor(params.mean)) / torch.tensor(params.std)
    z = (z - baseline_offsets(z, params.baseline)).unsqueeze(0)
    with torch.no_grad():
        pred, _ = model(z)
    first = params.first_scored
    err = torch.zeros_like(z[0])
    err[first:] = (z[0, first:] - pred[0, first - 1 : -1]) / torch.tensor(params.resid_std)
    sq = err * err
    inst = torch.sqrt(sq.mean(dim=1))
    contrib = sq / (sq.sum(dim=1, keepdim=True) + 1e-12)
    score = torch.zeros_like(inst)
    level = torch.zeros(())
    for t in range(first, len(inst)):
        level = params.smoothing * inst[t] + (1 - params.smoothing) * level
        score[t] = level
    return score, contrib
