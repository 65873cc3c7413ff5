"""Loads NAB-style CSV series (``timestamp,value``) and their labelled windows."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from daemon.errors import DataError


@dataclass(frozen=True)
class Series:
    """One stream's recorded readings: ``values[t, f]`` at ``ts[t]`` (epoch seconds)."""

    name: str
    ts: npt.NDArray[np.float64]
    values: npt.NDArray[np.float32]
    channels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def head(self, n: int) -> Series:
        return self.rows(0, n)

    def rows(self, start: int | None, stop: int | None) -> Series:
        return Series(self.name, self.ts[start:stop], self.values[start:stop], self.channels)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.ts.tobytes() + self.values.tobytes() + "\0".join(self.channels).encode())
        return digest.hexdigest()


def parse_nab_time(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def load_nab_csv(path: Path, channel: str = "value") -> Series:
    """A NAB data file as a one-channel series named after the file; DataError names what is wrong."""
    ts: list[float] = []
    values: list[float] = []
    try:
        handle = path.open(newline="", encoding="utf-8-sig")  # a byte-order mark is skipped
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc.strerror})") from exc
    with handle:
        reader = csv.DictReader(handle)
        try:
            if reader.fieldnames is None or not {"timestamp", "value"} <= set(reader.fieldnames):
                raise DataError(
                    f"{path}: expected a comma-separated header 'timestamp,value' (NAB's layout), got "
                    f"{reader.fieldnames}; for other layouts write a dataset spec (docs/dataset-spec.md) "
                    "and use --spec"
                )
            for row in reader:
                try:
                    ts.append(parse_nab_time(row["timestamp"]))
                    values.append(float(row["value"]))
                except (ValueError, TypeError) as exc:
                    raise DataError(
                        f"{path}:{reader.line_num}: {exc}; expected an ISO-8601 timestamp and a number"
                    ) from exc
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    return Series(path.stem, np.asarray(ts), np.asarray(values, dtype=np.float32)[:, None], (channel,))


def load_nab_windows(path: Path, key: str) -> list[tuple[float, float]]:
    """The labelled windows of one file, ``key`` as in NAB (``realKnownCause/<file>.csv``), epoch seconds."""
    windows = json.loads(path.read_text(encoding="utf-8"))[key]
    return [(parse_nab_time(start), parse_nab_time(end)) for start, end in windows]
