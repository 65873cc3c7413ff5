"""Trains, calibrates and exports one step model for a recorded series: the `faultcast train` job."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from daemon.config import ALERTING_DEFAULTS
from daemon.errors import DataError, ParityError
from train.calibrate import alert_rows, dynamic_threshold
from train.congestion import CongestionSpec, ahead_target, calibrate, check_load
from train.export import build_step_model, save
from train.export_check import parity
from train.fault import BoolArray, fault_target
from train.fault import calibrate as calibrate_fault
from train.fit import FitConfig, Heads, fit
from train.model import Forecaster, clock_inputs, model_inputs
from train.score import ScoreParams, ScoreSettingError, baseline_offsets, stream_scores
from train.season import calendar_period, reading_step
from train.series import Series
from train.train_spec import TrainSpec

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class TrainReport:
    model_path: Path
    threshold: float
    parity_max_abs: float
    best_epoch: int
    history: list[dict[str, float]]
    metadata: dict[str, Any]
    validation: list[Scored] = field(default_factory=list)
    # what `faultcast export` needs to rebuild the step model from a run folder
    model: Forecaster | None = None
    params: ScoreParams | None = None
    held_out: Series | None = None


@dataclass(frozen=True)
class Segment:
    """A stretch of one stream for validation; rows before ``score_from`` only warm up its state."""

    series: Series
    score_from: int = 0
    windows: tuple[tuple[float, float], ...] = ()  # labelled spans (epoch seconds), if any
    labels: BoolArray | None = None  # per-row fault labels, for a fault head


@dataclass(frozen=True)
class Scored:
    """A validation segment with the trained model's score for each of its rows."""

    segment: Segment
    score: np.ndarray


def _prepare(values: np.ndarray, mean: np.ndarray, std: np.ndarray, baseline: int) -> np.ndarray:
    """Raw readings as the model sees them: normalised, minus the stream's own baseline offsets."""
    z = torch.from_numpy(((values - mean) / std).astype(np.float32))
    return (z - baseline_offsets(z, baseline)).numpy()


def train_series(
    series: Series, spec: TrainSpec, config: FitConfig, out: Path, progress: bool = True
) -> TrainReport:
    """Fits on the first ``fit_fraction`` of ``series`` only; writes the ONNX step model to ``out``."""
    n_fit = int(len(series) * spec.fit_fraction)
    n_train = int(n_fit * (1 - spec.val_fraction))
    if n_train < 64 or n_fit - n_train < 32:
        raise DataError(
            f"{series.name}: {n_fit} of its {len(series)} readings to fit on are too few (need >= 96); "
            "record more, or raise --fit-fraction"
        )
    # Parity runs on readings the model did not fit, or on the last fitted ones when none are left.
    rest = len(series) - n_fit
    held_out = (
        series.rows(n_fit, n_fit + spec.parity_steps)
        if rest >= 100
        else series.rows(-spec.parity_steps, None)
    )
    return train_streams(
        [series.head(n_train)], [Segment(series.head(n_fit), n_train)], held_out, spec, config, out, progress
    )


def train_load_series(
    series: Series,
    congestion: CongestionSpec,
    config: FitConfig,
    out: Path,
    train_fraction: float = 0.5,
    val_fraction: float = 0.3,
    name: str | None = None,
) -> TrainReport:
    """A model with clock inputs and a congestion head for a one-channel load series, fitted on its
    first ``train_fraction`` (the last ``val_fraction`` of which validates); parity on the rest."""
    spec = TrainSpec(
        name=name or series.name,
        fit_fraction=train_fraction,
        val_fraction=val_fraction,
        clock=True,
        congestion=congestion,
    )
    return train_series(series, spec, config, out, progress=False)


