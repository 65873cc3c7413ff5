"""NAB scoring: load profiles, windows and detector outputs; score, sweep, normalise; write NAB CSVs."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from train.nab_sweep import (
    PROBATION_PERCENT,
    CostMatrix,
    ThresholdScore,
    Window,
    best_row,
    row_at_threshold,
    scaled_sigmoid,
    scores_by_threshold,
    sweep_points,
)

__all__ = [
    "REWARD_LOW_FN_RATE",
    "REWARD_LOW_FP_RATE",
    "STANDARD",
    "STANDARD_PROFILES",
    "CostMatrix",
    "DetectorOutput",
    "LabelledFile",
    "Profile",
    "ScoresRow",
    "ThresholdScore",
    "Window",
    "load_detector_output",
    "load_profiles",
    "load_windows",
    "normalise",
    "normalised_over",
    "normalised_score",
    "null_score",
    "perfect_score",
    "read_scores_csv",
    "row_scores",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
    "sweep",
    "write_results_csv",
    "write_scores_csv",
]

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
SCORES_HEADER = ("Detector", "Profile", "File", "Threshold", "Score", "TP", "TN", "FP", "FN", "Total_Count")


@dataclass(frozen=True)
class Profile:
    """A named NAB application profile."""

    name: str
    costs: CostMatrix


# Values of upstream ``config/profiles.json`` (commit ea702d75), in its key order, which is also the
# order in which upstream appends the ``S(t)_<profile>`` columns.
STANDARD = Profile("standard", CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0))
REWARD_LOW_FP_RATE = Profile("reward_low_FP_rate", CostMatrix(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0))
REWARD_LOW_FN_RATE = Profile("reward_low_FN_rate", CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0))
STANDARD_PROFILES: tuple[Profile, ...] = (STANDARD, REWARD_LOW_FP_RATE, REWARD_LOW_FN_RATE)


@dataclass(frozen=True)
class DetectorOutput:
    """The ``timestamp,value,anomaly_score`` columns of a per-row detector output CSV."""

    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]
    anomaly_scores: tuple[float, ...]


@dataclass(frozen=True)
class LabelledFile:
    """One file's detector scores and windows; ``name`` is its corpus path (``realKnownCause/x.csv``)."""

    name: str
    timestamps: tuple[datetime, ...]
    anomaly_scores: tuple[float, ...]
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class ScoresRow:
    """One file row of NAB's ``<detector>_<profile>_scores.csv``."""

    detector: str
    profile: str
    file: str
    result: ThresholdScore
    total_count: int


def load_profiles(path: Path) -> dict[str, Profile]:
    """Profiles from a NAB ``config/profiles.json``, in file order."""
    raw = json.loads(path.read_text())
    out: dict[str, Profile] = {}
    for name, body in raw.items():
        m = body["CostMatrix"]
        costs = CostMatrix(
            tp_weight=float(m["tpWeight"]),
            fp_weight=float(m["fpWeight"]),
            fn_weight=float(m["fnWeight"]),
            tn_weight=float(m.get("tnWeight", 1.0)),
        )
        out[name] = Profile(name, costs)
    return out


