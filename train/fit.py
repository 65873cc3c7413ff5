"""Fits a forecaster with truncated back-propagation through time and early stopping."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

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


def _segments(z: torch.Tensor, count: int) -> torch.Tensor:
    """``z[T, F]`` cut into ``count`` equal contiguous slices: ``[count, T // count, F]``."""
    count = max(1, min(count, len(z) // 8))
    length = len(z) // count
    return z[: count * length].reshape(count, length, z.shape[1])


def _epoch(
    model: Forecaster, data: torch.Tensor, window: int, optim: torch.optim.Optimizer | None, clip: float
) -> float:
    """One pass over ``data[S, T, F]`` in windows, carrying (detached) state from window to window."""
    state: tuple[torch.Tensor, ...] | None = None
    total, count = 0.0, 0
    loss_fn = nn.MSELoss(reduction="sum")
    for start in range(0, data.shape[1] - 1, window):
        chunk = data[:, start : start + window + 1]
        if chunk.shape[1] < 2:
            break
        pred, state = model(chunk[:, :-1], state)
        loss = loss_fn(pred, chunk[:, 1:])
        if optim is not None:
            optim.zero_grad()
            (loss / pred.numel()).backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optim.step()
        state = tuple(s.detach() for s in state)
        total += float(loss.detach())
        count += pred.numel()
    return total / max(count, 1)


def fit(
    train_z: npt.NDArray[np.float32], val_z: npt.NDArray[np.float32], config: FitConfig, progress: bool = True
) -> FitResult:
    """Trains on normalised ``train_z[T, F]``; keeps the weights of the best validation epoch."""
    seed_everything(config.seed)
    shape = ModelShape(train_z.shape[1], config.hidden, config.layers, config.cell, config.dropout)  # type: ignore[arg-type]
    model = Forecaster(shape)
    optim = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=config.lr_decay)
    train = _segments(torch.from_numpy(train_z), config.segments)
    val = torch.from_numpy(val_z).unsqueeze(0)
    result = FitResult(model=model)
    best, best_state, waited = float("inf"), copy.deepcopy(model.state_dict()), 0
    bar = tqdm(range(config.epochs), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        train_loss = _epoch(model, train, config.window, optim, config.clip)
        model.eval()
        with torch.no_grad():
            val_loss = _epoch(model, val, config.window, None, config.clip)
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
