"""Congestion warnings on real traffic occupancy, scored against persistence and same-time-yesterday.

Congestion is the load above a limit (a percentile of the rows the model is fitted on). At every reading
of the test part a method warns that the load ``horizon`` steps later will be above the limit: the model
when the daemon's congestion alert is firing, the baselines when their forecast is above the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from train import evaluate_report as rep
from train.backtest import StreamResult, backtest, config_for
from train.congestion import CongestionSpec, crossing_ahead
from train.fit import FitConfig
from train.model import DAY_S
from train.pipeline import TrainReport, train_load_series
from train.series import Series, load_nab_csv

METHODS = ("faultcast", "persistence", "yesterday")
# Per-reading warnings: the alert state machine fires on the first forecast over the limit and resolves
# on the first under it, so each row's warning is that row's forecast.
POINTWISE_ALERTING = {"fire_after": 1, "resolve_after": 1, "resolve_ratio": 1.0, "cooldown_s": 0.0}


@dataclass(frozen=True)
class CongestionOptions:
    congestion: CongestionSpec = field(default_factory=lambda: CongestionSpec("occupancy"))
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=150, window=96, segments=4))
    train_fraction: float = 0.5  # of each series: fit and validation; the rest is the test part
    val_fraction: float = 0.3  # of the training part, its most recent rows
    pattern: str = "occupancy_*.csv"


@dataclass(frozen=True)
class Warnings:
    """One method's scores on the test part of one series (or pooled)."""

    tp: int
    fp: int
    fn: int
    episodes: int  # congestion episodes that start in the test part
    ahead: int  # of those, the ones warned before their start
    lead_s: float  # summed lead time over the episodes
    abs_err: float  # summed absolute forecast error at the horizon
    errors: int  # readings in that sum

    @property
    def precision(self) -> float:
        return self.tp / max(self.tp + self.fp, 1)

    @property
    def recall(self) -> float:
        return self.tp / max(self.tp + self.fn, 1)

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1)

    @property
    def mean_lead_min(self) -> float:
        """Over all episodes: one warned late or not at all counts as no lead."""
        return self.lead_s / max(self.episodes, 1) / 60.0

    @property
    def mae(self) -> float:
        return self.abs_err / max(self.errors, 1)

    def __add__(self, other: Warnings) -> Warnings:
        return Warnings(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.episodes + other.episodes,
            self.ahead + other.ahead, self.lead_s + other.lead_s, self.abs_err + other.abs_err,
            self.errors + other.errors,
        )  # fmt: skip


@dataclass(frozen=True)
class CongestionStream:
    series: Series
    result: StreamResult
    report: TrainReport
    limit: float
    test_from: int
    forecasts: dict[str, npt.NDArray[np.float64]]  # per method: its horizon forecast at each row
    warnings: dict[str, npt.NDArray[np.bool_]]
    scores: dict[str, Warnings]


def yesterday(ts: npt.NDArray[np.float64], load: np.ndarray, ahead_s: float) -> npt.NDArray[np.float64]:
    """The load one day before ``ts + ahead_s`` (the nearest reading within a minute; NaN if none).

    >>> ts = np.array([0.0, 300, DAY_S, DAY_S + 300])
    >>> yesterday(ts, np.array([1.0, 2, 3, 4]), 300.0).tolist()
    [nan, nan, 2.0, nan]
    """
    want = ts + ahead_s - DAY_S
    idx = np.clip(np.searchsorted(ts, want), 0, len(ts) - 1)
    before = np.clip(idx - 1, 0, len(ts) - 1)
    nearest = np.where(np.abs(ts[before] - want) < np.abs(ts[idx] - want), before, idx)
    found = np.abs(ts[nearest] - want) <= 60.0
    return np.where(found, load[nearest].astype(np.float64), np.nan)


def score_warnings(
    ts: npt.NDArray[np.float64],
    load: np.ndarray,
    warn: npt.NDArray[np.bool_],
    forecast: npt.NDArray[np.float64],
    limit: float,
    spec: CongestionSpec,
    test_from: int,
    mae_rows: npt.NDArray[np.bool_],
) -> Warnings:
    """Pointwise warnings against the load ``horizon`` steps later, episode lead times, and MAE.

    Rows count only where the reading ``horizon`` steps later exists with no gap between. An episode
    starts at a reading above the limit after ``horizon`` readings under it (so noise around the limit
    is not a stream of new episodes). Its lead time runs from the first of those ``horizon``
    readings with a warning on to the episode's start (0 if none).
    """
    h = spec.horizon
    actual, valid = crossing_ahead(ts, load, limit, spec)
    valid[:test_from] = False
    tp, fp, fn = (int(np.sum(m & valid)) for m in (warn & actual, warn & ~actual, ~warn & actual))
    above = load > limit
    starts = [t for t in range(max(test_from, h), len(load)) if above[t] and not above[t - h : t].any()]
    ahead, lead = 0, 0.0
    for s in starts:
        # only warnings within the horizon's time: a gap must not stretch the lead past the horizon
        on = [t for t in range(s - h, s) if warn[t] and ts[s] - ts[t] <= h * spec.step_s]
        if on:
            ahead += 1
            lead += ts[s] - ts[on[0]]
    err = np.abs(forecast[: len(load) - h] - load[h:])
    rows = (valid & mae_rows)[: len(load) - h]
    return Warnings(tp, fp, fn, len(starts), ahead, lead, float(err[rows].sum()), int(rows.sum()))


