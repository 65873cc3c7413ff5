"""Long-memory probe: how many steps back can an LSTM, a GRU and a plain RNN carry a single cue?"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from train.model import CORES, init_recurrent

CELLS: tuple[str, ...] = ("lstm", "gru", "rnn")
DEFAULT_DELAYS: tuple[int, ...] = (5, 10, 20, 40, 80, 160)
FORGET_BELOW = 0.75  # a cell "stops remembering" at the first delay whose accuracy falls under this


@dataclass(frozen=True)
class ProbeConfig:
    """The budget every (cell, delay) pair gets; identical across cells."""

    hidden: int = 32
    steps: int = 400  # optimiser steps, a fresh batch each
    batch: int = 64
    lr: float = 3e-3
    clip: float = 1.0
    noise: float = 1.0  # std of the distractor channel
    eval_size: int = 512
    seeds: tuple[int, ...] = (0, 1)  # near its limit a cell learns on some seeds only: report the mean


@dataclass(frozen=True)
class ProbeResult:
    runs: dict[tuple[str, int], tuple[float, ...]]  # (cell, delay) -> held-out accuracy per seed
    seconds: dict[str, float] = field(default_factory=dict)  # cell -> training wall time over all delays

    @property
    def accuracy(self) -> dict[tuple[str, int], float]:
        """Mean held-out accuracy over the seeds."""
        return {key: sum(accs) / len(accs) for key, accs in self.runs.items()}

    def forgets_at(self, cell: str, limit: float = FORGET_BELOW) -> int | None:
        """The first delay whose accuracy is under ``limit``; ``None`` when the cell held every delay."""
        accuracy = self.accuracy
        delays = sorted(k for c, k in accuracy if c == cell)
        return next((k for k in delays if accuracy[(cell, k)] < limit), None)


def cue_batch(
    delay: int, size: int, generator: torch.Generator, noise: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x[size, delay + 1, 2]``: a ±1 cue at t = 0 on channel 0, noise on channel 1; ``y`` = cue > 0.

    The answer is read from the last step, ``delay`` readings after the cue; everything in between is
    distractor noise, so the cell has to carry one bit through ``delay`` updates.
    """
    sign = torch.randint(0, 2, (size,), generator=generator).float()
    x = torch.zeros(size, delay + 1, 2)
    x[:, 0, 0] = 2 * sign - 1
    x[:, :, 1] = noise * torch.randn(size, delay + 1, generator=generator)
    return x, sign


class _Probe(nn.Module):
    def __init__(self, cell: str, hidden: int) -> None:
        super().__init__()
        self.core: nn.RNNBase = CORES[cell](input_size=2, hidden_size=hidden, batch_first=True)
        self.readout = nn.Linear(hidden, 1)
        # the forecaster's initialisation, so the probe speaks for the shipped cells
        init_recurrent(self.core, cell, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.core(x)
        return self.readout(out[:, -1]).squeeze(1)  # type: ignore[no-any-return]


def train_probe(cell: str, delay: int, config: ProbeConfig, seed: int) -> float:
    """Trains one cell on one delay with ``config``'s budget; returns held-out accuracy."""
    torch.manual_seed(seed)
    model = _Probe(cell, config.hidden)
    optim = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    data = torch.Generator().manual_seed(seed * 1_000_003 + delay)  # same batches for every cell
    for _ in range(config.steps):
        x, y = cue_batch(delay, config.batch, data, config.noise)
        loss = loss_fn(model(x), y)
        optim.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        optim.step()
    held_out = torch.Generator().manual_seed(seed * 1_000_003 + delay + 500_000)
    x, y = cue_batch(delay, config.eval_size, held_out, config.noise)
    with torch.no_grad():
        guess = (model(x) > 0).float()
    return float((guess == y).float().mean())


def run_probe(
    config: ProbeConfig, delays: Sequence[int] = DEFAULT_DELAYS, cells: Sequence[str] = CELLS
) -> ProbeResult:
    """Accuracy for every (cell, delay, seed); every cell sees the same seeds and the same batches.

    Runs on one thread: these tiny recurrent steps are overhead-bound, and on a busy 2-core machine a
    second intra-op thread made them over 100x slower (spin-waiting), while one thread is deterministic.
    """
    runs: dict[tuple[str, int], tuple[float, ...]] = {}
    seconds: dict[str, float] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for cell in cells:
            started = time.perf_counter()
            for delay in delays:
                runs[(cell, delay)] = tuple(train_probe(cell, delay, config, s) for s in config.seeds)
            seconds[cell] = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return ProbeResult(runs, seconds)


def probe_markdown(
    result: ProbeResult,
    delays: Sequence[int],
    config: ProbeConfig | None = None,
    cells: Sequence[str] = CELLS,
) -> str:
    """Accuracy per (cell, delay) as a markdown table, with where each cell stops remembering.

    With ``config``, the table comes after a paragraph saying how the probe was run.
    """
    head = "| cell | " + " | ".join(f"k={k}" for k in delays) + f" | first k < {FORGET_BELOW} | train s |"
    rule = "|---|" + "---:|" * (len(delays) + 2)
    rows = []
    accuracy = result.accuracy
    for cell in cells:
        accs = " | ".join(f"{accuracy[(cell, k)]:.3f}" for k in delays)
        stop = result.forgets_at(cell)
        took = result.seconds.get(cell, 0.0)
        rows.append(f"| {cell.upper()} | {accs} | {'none' if stop is None else stop} | {took:.1f} |")
    table = "\n".join([head, rule, *rows])
    if config is None:
        return table
    c = config
    return f"""A ±1 cue at t = 0 on one input channel, N(0, {c.noise:g}) noise on a second channel at every
step; the cell must output the cue's sign at t = k. Plain `nn.LSTM` / `nn.GRU` / `nn.RNN`, hidden
{c.hidden}, with the forecaster's initialisation (Xavier input, orthogonal recurrent weights, LSTM
forget bias 1) and a linear read-out; {c.steps} Adam steps (lr {c.lr:g}, clip {c.clip:g}), batches of
{c.batch}, fresh data each step, the same batches for every cell; accuracy on {c.eval_size} held-out
sequences, mean over seeds {", ".join(map(str, c.seeds))}. Chance is 0.5. One torch thread; `train s`
covers all delays and seeds.

{table}"""


def plot_probe(result: ProbeResult, delays: Sequence[int], path: Path, cells: Sequence[str] = CELLS) -> None:
    """Accuracy against delay (log x), one line per cell, as a PNG."""
    import matplotlib  # noqa: PLC0415  (plotting only when asked; keeps the import light for training)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    accuracy = result.accuracy
    fig, ax = plt.subplots(figsize=(6, 4))
    for cell in cells:
        ax.plot(delays, [accuracy[(cell, k)] for k in delays], marker="o", label=cell.upper())
    ax.axhline(FORGET_BELOW, color="grey", linestyle="--", linewidth=1, label=f"{FORGET_BELOW} (forgotten)")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xticks(list(delays), [str(k) for k in delays])
    ax.set_xlabel("k: steps between cue and answer")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.set_title("Long-memory probe: recall a ±1 cue k steps back")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