def train_streams(
    train: list[Series],
    val: list[Segment],
    held_out: Series,
    spec: TrainSpec,
    config: FitConfig,
    out: Path,
    progress: bool = True,
    labels: list[BoolArray] | None = None,
) -> TrainReport:
    """Fits one model on several streams' training parts, calibrates on ``val``; parity on ``held_out``.

    Normalisation statistics come from ``train`` only. A fault head needs ``labels`` (one per-row array
    per training part) and labels on every validation segment.
    """
    if spec.fault is not None and (labels is None or any(seg.labels is None for seg in val)):
        raise ValueError("a fault head needs per-row labels on every training part and validation segment")
    if spec.congestion is not None:
        check_load(train, spec.congestion)
    stacked = np.concatenate([s.values for s in train])
    mean = stacked.mean(axis=0)
    std = np.maximum(stacked.std(axis=0), 1e-6)
    channels = train[0].channels
    flat = [c for c, moved in zip(channels, np.ptp(stacked, axis=0).tolist(), strict=True) if moved == 0]
    if flat:
        # Normalised by the floor of the spread, any later change of it would score in the millions.
        raise DataError(
            f"channel {flat[0]} does not vary in the training data, so the model cannot learn how it moves "
            "and would score any change of it in the millions; leave it out of the channels, or fit on "
            "data where it varies"
        )
    heads = Heads(
        clock=spec.clock,
        quantiles=spec.congestion.quantiles if spec.congestion else (),
        load=channels.index(spec.congestion.channel) if spec.congestion else 0,
        fault=spec.fault is not None,
    )
    train_z = [_prepare(s.values, mean, std, spec.baseline) for s in train]
    val_z = [_prepare(seg.series.values, mean, std, spec.baseline) for seg in val]
    train_labels: list[BoolArray | None] = list(labels) if labels is not None else [None] * len(train)
    result = fit(
        [_columns(s, z, spec, heads, lab) for s, z, lab in zip(train, train_z, train_labels, strict=True)],
        [
            _columns(seg.series, z, spec, heads, seg.labels)[seg.score_from :]
            for z, seg in zip(val_z, val, strict=True)
        ],
        config,
        progress=progress,
        heads=heads,
    )
    # each segment's first scored row: past its warm-up rows and the stream's baseline
    starts = [max(seg.score_from, spec.baseline, 1) for seg in val]
    errors = []
    for z, seg, start in zip(val_z, val, starts, strict=True):
        inputs = model_inputs(result.model.shape, torch.from_numpy(z), seg.series.ts)
        with torch.no_grad():
            pred = result.model(inputs.unsqueeze(0)).pred
        errors.append(z[start:] - pred[0, start - 1 : -1].numpy())
    resid_std = np.maximum(np.concatenate(errors).std(axis=0), 1e-6)
    # Every fitted stretch shows the rhythm: the training parts and the validation segments (a single
    # series' segment is its whole fitted head); the longest is what the check may remember.
    stretches = train_z + val_z
    step = reading_step([s.ts for s in train] + [seg.series.ts for seg in val])
    season = calendar_period(stretches, step) if spec.season == "auto" else spec.season
    try:
        params = ScoreParams(
            tuple(map(float, mean)),
            tuple(map(float, std)),
            tuple(map(float, resid_std)),
            spec.smoothing,
            spec.baseline,
            spec.scale_floor,
            spec.adapt,
            peak_half_life=spec.peak_half_life,
            range_tolerance=spec.range_tolerance,
            range_creep=spec.range_creep,
            season=season,
            season_memory=max(len(z) for z in stretches) if season is not None else 0,
        )
    except ScoreSettingError as exc:
        raise DataError(f"{spec.name}: {exc}; fit on longer stretches, or give a shorter --season") from exc
    val_out = [
        stream_scores(result.model, torch.from_numpy(seg.series.values), params, seg.series.ts) for seg in val
    ]
    val_scores = np.concatenate(
        [out.score[start:].numpy() for out, start in zip(val_out, starts, strict=True)]
    )
    if spec.adapt is None:
        threshold = max(dynamic_threshold(val_scores), spec.headroom * float(val_scores.max()))
        method = "dynamic (Hundman et al. 2018)"
    else:
        threshold, method = spec.adapt_threshold, "set: standard deviations of the adaptive score"

    alerting = dict(ALERTING_DEFAULTS)
    if spec.peak_half_life is not None:
        # A gated score is above the threshold only while it climbs: one such reading is the signal.
        alerting["fire_after"] = 1
    val_alerts = sum(
        int(alert_rows(o.score.numpy()[start:], threshold, alerting, o.hold.numpy()[start:])[1].sum())
        for o, start in zip(val_out, starts, strict=True)
    )
    thresholds: dict[str, dict[str, Any]] = {
        "fault": {
            "threshold": threshold,
            "method": method,
            "headroom": spec.headroom if spec.adapt is None else None,
            # the alert settings the threshold was checked with; the daemon uses them unless configured
            "alerting": alerting,
            "validation_alerts": val_alerts,
        }
    }
    congestion: dict[str, Any] | None = None
    if spec.congestion is not None:
        forecasts = [
            (seg.series, seg.score_from, out.congestion.numpy())
            for seg, out in zip(val, val_out, strict=True)
        ]
        congestion = calibrate(spec.congestion, stacked[:, heads.load], forecasts)
        thresholds["congestion"] = {
            "threshold": congestion["limit"],
            "method": f"percentile {spec.congestion.limit_percentile:g} of the training part",
        }
    fault: dict[str, Any] | None = None
    if spec.fault is not None:
        pairs = [
            (seg.labels[seg.score_from :], o.fault.numpy()[seg.score_from :])
            for seg, o in zip(val, val_out, strict=True)
            if seg.labels is not None
        ]
        fault = calibrate_fault(spec.fault, pairs)
        # With a fault head, fault alerts follow its probability; the anomaly threshold stays on record.
        thresholds["anomaly"] = thresholds["fault"]
        thresholds["fault"] = {"threshold": fault["threshold"], "method": "fault head: best F1 on validation"}
    shape = result.model.shape
    fitted = sum(len(s) for s in train)
    metadata = {
        "name": spec.name,
        "version": spec.version,
        "features": list(train[0].channels),
        "cell": shape.cell,
        "hidden": shape.hidden,
        "layers": shape.layers,
        "horizon": spec.congestion.horizon if spec.congestion else None,
        "clock": spec.clock,
        "baseline_readings": spec.baseline,
        "thresholds": thresholds,
        "score": dataclasses.asdict(params),
        "training": {
            "series": [s.name for s in train],
            "fitted_readings": fitted,
            "validation_readings": int(sum(len(seg.series) - seg.score_from for seg in val)),
            "data_fingerprint": _fingerprint(train),
            # The daemon counts readings that come much faster: every setting counted in readings (the
            # forecast step, the adaptive score's memory, the season's period) assumes this pace.
            "reading_step_s": step,
            "best_epoch": result.best_epoch,
            "fit": dataclasses.asdict(config),
        },
    }
    if congestion is not None:
        metadata["congestion"] = congestion
    if fault is not None:
        metadata["fault"] = fault
    proto = build_step_model(result.model, params, metadata)
    gap = checked_parity(result.model, params, proto, held_out.values, held_out.ts, spec.name)
    save(proto, out)
    validation = [Scored(seg, o.score.numpy()) for seg, o in zip(val, val_out, strict=True)]
    return TrainReport(
        out,
        threshold,
        gap,
        result.best_epoch,
        result.history,
        metadata,
        validation,
        result.model,
        params,
        held_out,
    )


