"""Fits a forecaster with truncated back-propagation through time and early stopping."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from daemon.errors import DataError
from train.model import Forecaster, ModelShape


@dataclass(frozen=True)
class FitConfig:
    hidden: int = 32
    layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.1
    window: int = 48  # truncation length of back-propagation through time
    segments: int = 16  # contiguous slices of the series trained side by side
    epochs: int = 60
    patience: int = 10
    lr: float = 3e-3
    lr_decay: float = 0.97  # per epoch
    weight_decay: float = 1e-4
    clip: float = 1.0
    seed: int = 7
    congestion_weight: float = 1.0  # of the congestion head's quantile loss beside the forecast's MSE
    fault_weight: float = 1.0  # of the fault head's cross-entropy

    def __post_init__(self) -> None:
        for name in ("hidden", "window", "segments", "epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        # Deeper stacks fit no better on a few hundred readings a stream, and cost each step of the daemon.
        if not 1 <= self.layers <= 3:
            raise ValueError(f"layers={self.layers} must be 1, 2 or 3")
        if not (math.isfinite(self.lr) and self.lr > 0.0):
            raise ValueError(f"lr={self.lr} must be a number > 0")
        if self.cell not in ("lstm", "gru", "rnn"):
            raise ValueError(f"cell={self.cell!r} must be one of lstm, gru, rnn")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1)")


@dataclass(frozen=True)
class Heads:
    """What the model has beside the next-step forecast: clock inputs, a congestion head."""

    clock: bool = False
    quantiles: tuple[float, ...] = ()
    load: int = 0
    fault: bool = False


@dataclass
class FitResult:
    model: Forecaster
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def _stack(parts: list[npt.NDArray[np.float32]], count: int, window: int) -> torch.Tensor:
    """Contiguous slices of every part, all one length, stacked to ``[S, L, F]``.

    The length aims at ``count`` slices over all parts together, but is never longer than the
    shortest part nor shorter than one window; each part contributes as many whole slices as fit.
    """
    total = sum(len(p) for p in parts)
    length = max(window + 1, min(*(len(p) for p in parts), total // max(count, 1)))
    slices = [p[i : i + length] for p in parts for i in range(0, len(p) - length + 1, length)]
    if not slices:
        longest = max(len(p) for p in parts)
        raise DataError(
            f"no fitted part has the {length} readings one training slice needs (the longest has "
            f"{longest}): lower --window (now {window}) below it, or fit on more readings"
        )
    return torch.from_numpy(np.stack(slices))


def pinball(
    ahead: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, levels: torch.Tensor
) -> torch.Tensor:
    """Mean quantile (pinball) loss of ``ahead[..., Q]`` over the rows where ``mask`` is 1.

    >>> one = torch.tensor([1.0])
    >>> round(float(pinball(torch.tensor([[0.0]]), 2 * one, one, torch.tensor([0.9]))), 6)  # under by 2
    1.8
    """
    err = target.unsqueeze(-1) - ahead
    loss = torch.maximum(levels * err, (levels - 1) * err).mean(dim=-1)
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def _epoch(
    model: Forecaster,
    data: torch.Tensor,
    config: FitConfig,
    optim: torch.optim.Optimizer | None,
) -> float:
    """One pass over ``data[S, T, C]`` in windows, carrying (detached) state from window to window.

    Columns: the model's inputs, then per extra head its target and the target's mask (congestion
    first, then fault).
    """
    shape = model.shape
    levels = torch.tensor(shape.quantiles)
    state: tuple[torch.Tensor, ...] | None = None
    total, count = 0.0, 0
    for start in range(0, data.shape[1] - 1, config.window):
        chunk = data[:, start : start + config.window + 1]
        if chunk.shape[1] < 2:
            break
        pred, ahead, fault, state = model(chunk[:, :-1, : shape.inputs], state)
        sq_sum = nn.functional.mse_loss(pred, chunk[:, 1:, : shape.features], reduction="sum")
        loss = sq_sum / pred.numel()
        extra = torch.zeros(())
        col = shape.inputs
        if shape.quantiles:
            target, mask = chunk[:, :-1, col], chunk[:, :-1, col + 1]
            extra = extra + config.congestion_weight * pinball(ahead, target, mask, levels)
            col += 2
        if shape.fault:
            target, mask = chunk[:, :-1, col], chunk[:, :-1, col + 1]
            bce = nn.functional.binary_cross_entropy_with_logits(fault, target, reduction="none")
            extra = extra + config.fault_weight * (bce * mask).sum() / mask.sum().clamp(min=1.0)
        loss = loss + extra
        if optim is not None:
            optim.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optim.step()
        state = tuple(s.detach() for s in state)
        total += float(sq_sum.detach()) + float(extra.detach()) * pred.numel()
        count += pred.numel()
    return total / max(count, 1)


Parts = npt.NDArray[np.float32] | list[npt.NDArray[np.float32]]


def fit(
    train_z: Parts, val_z: Parts, config: FitConfig, progress: bool = True, heads: Heads | None = None
) -> FitResult:
    """Trains on normalised series ``[T, F]`` (one, or several parts); keeps the best validation epoch.

    With ``heads``, parts carry extra columns after the readings (see ``_epoch``). Validation parts
    are each run from a cold state, as a stream starts in the daemon.
    """
    train_parts = train_z if isinstance(train_z, list) else [train_z]
    val_parts = val_z if isinstance(val_z, list) else [val_z]
    seed_everything(config.seed)
    heads = heads or Heads()
    extra = 2 * (heads.clock + bool(heads.quantiles) + heads.fault)
    features = train_parts[0].shape[1] - extra
    shape = ModelShape(
        features, config.hidden, config.layers, config.cell, config.dropout,  # type: ignore[arg-type]
        heads.clock, heads.quantiles, heads.load, heads.fault,
    )  # fmt: skip
    model = Forecaster(shape)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=config.lr_decay)
    train = _stack(train_parts, config.segments, config.window)
    vals = [torch.from_numpy(v).unsqueeze(0) for v in val_parts]
    val_weights = [v.shape[1] - 1 for v in vals]
    result = FitResult(model=model)
    best, best_state, waited = float("inf"), copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(config.epochs), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        train_loss = _epoch(model, train, config, optim)
        model.eval()
        with torch.no_grad():
            losses = [_epoch(model, v, config, None) for v in vals]
            val_loss = float(np.average(losses, weights=val_weights))
        schedule.step()
        result.history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": float(schedule.get_last_lr()[0]),
            }
        )
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
        if val_loss < best - 1e-6:
            best, best_state, waited, result.best_epoch = (
                val_loss,
                copy.deepcopy(model.state_dict()),
                0,
                epoch,
            )
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return result
