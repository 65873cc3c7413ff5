"""Evaluation report pieces: published reference numbers, markdown tables and per-series PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.floating]
BoolArray = npt.NDArray[np.bool_]

SKAB_SOURCE = (
    "SKAB README (github.com/waico/SKAB, commit b2c0d46c), outlier task on the whole benchmark (34 files)"
)
SKAB_PUBLISHED: dict[str, tuple[float, float, float]] = {
    "Conv-AE": (0.78, 13.55, 28.02),
    "MSET": (0.78, 39.73, 14.13),
    "T2+Q": (0.76, 26.62, 24.92),
    "LSTM-AE": (0.74, 29.96, 25.92),
    "T2": (0.66, 19.21, 42.6),
    "LSTM-VAE": (0.56, 9.13, 55.03),
    "Vanilla LSTM": (0.54, 12.54, 59.53),
    "Isolation Forest": (0.29, 2.56, 82.89),
}


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats get two decimals.

    >>> print(table(["a", "b"], [["x", 1.234]]))
    | a | b |
    |---|---|
    | x | 1.23 |
    """

    def cell(v: object) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def runs(mask: BoolArray) -> list[tuple[int, int]]:
    """Inclusive (first, last) row pairs of each run of True.

    >>> runs(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 2), (4, 4)]
    """
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


@dataclass(frozen=True)
class SeriesPlot:
    """What one series' figure shows; times are epoch seconds, ``spans`` the labelled windows or segments."""

    title: str
    ts: FloatArray
    values: FloatArray
    channels: tuple[str, ...]
    score: FloatArray
    threshold: float
    firing: BoolArray
    onsets: BoolArray
    spans: Sequence[tuple[float, float]]
    scored_from: float | None = None


def dates(ts: FloatArray) -> list[datetime]:
    return [datetime.fromtimestamp(float(t), tz=UTC).replace(tzinfo=None) for t in ts]


def png_path(folder: Path, prefix: str, name: str) -> Path:
    """Where a stream's plot goes. Stream ids may hold ``/``; escaped as in a URL, two ids never share a file
    (``a/b`` and ``a_b`` did when ``/`` became ``_``)."""
    return folder / f"{prefix}{name.replace('%', '%25').replace('/', '%2F')}.png"


def plot_series(p: SeriesPlot, path: Path) -> None:
    """One panel per channel, then the score with its threshold; labels shaded, alerts marked."""
    x = dates(p.ts)
    n = len(p.channels)
    fig = Figure(figsize=(14, 3 + 1.2 * n if n > 1 else 6))
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no pyplot global state
    axes = fig.subplots(n + 1, 1, sharex=True, height_ratios=[3 if n == 1 else 1] * n + [2])
    for i, name in enumerate(p.channels):
        axes[i].plot(x, p.values[:, i], lw=0.6)
        axes[i].set_ylabel(name, fontsize=8 if n > 1 else 10)
    bottom = axes[-1]
    floor = max(p.threshold * 1e-3, 1e-6)
    bottom.plot(x, np.maximum(np.nan_to_num(p.score), floor), lw=0.6, color="black", label="score")
    bottom.axhline(p.threshold, color="tab:orange", lw=1, ls="--", label=f"threshold {p.threshold:.3g}")
    bottom.set_yscale("log")
    bottom.set_ylabel("score")
    for ax in axes:
        for i, (start, end) in enumerate(p.spans):
            label = "labelled" if i == 0 and ax is bottom else None
            ax.axvspan(*dates(np.array([start, end])), color="tab:green", alpha=0.2, label=label)
        if p.scored_from is not None:
            ax.axvline(dates(np.array([p.scored_from]))[0], color="grey", lw=1, ls=":")
    for i, (first, last) in enumerate(runs(p.firing)):
        label = "alert firing" if i == 0 else None
        bottom.axvspan(x[first], x[last], color="tab:red", alpha=0.15, label=label)
    onset_rows = np.flatnonzero(p.onsets)
    if len(onset_rows):
        marks = [max(float(np.nan_to_num(p.score[i])), floor) for i in onset_rows]
        bottom.plot([x[i] for i in onset_rows], marks, "v", color="tab:red", ms=6, label="alert fired")
    bottom.legend(loc="upper left", fontsize=7, ncol=5)
    axes[0].set_title(p.title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