def checked_parity(
    model: Forecaster,
    params: ScoreParams,
    proto: onnx.ModelProto,
    x: np.ndarray,
    ts: np.ndarray | None,
    name: str,
    remedy: str = "float32 rounding in this fit grows over the steps; train again with another --seed",
) -> float:
    """The step model's parity gap with ``model`` on the held-out readings ``x``; ParityError over
    PARITY_TOLERANCE, the bound a shipped model must keep, with ``remedy`` for what to do."""
    gap = parity(model, params, proto, x, ts)
    if gap > PARITY_TOLERANCE:
        raise ParityError(
            f"{name}: the exported step model differs from PyTorch by {gap:.2e} on held-out readings "
            f"(the bound is {PARITY_TOLERANCE:g}): {remedy}"
        )
    return gap


def _columns(
    series: Series, z: np.ndarray, spec: TrainSpec, heads: Heads, labels: BoolArray | None
) -> np.ndarray:
    """The columns ``fit`` trains on: normalised readings, clock inputs, then each extra head's target
    and mask."""
    columns = [z]
    if heads.clock:
        columns.append(clock_inputs(series.ts))
    targets = []
    if spec.congestion is not None:
        targets.append(ahead_target(series.ts, z[:, heads.load], spec.congestion))
    if spec.fault is not None and labels is not None:
        targets.append(fault_target(labels, spec.fault.horizon))
    columns += [np.stack([target, mask.astype(np.float32)], axis=1) for target, mask in targets]
    return np.concatenate(columns, axis=1).astype(np.float32)


def _fingerprint(parts: list[Series]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.fingerprint().encode())
    return digest.hexdigest()