def evaluate_stream(series: Series, o: CongestionOptions, out: Path) -> CongestionStream:
    """Fits one model on the series' training part, backtests all of it through the daemon's path."""
    spec = o.congestion
    series = Series(series.name, series.ts, series.values, (spec.channel,))
    n_part = int(len(series) * o.train_fraction)
    report = train_load_series(
        series, o.congestion, o.fit, out / f"{series.name}.onnx", o.train_fraction, o.val_fraction
    )
    config = config_for(report.model_path, congestion=POINTWISE_ALERTING)
    result = backtest(report.model_path, [series], config=config).streams[series.name]
    limit = float(report.metadata["congestion"]["limit"])
    load = series.values[:, 0]
    ahead_s = spec.horizon * spec.step_s
    forecasts = {
        "faultcast": result.forecast[:, spec.quantiles.index(spec.warn)],
        "persistence": load.astype(np.float64),
        "yesterday": yesterday(series.ts, load, ahead_s),
    }
    warnings = {
        "faultcast": result.warning,
        "persistence": load > limit,
        "yesterday": np.nan_to_num(forecasts["yesterday"], nan=-np.inf) > limit,
    }
    # MAE on the rows every method has a forecast for, so the three are comparable.
    common = np.all([np.isfinite(f) for f in forecasts.values()], axis=0)
    scores = {
        m: score_warnings(series.ts, load, warnings[m], forecasts[m], limit, spec, n_part, common)
        for m in METHODS
    }
    return CongestionStream(series, result, report, limit, n_part, forecasts, warnings, scores)


def evaluate_congestion(root: Path, o: CongestionOptions, out: Path) -> list[CongestionStream]:
    files = sorted((root / "data" / "realTraffic").glob(o.pattern))
    if not files:
        raise FileNotFoundError(f"no {o.pattern} under {root}/data/realTraffic; pass --root (the NAB folder)")
    return [evaluate_stream(load_nab_csv(path), o, out) for path in files]


def pooled(streams: Sequence[CongestionStream], method: str) -> Warnings:
    total = Warnings(0, 0, 0, 0, 0, 0.0, 0.0, 0)
    for s in streams:
        total = total + s.scores[method]
    return total


def congestion_summary(streams: Sequence[CongestionStream], o: CongestionOptions, command: str) -> str:
    spec = o.congestion
    lines = [
        "## NAB realTraffic: congestion warnings",
        "",
        f"Command: `{command}`",
        "",
        f"Congestion: occupancy above the {spec.limit_percentile:g}th percentile of the rows each model is "
        f"fitted on. Horizon: {spec.horizon} readings ({spec.horizon * spec.step_s / 60:g} min). Each file: "
        f"first {o.train_fraction:.0%} to fit and validate (the last {o.val_fraction:.0%} of it), the rest "
        "is the test part. faultcast warns where the daemon's congestion alert fires (per reading: "
        f"the {spec.warn:g} quantile forecast over the limit); persistence warns where the load is over "
        "the limit now; yesterday where the load one day before the target time was.",
        "",
        "Lead: mean over the test part's congestion episodes (a crossing after "
        f"{spec.horizon} readings under the limit) of the time from the first warning in the "
        f"{spec.horizon} readings before it to its start, 0 when none; ahead: episodes warned before "
        "they started. MAE: the point forecast against the load at the horizon, on the readings every "
        "method has a forecast for.",
        "",
        "Training: " + ", ".join(f"{k}={v}" for k, v in asdict(o.fit).items()),
        "",
    ]
    rows: list[list[object]] = []
    for name, scores in [*((s.series.name, s.scores) for s in streams), ("pooled", _pooled(streams))]:
        for m in METHODS:
            w = scores[m]
            lead = f"{w.mean_lead_min:.1f} ({w.ahead}/{w.episodes} ahead)"
            rows.append([name, m, w.precision, w.recall, w.f1, lead, w.mae])
    header = ["series", "method", "precision", "recall", "F1", "lead min", f"MAE at {spec.horizon}"]
    lines.append(rep.table(header, rows))
    limits = ", ".join(f"{s.series.name} {s.limit:.2f}" for s in streams)
    lines += ["", f"Limits (occupancy %): {limits}."]
    return "\n".join(lines)


def _pooled(streams: Sequence[CongestionStream]) -> dict[str, Warnings]:
    return {m: pooled(streams, m) for m in METHODS}


def congestion_plots(streams: Sequence[CongestionStream], folder: Path) -> None:
    """Per series: the load, the limit, the forecast at the time it is for, and the warnings."""
    for s in streams:
        head = s.report.metadata["congestion"]
        ahead_s = head["horizon_steps"] * head["step_s"]
        fig = Figure(figsize=(14, 4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        x = np.array(rep.dates(s.series.ts))
        ax.plot(x, s.series.values[:, 0], lw=0.6, color="black", label="occupancy")
        ax.plot(
            np.array(rep.dates(s.series.ts + ahead_s)),
            s.forecasts["faultcast"],
            lw=0.6,
            label="forecast (at its target)",
        )
        ax.axhline(s.limit, color="tab:orange", ls="--", lw=1, label=f"limit {s.limit:.2f}")
        ax.axvline(x[s.test_from], color="grey", ls=":", lw=1, label="test part starts")
        for i, (first, last) in enumerate(rep.runs(s.warnings["faultcast"])):
            ax.axvspan(x[first], x[last], color="tab:red", alpha=0.2, label="warning" if i == 0 else None)
        ax.set(title=s.series.name, ylabel="occupancy %")
        ax.legend(loc="upper left", fontsize=7, ncol=5)
        fig.tight_layout()
        path = rep.png_path(folder, "", s.series.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
