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


def _stack(parts: list[npt.NDArray[np.float32]], count: int, window: int) -> torch.Tensor:
    """Contiguous slices of every part, all one length, stacked to ``[S, L, F]``.

    The length aims at ``count`` slices over all parts together, but is never longer than the
    shortest part nor shorter than one window; each part contributes as many whole slices as fit.
    """
    total = sum(len(p) for p in parts)
    length = max(window + 1, min(*(len(p) for p in parts), total // max(count, 1)))
    slices = [p[i : i + length] for p in parts for i in range(0, len(p) - length + 1, length)]
    if not slices:
        raise ValueError(f"no part has the {length} readings one training slice needs")
    return torch.from_numpy(np.stack(slices))


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


Parts = npt.NDArray[np.float32] | list[npt.NDArray[np.float32]]


def fit(train_z: Parts, val_z: Parts, config: FitConfig, progress: bool = True) -> FitResult:
    """Trains on normalised series ``[T, F]`` (one, or several parts); keeps the best validation epoch.

    Validation parts are each run from a cold state, as a stream starts in the daemon.
    """
    train_parts = train_z if isinstance(train_z, list) else [train_z]
    val_parts = val_z if isinstance(val_z, list) else [val_z]
    seed_everything(config.seed)
    features = train_parts[0].shape[1]
    shape = ModelShape(features, config.hidden, config.layers, config.cell, config.dropout)  # type: ignore[arg-type]
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
        train_loss = _epoch(model, train, config.window, optim, config.clip)
        model.eval()
        with torch.no_grad():
            losses = [_epoch(model, v, config.window, None, config.clip) for v in vals]
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
