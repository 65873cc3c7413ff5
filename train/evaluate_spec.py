"""`faultcast evaluate spec`: a trained model on your own labelled recordings, through the daemon's path.

Every matching stream of a dataset spec is replayed whole (a stream without labels counts as all normal);
the prediction for a row is the daemon's fault-alert state there (firing = 1), as in the SKAB evaluation.
Pointwise F1 / FAR / MAR count rows from ``--from`` on (rows the model was fitted and validated on belong
before it). A labelled fault (a run of labelled rows starting at or after ``--from``) is detected when an
alert starts inside it, or up to the fault head's horizon before it; its delay is in readings from the
fault's first row, negative when early. A fault during which an alert that started earlier is still up
is counted apart, not as detected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from daemon.alerts import AlertPolicy
from daemon.errors import DataError, UsageError
from train.backtest import StreamResult, backtest
from train.dataset import load_matching
from train.evaluate_report import BoolArray, runs, table
from train.evaluate_skab import SkabMetrics, SkabStream, pooled, skab_metrics, trained


@dataclass(frozen=True)
class Faults:
    """One stream's labelled faults from ``--from`` on, and how the alerts met them."""

    labelled: int
    delays: list[int]  # per detected fault: readings from its first row to the alert's start
    already_firing: int  # faults met by an alert that started before the window counted for them


@dataclass(frozen=True)
class SpecResult:
    streams: list[SkabStream]
    faults: list[Faults]
    policy: AlertPolicy  # the fault alerts' settings in force
    rejected: int
    dropped: int

    @property
    def pooled(self) -> SkabMetrics:
        return pooled(self.streams)


def evaluate_spec(
    spec: str,
    root: Path,
    pattern: str,
    model: Path,
    first: int = 0,
    alerting: Mapping[str, float] | None = None,
) -> SpecResult:
    """Backtests ``model`` on the streams of ``spec`` that match ``pattern``; ``alerting`` overrides keys of
    the daemon's ``alerting.fault`` section (else the model's calibrated settings and the defaults)."""
    if first < 0:
        raise UsageError(f"evaluate spec: --from {first}: give the first row to count, >= 0")
    chosen, _ = load_matching(spec, root, pattern, keep_gaps=True)
    if all(s.anomaly is None for s in chosen):
        raise DataError(
            f"no stream of {spec} matching {pattern!r} has anomaly labels: give the spec label_columns"
        )
    if all(len(s) <= first for s in chosen):
        raise UsageError(f"evaluate spec: --from {first}: no stream has a row from there on")
    report = trained(model, chosen[0].series.channels, "the recordings")
    # A stream without labels is a run known to be normal.
    labelled = [replace(s, anomaly=np.zeros(len(s), dtype=bool)) if s.anomaly is None else s for s in chosen]
    bt = backtest(report.model_path, labelled, alerting)
    lead = int(report.metadata.get("fault", {}).get("horizon_steps", 0))
    streams, faults = [], []
    for s in labelled:
        assert s.anomaly is not None
        result = bt.streams[s.series.name]
        streams.append(SkabStream(s, result, skab_metrics(result.firing[first:], s.anomaly[first:])))
        faults.append(meet(s.anomaly, result, first, lead))
    return SpecResult(streams, faults, bt.policy, bt.rejected, bt.dropped)


def meet(labels: BoolArray, result: StreamResult, first: int, lead: int) -> Faults:
    """How the alerts met each labelled fault that starts at or after ``first``. An alert that starts
    inside it, or within ``lead`` readings before it (not before ``first``, nor inside the fault before),
    detects it; an alert that started earlier and is still up during it is counted apart."""
    delays, already, counted, free_from = [], 0, 0, first
    for start, end in runs(labels):
        if start < first:
            free_from = max(free_from, end + 1)
            continue
        counted += 1
        since = max(start - lead, free_from)
        starts = np.flatnonzero(result.onsets[since : end + 1])
        if len(starts):
            delays.append(since + int(starts[0]) - start)
        elif result.firing[start : end + 1].any():
            already += 1
        free_from = end + 1
    return Faults(counted, delays, already)


def spec_summary(result: SpecResult, model: Path, first: int, command: str) -> str:
    rows: list[list[object]] = []
    for s, f in zip(result.streams, result.faults, strict=True):
        rows.append([s.labelled.series.name, *_counts(s.metrics), *_faults([f])])
    rows.append(["pooled", *_counts(result.pooled), *_faults(result.faults)])
    policy = result.policy
    return "\n\n".join(
        [
            f"## {model.name} on labelled recordings: pointwise, rows from {first} on",
            f"Command: `{command}`",
            "Prediction = the daemon's fault-alert state (firing = 1) per row. Alert settings in force: "
            f"threshold {policy.threshold:.4g}, fire after {policy.fire_after}, resolve after "
            f"{policy.resolve_after} under {policy.resolve_threshold:.4g}, cool-down {policy.cooldown_s:g} s "
            "(a cool-down hides faults that follow an alert within it). Readings the daemon path refused: "
            f"{result.rejected}; dropped: {result.dropped}. Rows before {first} are not counted: the rows "
            "a model was fitted and validated on belong there.",
            "A fault is a run of labelled rows from that row on; it is detected when an alert starts inside "
            "it (or within the fault head's horizon before it). Delay: median readings from the fault's "
            "first row to the alert's start, negative when early. 'already up': faults met only by an alert "
            "that started earlier.",
            table(["stream", "rows", "F1", "FAR %", "MAR %", "faults detected", "delay", "already up"], rows),
        ]
    )


def _counts(m: SkabMetrics) -> list[object]:
    """Rows counted, F1, FAR and MAR; '-' where a metric has nothing to count (no labelled or no normal
    rows), rather than a 0 that reads like a result."""
    rows = m.tp + m.fp + m.fn + m.tn
    labelled, normal = m.tp + m.fn, m.fp + m.tn
    return [
        rows,
        m.f1 if labelled else "-",
        m.far if normal else "-",
        m.mar if labelled else "-",
    ]


def _faults(faults: Sequence[Faults]) -> list[object]:
    delays = [d for f in faults for d in f.delays]
    detected = f"{len(delays)}/{sum(f.labelled for f in faults)}"
    delay = f"{float(np.median(delays)):g}" if delays else "-"
    return [detected, delay, sum(f.already_firing for f in faults)]
