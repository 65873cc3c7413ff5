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
from daemon.engine import HostEngine
from daemon.errors import DataError, UsageError
from daemon.runtime import ModelRuntime
from train.backtest import StreamResult, backtest, config_for
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
    labelled = [
        s if s.anomaly is not None else replace(s, anomaly=np.zeros(len(s), dtype=bool)) for s in chosen
    ]
    bt = backtest(report.model_path, labelled, alerting)
    runtime = ModelRuntime(
        "evaluate", HostEngine(report.model_path, 4), config_for(report.model_path, alerting)
    )
    lead = int(report.metadata.get("fault", {}).get("horizon_steps", 0))
    streams, faults = [], []
    for s in labelled:
        assert s.anomaly is not None
        result = bt.streams[s.series.name]
        streams.append(SkabStream(s, result, skab_metrics(result.firing[first:], s.anomaly[first:])))
        faults.append(meet(s.anomaly, result, first, lead))
    return SpecResult(streams, faults, runtime.kinds["fault"].policy, bt.rejected, bt.dropped)


def meet(labels: BoolArray, result: StreamResult, first: int, lead: int) -> Faults:
    """How the alerts met each labelled fault that starts at or after ``first``: an alert that starts
    within ``lead`` readings before it or inside it detects it."""
    delays, already, counted = [], 0, 0
    for start, end in runs(labels):
        if start < first:
            continue
        counted += 1
        since = max(start - lead, 0)
        starts = np.flatnonzero(result.onsets[since : end + 1])
        if len(starts):
            delays.append(since + int(starts[0]) - start)
        elif result.firing[since : end + 1].any():
            already += 1
    return Faults(counted, delays, already)


def spec_summary(result: SpecResult, model: Path, first: int, command: str) -> str:
    rows: list[list[object]] = []
    for s, f in zip(result.streams, result.faults, strict=True):
        m, counted = s.metrics, max(len(s.labelled) - first, 0)
        rows.append([s.labelled.series.name, counted, m.f1, m.far, m.mar, *_faults([f])])
    p = result.pooled
    counted = sum(max(len(s.labelled) - first, 0) for s in result.streams)
    rows.append(["pooled", counted, p.f1, p.far, p.mar, *_faults(result.faults)])
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


def _faults(faults: Sequence[Faults]) -> list[object]:
    delays = [d for f in faults for d in f.delays]
    detected = f"{len(delays)}/{sum(f.labelled for f in faults)}"
    delay = f"{float(np.median(delays)):g}" if delays else "-"
    return [detected, delay, sum(f.already_firing for f in faults)]
