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
    """A NAB data file as a one-channel series named after the file."""
    ts: list[float] = []
    values: list[float] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            ts.append(parse_nab_time(row["timestamp"]))
            values.append(float(row["value"]))
    return Series(path.stem, np.asarray(ts), np.asarray(values, dtype=np.float32)[:, None], (channel,))


def load_nab_windows(path: Path, key: str) -> list[tuple[float, float]]:
    """The labelled windows of one file, ``key`` as in NAB (``realKnownCause/<file>.csv``), epoch seconds."""
    windows = json.loads(path.read_text(encoding="utf-8"))[key]
    return [(parse_nab_time(start), parse_nab_time(end)) for start, end in windows]
