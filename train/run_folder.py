"""The run folder of a training job: resolved metadata, per-epoch metrics, loss and validation plots."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from daemon.errors import DataError
from train.calibrate import alert_rows
from train.evaluate_report import SeriesPlot, plot_series, png_path
from train.export import build_step_model, save
from train.model import Forecaster, ModelShape
from train.pipeline import TrainReport, checked_parity
from train.score import ScoreParams

WEIGHTS, MODEL_SPEC, HELD_OUT = "weights.pt", "model.json", "held_out.npz"


def write_run(report: TrainReport, run_dir: Path) -> None:
    """The run folder: resolved metadata, per-epoch metrics as JSON, the loss curves as a PNG, a PNG
    per validation segment (values, score, threshold, labels, and where the daemon's default fault
    alerting would fire), and what `faultcast export` rebuilds the step model from: the weights, the
    model's shape and score parameters, and the held-out readings its parity is checked on."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metadata.json").write_text(json.dumps(report.metadata, indent=2, sort_keys=True))
    if report.model is not None and report.params is not None and report.held_out is not None:
        torch.save(report.model.state_dict(), run_dir / WEIGHTS)
        shape = {**dataclasses.asdict(report.model.shape), "quantiles": list(report.model.shape.quantiles)}
        spec = {"shape": shape, "params": dataclasses.asdict(report.params)}
        (run_dir / MODEL_SPEC).write_text(json.dumps(spec, indent=2))
        held = report.held_out
        np.savez(run_dir / HELD_OUT, ts=held.ts, values=held.values, channels=np.array(held.channels))
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
        alerting = report.metadata["thresholds"]["fault"].get("alerting")
        seg, (firing, onsets) = scored.segment, alert_rows(scored.score, report.threshold, alerting)
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
        plot_series(plot, png_path(run_dir, f"validation_{i}_", seg.series.name))


def export_run(run_dir: Path, out: Path) -> float:
    """Rebuilds the step model of a run folder, checks it like training does, writes it to ``out``.

    Returns the parity gap; a gap over the tolerance raises, and nothing is written."""
    missing = [
        name for name in (WEIGHTS, MODEL_SPEC, HELD_OUT, "metadata.json") if not (run_dir / name).exists()
    ]
    if missing:
        raise DataError(
            f"{run_dir}: no {', '.join(missing)}; train with --run-dir to get a folder `export` can use"
        )
    spec = json.loads((run_dir / MODEL_SPEC).read_text())
    shape = ModelShape(**{**spec["shape"], "quantiles": tuple(spec["shape"]["quantiles"])})
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["params"].items()}
    params = ScoreParams(**fields)
    model = Forecaster(shape)
    model.load_state_dict(torch.load(run_dir / WEIGHTS, weights_only=True))
    model.eval()
    metadata = json.loads((run_dir / "metadata.json").read_text())
    proto = build_step_model(model, params, metadata)
    with np.load(run_dir / HELD_OUT) as held:
        # the run passed this check when it was trained: what changed is this version's export
        remedy = "this faultcast version's step model does not reproduce the run; train it again"
        gap = checked_parity(model, params, proto, held["values"], held["ts"], str(metadata["name"]), remedy)
    save(proto, out)
    return gap
