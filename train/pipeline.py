"""Trains, calibrates and exports one step model for a recorded series: the `faultcast train` job."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train.calibrate import dynamic_threshold
from train.export import build_step_model, parity, save
from train.fit import FitConfig, fit
from train.model import ScoreParams, stream_scores
from train.series import Series

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class TrainSpec:
    name: str
    version: str = "1"
    fit_fraction: float = 0.15  # NAB's probation period: the only part a detector may learn from
    val_fraction: float = 0.3  # of the fitted part, the most recent readings
    smoothing: float = 0.1
    # The validation split is assumed normal, so it must not alarm: the threshold stays this far above
    # its highest score even when the dynamic threshold would cut lower.
    headroom: float = 1.5
    parity_steps: int = 2000


@dataclass(frozen=True)
class TrainReport:
    model_path: Path
    threshold: float
    parity_max_abs: float
    best_epoch: int
    history: list[dict[str, float]]
    metadata: dict[str, Any]


def train_series(
    series: Series, spec: TrainSpec, config: FitConfig, out: Path, progress: bool = True
) -> TrainReport:
    """Fits on the first ``fit_fraction`` of ``series`` only; writes the ONNX step model to ``out``."""
    n_fit = int(len(series) * spec.fit_fraction)
    n_train = int(n_fit * (1 - spec.val_fraction))
    if n_train < 64 or n_fit - n_train < 32:
        raise ValueError(f"{series.name}: {n_fit} readings to fit on are too few (need >= 96)")
    x = series.values
    mean = x[:n_train].mean(axis=0)
    std = np.maximum(x[:n_train].std(axis=0), 1e-6)
    z = ((x - mean) / std).astype(np.float32)
    result = fit(z[:n_train], z[n_train:n_fit], config, progress=progress)

    with torch.no_grad():
        pred, _ = result.model(torch.from_numpy(z[:n_fit]).unsqueeze(0))
    errors = z[n_train:n_fit] - pred[0, n_train - 1 : n_fit - 1].numpy()
    resid_std = np.maximum(errors.std(axis=0), 1e-6)
    params = ScoreParams(
        tuple(map(float, mean)), tuple(map(float, std)), tuple(map(float, resid_std)), spec.smoothing
    )
    scores, _ = stream_scores(result.model, torch.from_numpy(x[:n_fit]), params)
    val_scores = scores[n_train:].numpy()
    threshold = max(dynamic_threshold(val_scores), spec.headroom * float(val_scores.max()))

    shape = result.model.shape
    metadata = {
        "name": spec.name,
        "version": spec.version,
        "features": list(series.channels),
        "cell": shape.cell,
        "hidden": shape.hidden,
        "layers": shape.layers,
        "horizon": None,
        "thresholds": {
            "fault": {
                "threshold": threshold,
                "method": "dynamic (Hundman et al. 2018)",
                "headroom": spec.headroom,
            }
        },
        "score": dataclasses.asdict(params),
        "training": {
            "series": series.name,
            "fitted_readings": n_fit,
            "validation_readings": n_fit - n_train,
            "data_fingerprint": series.head(n_fit).fingerprint(),
            "best_epoch": result.best_epoch,
            "fit": dataclasses.asdict(config),
        },
    }
    proto = build_step_model(result.model, params, metadata)
    # Parity runs on readings the model did not fit, or on the last fitted ones when none are left.
    held_out = x[n_fit : n_fit + spec.parity_steps] if len(x) - n_fit >= 100 else x[-spec.parity_steps :]
    gap = parity(result.model, params, proto, held_out)
    if gap > PARITY_TOLERANCE:
        raise RuntimeError(f"export parity failed: ONNX step model differs from PyTorch by {gap:.2e}")
    save(proto, out)
    return TrainReport(out, threshold, gap, result.best_epoch, result.history, metadata)


def write_run(report: TrainReport, run_dir: Path) -> None:
    """The run folder: resolved metadata and per-epoch metrics as JSON."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metadata.json").write_text(json.dumps(report.metadata, indent=2, sort_keys=True))
    (run_dir / "metrics.json").write_text(json.dumps(report.history, indent=2))
