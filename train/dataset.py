"""Loads any CSV layout described by a DatasetSpec into labelled, time-sorted, cleaned streams."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatch
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.errors import DataError
from train.dataset_spec import DatasetSpec, SpecError, load_spec, parse_spec, parse_time, shipped_specs
from train.series import Series

__all__ = ["DatasetSpec", "LabelledSeries", "LoadReport", "SpecError", "load_dataset", "load_matching"]
__all__ += ["load_spec"]
__all__ += ["parse_spec", "shipped_specs", "skab_split"]

SKIP_REASONS = ("columns", "timestamp", "value", "label", "stream")
"""Why a row is skipped: wrong column count, bad time, bad channel value, bad label, empty stream id."""

Window = tuple[float, float]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class LabelledSeries:
    """One stream (or gap-split segment) with its per-row labels and labelled windows (epoch seconds)."""

    series: Series
    anomaly: BoolArray | None
    changepoint: BoolArray | None
    windows: tuple[Window, ...]
    source: str

    def __len__(self) -> int:
        return len(self.series)

    def rows(self, start: int, stop: int) -> LabelledSeries:
        """Rows ``start:stop``, keeping the windows that overlap their time span."""
        s = self.series
        part = Series(s.name, s.ts[start:stop], s.values[start:stop], s.channels)
        return LabelledSeries(
            part,
            None if self.anomaly is None else self.anomaly[start:stop],
            None if self.changepoint is None else self.changepoint[start:stop],
            _overlapping(self.windows, part.ts),
            self.source,
        )


@dataclass(frozen=True)
class LoadReport:
    """What loading did: rows read and kept, rows skipped by reason, duplicates, reorders and gaps."""

    files: int
    rows_read: int
    rows_kept: int
    skipped: dict[str, int]
    duplicates: int
    reordered: int
    gaps: int
    gaps_split: int
    missing_windows: tuple[str, ...]
    first_skipped: dict[str, str] = field(default_factory=dict)  # reason -> "file:line" of its first row
    resampled: int = 0  # readings merged into others on the resample grid

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def describe(self) -> str:
        """One line for the person who wrote the spec: what was kept, and where each kind of skip began."""
        text = f"read {self.rows_read} rows from {self.files} files, kept {self.rows_kept}"
        reasons = [f"{n} ({r}; first at {self.first_skipped[r]})" for r, n in self.skipped.items() if n]
        if reasons:
            text += "; skipped " + ", ".join(reasons)
        extra = {
            "duplicate timestamps dropped": self.duplicates,
            "rows reordered": self.reordered,
            "readings merged by resampling": self.resampled,
            "gaps": self.gaps,
        }
        return text + "".join(f"; {n} {what}" for what, n in extra.items() if n)


@dataclass
class _Stream:
    ts: list[float] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    anomaly: list[bool | None] = field(default_factory=list)
    changepoint: list[bool | None] = field(default_factory=list)
    windows: set[Window] = field(default_factory=set)
    sources: list[str] = field(default_factory=list)


@dataclass
class _Counts:
    rows_read: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    duplicates: int = 0
    reordered: int = 0
    resampled: int = 0
    gaps: int = 0
    gaps_split: int = 0
    missing_windows: list[str] = field(default_factory=list)
    first_skipped: dict[str, str] = field(default_factory=dict)
    labels_seen: set[str] = field(default_factory=set)  # the spec's label columns found in some file


def load_matching(
    source: str, root: Path, pattern: str, keep_gaps: bool = False
) -> tuple[list[LabelledSeries], LoadReport]:
    """The streams of the spec ``source`` (a shipped name or a path) whose names match ``pattern``, sorted
    by name; DataError when no reading is left or no stream matches. ``keep_gaps``: each recorded stream
    whole, whatever the spec's gap policy (to replay it under the id it was recorded with)."""
    spec = load_spec(source)
    if keep_gaps:
        spec = replace(spec, gaps=replace(spec.gaps, policy="keep"))
    data, loaded = load_dataset(spec, root)
    if not data:
        raise DataError(
            f"no readings of {source} under {root} are left: {loaded.describe()}; check the spec's "
            "separator, timestamp.format and channels against the first skipped row"
        )
    chosen = sorted((s for s in data if fnmatch(s.series.name, pattern)), key=lambda s: s.series.name)
    if not chosen:
        raise DataError(f"no stream of {source} under {root} matches {pattern!r}; check --streams")
    return chosen, loaded