def load_windows(path: Path) -> dict[str, tuple[Window, ...]]:
    """Windows from a NAB ``labels/combined_windows.json``, keyed by corpus path."""
    raw: dict[str, list[list[str]]] = json.loads(path.read_text())
    return {
        name: tuple((datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in limits)
        for name, limits in raw.items()
    }


def load_detector_output(path: Path) -> DetectorOutput:
    """Read a per-row detector CSV (``timestamp,value,anomaly_score,...``; other columns are ignored)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return DetectorOutput(
        timestamps=tuple(datetime.fromisoformat(r["timestamp"]) for r in rows),
        values=tuple(float(r["value"]) for r in rows),
        anomaly_scores=tuple(float(r["anomaly_score"]) for r in rows),
    )


def score_file(
    timestamps: Sequence[datetime],
    anomaly_scores: Sequence[float],
    windows: Sequence[Window],
    profile: Profile,
    threshold: float,
    probation_percent: float = PROBATION_PERCENT,
) -> ThresholdScore:
    """Raw NAB score and TP/TN/FP/FN of one file at ``threshold`` (one row of NAB's ``_scores.csv``)."""
    # Sweeping every threshold then picking one is what upstream does; a direct evaluation would
    # add the FP terms in a different order and drift in the last bits.
    points = sweep_points(timestamps, anomaly_scores, windows, profile.costs, "file", probation_percent)
    return row_at_threshold(scores_by_threshold(points, profile.costs), threshold)


def row_scores(
    timestamps: Sequence[datetime],
    anomaly_scores: Sequence[float],
    windows: Sequence[Window],
    profile: Profile,
    probation_percent: float = PROBATION_PERCENT,
) -> tuple[float, ...]:
    """Per-row ``S(t)_<profile>``: the weighted reward (in a window) or penalty a detection there carries."""
    points = sweep_points(timestamps, anomaly_scores, windows, profile.costs, "file", probation_percent)
    return tuple(p.sweep_score for p in points)


def score_corpus(
    files: Sequence[LabelledFile],
    profile: Profile,
    threshold: float,
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, ThresholdScore]:
    """``score_file`` for every file, keyed by file name."""
    return {
        f.name: score_file(f.timestamps, f.anomaly_scores, f.windows, profile, threshold, probation_percent)
        for f in files
    }


def sweep(
    files: Sequence[LabelledFile],
    profile: Profile,
    probation_percent: float = PROBATION_PERCENT,
) -> ThresholdScore:
    """NAB's optimiser over the pooled ``files``: best total raw score, ties to the higher threshold."""
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        raise ValueError("file names must be unique: they key the windows when files are pooled")
    points = [
        p
        for f in files
        for p in sweep_points(
            f.timestamps, f.anomaly_scores, f.windows, profile.costs, f.name, probation_percent
        )
    ]
    return best_row(scores_by_threshold(points, profile.costs))


def null_score(num_windows: int, profile: Profile) -> float:
    """Raw score of NAB's null detector: it never alarms, so every window is a miss and no FP occur."""
    return -profile.costs.fn_weight * num_windows


def perfect_score(num_windows: int, profile: Profile) -> float:
    """Raw score of a detector alarming exactly on each window's first row (upstream's ``perfect``)."""
    return profile.costs.tp_weight * num_windows


def normalise(raw: float, null: float, perfect: float) -> float:
    """NAB's normalised score ``100 * (raw - null) / (perfect - null)`` (upstream ``Runner.normalize``)."""
    return 100.0 * (raw - null) / (perfect - null)


def normalised_score(raw_total: float, files: Sequence[LabelledFile], profile: Profile) -> float:
    """Normalise a raw total over ``files`` against the null and perfect detectors of those files."""
    return normalised_over(raw_total, sum(len(f.windows) for f in files), profile)


def normalised_over(raw_total: float, num_windows: int, profile: Profile) -> float:
    """Normalise a raw total against the null and perfect detectors of files with ``num_windows``."""
    return normalise(raw_total, null_score(num_windows, profile), perfect_score(num_windows, profile))


def write_results_csv(
    path: Path,
    output: DetectorOutput,
    windows: Sequence[Window],
    profiles: Sequence[Profile] = STANDARD_PROFILES,
    probation_percent: float = PROBATION_PERCENT,
) -> None:
    """Write NAB's per-row results layout: ``timestamp,value,anomaly_score,label,S(t)_<profile>...``."""
    # NAB labels every row inside a window, probation included (upstream ``CorpusLabel.getLabels``).
    labels = [int(any(a <= ts <= b for a, b in windows)) for ts in output.timestamps]
    columns = [
        row_scores(output.timestamps, output.anomaly_scores, windows, p, probation_percent) for p in profiles
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(
            ["timestamp", "value", "anomaly_score", "label", *(f"S(t)_{p.name}" for p in profiles)]
        )
        for i, ts in enumerate(output.timestamps):
            writer.writerow(
                [
                    ts.strftime(TIMESTAMP_FORMAT),
                    repr(output.values[i]),
                    repr(output.anomaly_scores[i]),
                    labels[i],
                    *(repr(c[i]) for c in columns),
                ]
            )


def write_scores_csv(path: Path, detector: str, profile: str, results: Mapping[str, ThresholdScore]) -> None:
    """Write NAB's ``<detector>_<profile>_scores.csv``: one row per file, then a ``Totals`` row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(SCORES_HEADER)
        for name, r in results.items():
            counts = [r.tp, r.tn, r.fp, r.fn, r.total_count]
            writer.writerow([detector, profile, name, repr(r.threshold), repr(r.score), *counts])
        rs = list(results.values())
        totals = [sum(getattr(r, k) for r in rs) for k in ("tp", "tn", "fp", "fn", "total_count")]
        # Upstream's pandas writes the None detector/profile/file/threshold cells as empty fields.
        writer.writerow(["Totals", "", "", "", repr(sum(r.score for r in rs)), *totals])


def read_scores_csv(path: Path) -> list[ScoresRow]:
    """Per-file rows of a NAB ``_scores.csv`` (the ``Totals`` row is dropped)."""
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Detector"] != "Totals"]
    return [
        ScoresRow(
            detector=r["Detector"],
            profile=r["Profile"],
            file=r["File"],
            result=ThresholdScore(
                threshold=float(r["Threshold"]),
                score=float(r["Score"]),
                tp=int(r["TP"]),
                tn=int(r["TN"]),
                fp=int(r["FP"]),
                fn=int(r["FN"]),
            ),
            # Older upstream runs wrote the file length here, newer ones the scored rows.
            total_count=int(r["Total_Count"]),
        )
        for r in rows
    ]
