"""The run folder of a training job: resolved metadata, per-epoch metrics, loss and validation plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from daemon.alerts import AlertState, Observation, step
from daemon.config import AlertKindConfig
from daemon.runtime import policy_for
from train.evaluate_report import SeriesPlot, plot_series
from train.pipeline import TrainReport


def write_run(report: TrainReport, run_dir: Path) -> None:
    """The run folder: resolved metadata, per-epoch metrics as JSON, the loss curves as a PNG, and a PNG
    per validation segment (values, score, threshold, labels, and where the daemon's default fault
    alerting would fire)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metadata.json").write_text(json.dumps(report.metadata, indent=2, sort_keys=True))
    (run_dir / "metrics.json").write_text(json.dumps(report.history, indent=2))
    figure = Figure(figsize=(7, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    epochs = [h["epoch"] for h in report.history]
    axes.plot(epochs, [h["train_loss"] for h in report.history], label="train")
    axes.plot(epochs, [h["val_loss"] for h in report.history], label="validation")
    axes.axvline(report.best_epoch, color="grey", linestyle=":", label=f"kept (epoch {report.best_epoch})")
    axes.set(
        xlabel="epoch", ylabel="MSE (normalised units)", yscale="log", title=str(report.metadata["name"])
    )
    axes.legend()
    figure.savefig(run_dir / "loss.png", dpi=100, bbox_inches="tight")
    for i, scored in enumerate(report.validation):
        seg, firing, onsets = scored.segment, *_alerting(scored.score, report.threshold)
        plot = SeriesPlot(
            title=f"validation {i}: {seg.series.name}",
            ts=seg.series.ts,
            values=seg.series.values,
            channels=seg.series.channels,
            score=np.where(np.arange(len(scored.score)) >= seg.score_from, scored.score, np.nan),
            threshold=report.threshold,
            firing=firing,
            onsets=onsets,
            spans=seg.windows,
            scored_from=float(seg.series.ts[seg.score_from]) if seg.score_from < len(seg.series) else None,
        )
        plot_series(plot, run_dir / f"validation_{i}.png")


def _alerting(score: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows where the daemon's default fault alerting fires on ``score``, and rows where it starts."""
    policy = policy_for("fault", AlertKindConfig(cooldown_s=0.0), threshold)
    state, firing = AlertState(), np.zeros(len(score), dtype=bool)
    for t, value in enumerate(np.nan_to_num(score).tolist()):
        state, _ = step(policy, state, Observation(value, float(t), ("validation", 0, t)))
        firing[t] = state.phase == "firing"
    return firing, firing & ~np.concatenate([[False], firing[:-1]])
