"""The recurrent forecaster (LSTM by default; GRU and plain RNN for comparison) and its inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
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
    clock: bool = False  # two time-of-day inputs (sine, cosine) beside the readings
    quantiles: tuple[float, ...] = ()  # the congestion head's quantile levels; empty: no head
    load: int = 0  # the channel the congestion head forecasts
    fault: bool = False  # a fault head: the probability of a labelled fault within a horizon

    @property
    def state_tensors(self) -> int:
        return 2 if self.cell == "lstm" else 1

    @property
    def inputs(self) -> int:
        return self.features + (2 if self.clock else 0)


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
            input_size=shape.inputs,
            hidden_size=shape.hidden,
            num_layers=shape.layers,
            batch_first=True,
            dropout=shape.dropout if shape.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(shape.dropout)
        self.head = nn.Linear(shape.hidden, shape.features)
        self.congestion = nn.Linear(shape.hidden, len(shape.quantiles)) if shape.quantiles else None
        self.fault = nn.Linear(shape.hidden, 1) if shape.fault else None
        self._init_weights()

    def _init_weights(self) -> None:
        init_recurrent(self.core, self.shape.cell, self.shape.hidden)
        for head in (self.head, self.congestion, self.fault):
            if head is not None:
                nn.init.xavier_uniform_(head.weight)
                nn.init.zeros_(head.bias)

    def forward(self, inputs: torch.Tensor, state: tuple[torch.Tensor, ...] | None = None) -> Outputs:
        """``inputs[B, T, I]`` (normalised readings, then clock inputs) -> what each head says, and the
        final state: see ``Outputs``."""
        if self.shape.cell == "lstm":
            out, (h, c) = self.core(inputs, None if state is None else (state[0], state[1]))
            new_state: tuple[torch.Tensor, ...] = (h, c)
        else:
            out, h = self.core(inputs, None if state is None else state[0])
            new_state = (h,)
        out = self.drop(out)
        z = inputs[..., : self.shape.features]
        load = z[..., self.shape.load : self.shape.load + 1]
        ahead = load + self.congestion(out) if self.congestion is not None else load[..., :0]
        fault = self.fault(out)[..., 0] if self.fault is not None else out[..., :0]
        return Outputs(z + self.head(out), ahead, fault, new_state)


class Outputs(NamedTuple):
    pred: torch.Tensor  # [B, T, F] the forecast of z[:, t + 1], every channel
    ahead: torch.Tensor  # [B, T, Q] the load's quantiles ``horizon`` ahead, normalised (Q = 0: no head)
    fault: torch.Tensor  # [B, T] the logit of a fault within the fault horizon ([B, T, 0]: no head)
    state: tuple[torch.Tensor, ...]


DAY_S = 86400.0


def clock_inputs(ts: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Time of day as ``[T, 2]`` (sine, cosine), in float32 arithmetic exactly as the step graph does it.

    >>> clock_inputs(np.array([0.0, 21600.0])).round(6).tolist()
    [[0.0, 1.0], [1.0, -0.0]]
    """
    phase = np.fmod(ts, DAY_S).astype(np.float32) * np.float32(2 * np.pi / DAY_S)
    return np.stack([np.sin(phase), np.cos(phase)], axis=1)


def model_inputs(shape: ModelShape, z: torch.Tensor, ts: npt.NDArray[np.float64]) -> torch.Tensor:
    """The core's inputs for normalised readings ``z[T, F]`` taken at ``ts[T]``."""
    return torch.cat([z, torch.from_numpy(clock_inputs(ts))], dim=1) if shape.clock else z