def load_dataset(spec: DatasetSpec, root: Path | str) -> tuple[tuple[LabelledSeries, ...], LoadReport]:
    """Every stream of ``spec`` under the data ``root``, sorted by time, de-duplicated and gap-handled.

    Bad rows are skipped and counted, never raised; a missing file, column or label file raises SpecError.
    """
    root = Path(root)
    files = spec.paths(root)
    table = _read_windows(spec, root)
    counts = _Counts()
    streams: dict[str, _Stream] = {}
    parse_time = spec.timestamp.parser()
    for path in files:
        _read_file(spec, root, path, parse_time, table, streams, counts)
    out: list[LabelledSeries] = []
    labels = spec.label_columns
    wanted = [c for c in (labels.anomaly, labels.changepoint) if c] if labels else []
    unseen = [c for c in wanted if c not in counts.labels_seen]
    if files and unseen:  # a file may lack them (a run known to be normal), but not every file
        raise SpecError(
            f"dataset {spec.name}: no file has the label column {unseen[0]!r}; check label_columns"
        )
    for name, stream in streams.items():
        out.extend(_finish(spec, name, stream, counts))
    report = LoadReport(
        files=len(files),
        rows_read=counts.rows_read,
        rows_kept=sum(len(s) for s in out),
        skipped=counts.skipped,
        duplicates=counts.duplicates,
        reordered=counts.reordered,
        gaps=counts.gaps,
        gaps_split=counts.gaps_split,
        missing_windows=tuple(counts.missing_windows),
        first_skipped=counts.first_skipped,
        resampled=counts.resampled,
    )
    return tuple(out), report


def skab_split(ls: LabelledSeries, first: int = 400) -> tuple[LabelledSeries, LabelledSeries]:
    """SKAB protocol: the first ``first`` rows train/calibrate (assumed normal), the rest is the test part."""
    if first < 0:
        raise ValueError(f"first must be >= 0, got {first}")
    return ls.rows(0, first), ls.rows(first, len(ls))


def _read_windows(spec: DatasetSpec, root: Path) -> dict[str, Any] | None:
    if spec.windows is None:
        return None
    path = root / spec.windows.path
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"dataset {spec.name}: windows file {path} cannot be read: {exc}") from exc
    if not isinstance(table, dict):
        raise SpecError(f"dataset {spec.name}: windows file {path} is not a mapping of key to windows")
    return table


def _read_file(
    spec: DatasetSpec,
    root: Path,
    path: Path,
    parse_time: Callable[[str], float | None],
    table: dict[str, Any] | None,
    streams: dict[str, _Stream],
    counts: _Counts,
) -> None:
    rel = path.relative_to(root)
    fields = {"stem": path.stem, "file": path.name, "category": rel.parent.name}
    fields["path"] = rel.with_suffix("").as_posix()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=spec.separator)
        header = [c.strip() for c in next(reader, [])]
        index = {name: i for i, name in enumerate(header)}
        key_column = None if spec.stream == "file" else spec.stream.column
        needed = [spec.timestamp.column, *spec.channel_columns, *([key_column] if key_column else [])]
        missing = [c for c in needed if c not in index]
        if missing:
            raise SpecError(f"dataset {spec.name}: {path} has no column {missing[0]!r} (header: {header})")
        t_at = index[spec.timestamp.column]
        v_at = [index[c] for c in spec.channel_columns]
        labels = spec.label_columns
        a_at = index.get(labels.anomaly) if labels and labels.anomaly else None
        c_at = index.get(labels.changepoint) if labels and labels.changepoint else None
        k_at = None if key_column is None else index[key_column]
        if labels:
            found = {labels.anomaly: a_at, labels.changepoint: c_at}
            counts.labels_seen |= {c for c, at in found.items() if c and at is not None}
        named: dict[str, _Stream] = {}
        for row in reader:
            if not row:
                continue  # a blank line is not a row
            counts.rows_read += 1
            reason, parsed = _parse_row(row, len(header), parse_time, t_at, v_at, a_at, c_at, k_at)
            if parsed is None:
                counts.skipped[reason] += 1
                counts.first_skipped.setdefault(reason, f"{path}:{reader.line_num}")
                continue
            ts, values, anomaly, changepoint, key = parsed
            stream = named.get(key)
            if stream is None:
                name = spec.name_template.format(**fields, key=key)
                stream = named[key] = streams.setdefault(name, _Stream())
                stream.sources.append(str(path))
                _attach_windows(spec, table, {**fields, "key": key}, stream, counts)
            stream.ts.append(ts)
            stream.values.append(values)
            stream.anomaly.append(anomaly)
            stream.changepoint.append(changepoint)


_Parsed = tuple[float, list[float], bool | None, bool | None, str]


