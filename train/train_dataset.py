"""`faultcast train --spec`: one model for the streams of a dataset spec, fitted on each stream's head."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from daemon.errors import DataError
from train.dataset import load_matching
from train.fault import BoolArray, FaultSpec, fault_target
from train.fit import FitConfig
from train.pipeline import Segment, TrainReport, train_streams
from train.series import Series
from train.train_spec import TrainSpec


@dataclass(frozen=True)
class HeadSplit:
    """Each stream's first ``fit_rows`` readings are fitted; the last ``val_rows`` of them validate."""

    fit_rows: int
    val_rows: int


def head_parts(streams: Sequence[Series], split: HeadSplit) -> tuple[list[Series], list[Segment]]:
    """Each stream's first ``fit_rows``: the rows fitted, and the segment whose last ``val_rows`` validate."""
    fit_to = split.fit_rows - split.val_rows
    heads = [s.head(split.fit_rows) for s in streams]
    return [h.head(fit_to) for h in heads], [Segment(h, fit_to) for h in heads]


def _check_faults(fitted: list[BoolArray], validated: list[BoolArray], spec: FaultSpec) -> None:
    """A fault head learns, and its threshold is chosen, only from readings with a labelled fault ahead:
    heads of normal running have none, and a head that never fires would replace the anomaly score."""
    shortest = min(len(labels) for labels in (*fitted, *validated))
    if spec.horizon >= shortest:
        raise DataError(
            f"--fault-horizon {spec.horizon} must be shorter than the fitted and the validated rows "
            f"(the shorter has {shortest}): a reading's target is whether a fault starts in the next "
            f"{spec.horizon}, which those rows must hold"
        )
    found = [
        sum(int(fault_target(labels, spec.horizon)[0].sum()) for labels in part)
        for part in (fitted, validated)
    ]
    if not all(found):
        raise DataError(
            f"a fault head needs labelled faults within {spec.horizon} readings ahead in both the fitted and "
            f"the validated rows of the streams' heads; they hold {found[0]} and {found[1]} such readings: "
            "raise --fit-rows (and --val-rows) so that the heads include faults"
        )


def train_dataset(
    spec_source: str,
    root: Path,
    pattern: str,
    split: HeadSplit,
    spec: TrainSpec,
    config: FitConfig,
    out: Path,
    progress: bool = True,
) -> TrainReport:
    """Normalisation, fitting and calibration see only the heads; parity runs on the first stream's rest."""
    chosen, loaded = load_matching(spec_source, root, pattern)
    if progress:
        print(f"data: {loaded.describe()}", file=sys.stderr)
    streams = [s.series for s in chosen]
    fit_to = split.fit_rows - split.val_rows
    short = [s for s in streams if len(s) <= split.fit_rows]
    if fit_to < 64 or split.val_rows < 1 or short:
        found = f"; {short[0].name} has {len(short[0])}" if short else ""
        raise DataError(
            f"each stream needs more than --fit-rows {split.fit_rows} readings, of which at least 64 fit "
            f"and 1 validates (--val-rows {split.val_rows}){found}"
        )
    fitted, validated = head_parts(streams, split)
    labels = None
    if spec.fault is not None:
        unlabelled = [s.series.name for s in chosen if s.anomaly is None]
        if unlabelled:
            raise DataError(
                f"a fault head learns from anomaly labels, and stream {unlabelled[0]} has none; give the "
                "spec label_columns.anomaly, or pick labelled streams with --streams"
            )
        heads = [s.anomaly[: split.fit_rows] for s in chosen if s.anomaly is not None]
        labels = [h[:fit_to] for h in heads]
        validated = [replace(seg, labels=h) for seg, h in zip(validated, heads, strict=True)]
        _check_faults(labels, [h[fit_to:] for h in heads], spec.fault)
    return train_streams(
        fitted,
        validated,
        streams[0].rows(split.fit_rows, None),
        spec,
        config,
        out,
        progress,
        labels,
    )
