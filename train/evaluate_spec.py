"""`faultcast evaluate spec`: a trained model on your own labelled recordings, through the daemon's path.

Every matching stream of a dataset spec with anomaly labels is replayed whole; the prediction for a row is
the daemon's fault-alert state there (firing = 1), as in the SKAB evaluation. Pointwise F1 / FAR / MAR
count rows from ``--from`` on (rows before it may be a baseline or known normal), and each labelled fault
(a run of labelled rows) is detected when an alert fires inside it, after the delay reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daemon.errors import DataError, UsageError
from train.backtest import StreamResult, backtest
from train.dataset import LabelledSeries, load_matching
from train.evaluate_report import SeriesPlot, plot_series, runs, table
from train.evaluate_skab import SkabMetrics, skab_metrics, trained


@dataclass(frozen=True)
class StreamVerdict:
    labelled: LabelledSeries
    result: StreamResult
    metrics: SkabMetrics
    faults: int  # labelled runs from the first scored row on
    delays: list[int]  # readings from each detected fault's first row to the first firing row in it


@dataclass(frozen=True)
class SpecResult:
    streams: list[StreamVerdict]
    threshold: float
    rejected: int
    dropped: int

    @property
    def pooled(self) -> SkabMetrics:
        return sum((s.metrics for s in self.streams), SkabMetrics(0, 0, 0, 0))


def evaluate_spec(spec: str, root: Path, pattern: str, model: Path, first: int = 0) -> SpecResult:
    """Backtests ``model`` on the labelled streams of ``spec`` that match ``pattern``."""
    if first < 0:
        raise UsageError(f"evaluate spec: --from {first}: give the first row to count, >= 0")
    chosen, _ = load_matching(spec, root, pattern, keep_gaps=True)
    unlabelled = [s.series.name for s in chosen if s.anomaly is None]
    if unlabelled:
        raise DataError(
            f"stream {unlabelled[0]} has no anomaly labels: give the spec label_columns.anomaly, or pick "
            "labelled streams with --streams"
        )
    report = trained(model, chosen[0].series.channels, "the recordings")
    bt = backtest(report.model_path, chosen)
    verdicts = []
    for s in chosen:
        assert s.anomaly is not None
        result = bt.streams[s.series.name]
        firing, truth = result.firing[first:], s.anomaly[first:]
        delays = []
        for start, end in runs(truth):
            inside = np.flatnonzero(firing[start : end + 1])
            if len(inside):
                delays.append(int(inside[0]))
        faults = len(runs(truth))
        verdicts.append(StreamVerdict(s, result, skab_metrics(firing, truth), faults, delays))
    return SpecResult(verdicts, bt.threshold, bt.rejected, bt.dropped)


def spec_summary(result: SpecResult, model: Path, first: int, command: str) -> str:
    rows: list[list[object]] = []
    for v in result.streams:
        m = v.metrics
        rows.append(
            [v.labelled.series.name, m.f1, m.far, m.mar, f"{len(v.delays)}/{v.faults}", _delay(v.delays)]
        )
    p = result.pooled
    detected = [d for v in result.streams for d in v.delays]
    faults = sum(v.faults for v in result.streams)
    rows.append(["pooled", p.f1, p.far, p.mar, f"{len(detected)}/{faults}", _delay(detected)])
    return "\n\n".join(
        [
            f"## {model.name} on labelled recordings: pointwise, rows from {first} on",
            f"Command: `{command}`",
            f"Prediction = the daemon's fault-alert state (firing = 1) per row, with the model's alert "
            f"settings (threshold {result.threshold:.4g}). Readings the daemon path refused: "
            f"{result.rejected}; dropped: {result.dropped}. A fault is a run of labelled rows; it is "
            "detected when an alert fires inside it, after the delay shown (median, in readings).",
            table(["stream", "F1", "FAR %", "MAR %", "faults detected", "delay"], rows),
        ]
    )


def _delay(delays: Sequence[int]) -> str:
    return f"{float(np.median(delays)):g}" if delays else "-"


def spec_plots(result: SpecResult, folder: Path, first: int) -> None:
    """One PNG per stream: its channels, score, threshold, labelled faults and alerts."""
    for v in result.streams:
        series, labels = v.labelled.series, v.labelled.anomaly
        assert labels is not None
        spans = [(float(series.ts[a]), float(series.ts[b])) for a, b in runs(labels)]
        m = v.metrics
        plot = SeriesPlot(
            title=f"{series.name}: F1 {m.f1:.2f}, FAR {m.far:.1f}%, MAR {m.mar:.1f}%",
            ts=series.ts,
            values=series.values,
            channels=series.channels,
            score=v.result.score,
            threshold=result.threshold,
            firing=v.result.firing,
            onsets=v.result.onsets,
            spans=spans,
            scored_from=float(series.ts[first]) if first < len(series) else None,
        )
        plot_series(plot, folder / f"spec_{series.name.replace('/', '_')}.png")