def _parse_row(
    row: list[str],
    width: int,
    parse_time: Callable[[str], float | None],
    t_at: int,
    v_at: list[int],
    a_at: int | None,
    c_at: int | None,
    k_at: int | None,
) -> tuple[str, _Parsed | None]:
    if len(row) != width:
        return "columns", None
    ts = parse_time(row[t_at])
    if ts is None:
        return "timestamp", None
    values = [_number(row[i]) for i in v_at]
    if any(v is None for v in values):
        return "value", None
    flags: list[bool | None] = []
    for at in (a_at, c_at):
        flag = None if at is None else _number(row[at])
        if at is not None and flag is None:
            return "label", None
        flags.append(None if flag is None else flag != 0.0)
    key = "" if k_at is None else row[k_at].strip()
    if k_at is not None and not key:
        return "stream", None
    return "", (ts, [v for v in values if v is not None], flags[0], flags[1], key)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _attach_windows(
    spec: DatasetSpec, table: dict[str, Any] | None, fields: dict[str, str], stream: _Stream, counts: _Counts
) -> None:
    if spec.windows is None or table is None:
        return
    key = spec.windows.key.format(**fields)
    if key not in table:
        counts.missing_windows.append(key)
        return
    for pair in table[key]:
        times = [parse_time(str(t), "epoch" if isinstance(t, int | float) else "iso") for t in pair]
        if len(times) != 2 or times[0] is None or times[1] is None:
            raise SpecError(f"dataset {spec.name}: window {pair!r} of {key!r} is not a [start, end] pair")
        stream.windows.add((times[0], times[1]))


def _finish(spec: DatasetSpec, name: str, stream: _Stream, counts: _Counts) -> list[LabelledSeries]:
    ts = np.asarray(stream.ts, dtype=np.float64)
    counts.reordered += int(np.count_nonzero(ts < np.maximum.accumulate(ts)))
    order = np.argsort(ts, kind="stable")  # stable: of equal timestamps the first in the file comes first
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = np.diff(ts[order]) > 0
    counts.duplicates += int(np.count_nonzero(~keep))
    rows = order[keep]
    values = np.asarray(stream.values, dtype=np.float32).reshape(len(ts), len(spec.channels))[rows]
    whole = LabelledSeries(
        Series(name, ts[rows], values, spec.channel_names),
        _flags(stream.anomaly, rows),
        _flags(stream.changepoint, rows),
        tuple(sorted(stream.windows)),
        ", ".join(stream.sources),
    )
    if spec.resample.step_s is not None:
        gridded = _resampled(whole, spec.resample.step_s, spec.resample.how or "mean")
        counts.resampled += len(whole) - len(gridded)
        whole = gridded
    if spec.gaps.max_gap_s is None:
        return [whole]
    cuts = (np.flatnonzero(np.diff(whole.series.ts) > spec.gaps.max_gap_s) + 1).tolist()
    counts.gaps += len(cuts)
    if spec.gaps.policy == "keep" or not cuts:
        return [whole]
    counts.gaps_split += len(cuts)
    bounds = [0, *cuts, len(whole)]
    parts = [whole.rows(lo, hi) for lo, hi in pairwise(bounds)]
    return [
        replace(p, series=Series(f"{name}#{i}", p.series.ts, p.series.values, p.series.channels))
        for i, p in enumerate(parts)
    ]


def _resampled(whole: LabelledSeries, step_s: float, how: str) -> LabelledSeries:
    """``whole`` (sorted by time) with each step's readings made one, at the step's start; an empty step
    stays empty, a gap for the gap policy."""
    s = whole.series
    # in whole microseconds: ts / step_s in floats puts 0.6 s in the step of 0.4 s at a step of 0.2 s
    step_us = round(step_s * 1e6)
    steps = np.floor_divide(np.round(s.ts * 1e6).astype(np.int64), step_us)
    starts = np.flatnonzero(np.concatenate([[True], np.diff(steps) > 0]))
    if how == "mean":
        sizes = np.diff(np.append(starts, len(s)))[:, None]
        values = (np.add.reduceat(s.values.astype(np.float64), starts, axis=0) / sizes).astype(np.float32)
    else:
        values = s.values[np.append(starts[1:], len(s)) - 1]

    def any_of(flags: BoolArray | None) -> BoolArray | None:
        return None if flags is None else np.logical_or.reduceat(flags, starts)

    series = Series(s.name, steps[starts] * step_us / 1e6, values, s.channels)
    return LabelledSeries(
        series, any_of(whole.anomaly), any_of(whole.changepoint), whole.windows, whole.source
    )


def _flags(flags: list[bool | None], rows: npt.NDArray[np.intp]) -> BoolArray | None:
    if any(f is None for f in flags):
        return None  # some rows come from a file without the label column: the labels are unknown
    return np.asarray(flags, dtype=bool)[rows]


def _overlapping(windows: tuple[Window, ...], ts: npt.NDArray[np.float64]) -> tuple[Window, ...]:
    if len(ts) == 0:
        return ()
    return tuple(w for w in windows if w[1] >= ts[0] and w[0] <= ts[-1])
