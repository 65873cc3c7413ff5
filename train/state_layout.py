"""Where each part of a stream's state sits in the step model's state row, and its description in metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StateLayout:
    hidden: int
    layers: int
    tensors: int  # 2 for LSTM (h, c), 1 for GRU/RNN
    features: int
    spread: bool = False  # a per-stream error spread (ScoreParams.scale_floor)
    adapt: bool = False  # a per-stream moving mean and variance of the score (ScoreParams.adapt)
    peak: bool = False  # a per-stream decaying peak of the score (ScoreParams.peak_half_life)
    range: bool = False  # per-stream lowest and highest readings (ScoreParams.range_tolerance)
    season_ring: int = 0  # blocks kept for the season check (ScoreParams.season_ring); 0: off
    # readings a block (ScoreParams.season_block): a ring of other blocks means other state, and the
    # daemon keeps state over a reload only where the layouts are equal
    season_block: int = 0
    # the range held lately and the readings until the next creep (ScoreParams.range_creep)
    creep: bool = False

    @property
    def base(self) -> int:
        return self.tensors * self.layers * self.hidden

    @property
    def pred(self) -> int:
        return self.base + self.features

    @property
    def level(self) -> int:
        return self.pred + self.features

    @property
    def steps(self) -> int:
        return self.level + 1

    @property
    def width(self) -> int:
        return self.shares_at + self.features

    @property
    def creep_at(self) -> int:
        return self.range_at + 2 * self.features * self.range

    @property
    def season_at(self) -> int:
        return self.creep_at + sum(size for _, size in self._creep_sizes())

    @property
    def shares_at(self) -> int:
        return self.season_at + sum(size for _, size in self._season_sizes())

    @property
    def adapt_at(self) -> int:
        return self.steps + 1 + self.spread

    @property
    def peak_at(self) -> int:
        return self.adapt_at + 2 * self.adapt

    @property
    def range_at(self) -> int:
        return self.peak_at + self.peak

    def describe(self) -> list[dict[str, Any]]:
        names = ["h", "c"][: self.tensors]
        size = self.layers * self.hidden
        parts = [{"name": n, "offset": i * size, "size": size} for i, n in enumerate(names)]
        return [
            *parts,
            {"name": "base", "offset": self.base, "size": self.features},
            {"name": "pred", "offset": self.pred, "size": self.features},
            {"name": "level", "offset": self.level, "size": 1},
            {"name": "steps", "offset": self.steps, "size": 1},
            *([{"name": "spread", "offset": self.steps + 1, "size": 1}] if self.spread else []),
            *(
                [
                    {"name": "score_mean", "offset": self.adapt_at, "size": 1},
                    {"name": "score_var", "offset": self.adapt_at + 1, "size": 1},
                ]
                if self.adapt
                else []
            ),
            *([{"name": "score_peak", "offset": self.peak_at, "size": 1}] if self.peak else []),
            *(
                [
                    {"name": "range_low", "offset": self.range_at, "size": self.features},
                    {"name": "range_high", "offset": self.range_at + self.features, "size": self.features},
                ]
                if self.range
                else []
            ),
            *_entries(self.creep_at, self._creep_sizes()),
            *self._season(),
            {"name": "channel_level", "offset": self.shares_at, "size": self.features},
        ]

    def span(self, name: str) -> tuple[int, int]:
        """The state columns of the part ``name``: its first one, and the one after its last."""
        part = next(p for p in self.describe() if p["name"] == name)
        return part["offset"], part["offset"] + part["size"]

    def _creep_sizes(self) -> list[tuple[str, int]]:
        """The creep check's parts in state order (none when it is off)."""
        if not self.creep:
            return []
        return [("creep_low_gap", self.features), ("creep_high_gap", self.features), ("creep_wait", 1)]

    def _season_sizes(self) -> list[tuple[str, int]]:
        """The season check's parts in state order (none when it is off)."""
        if not self.season_ring:
            return []
        f, ring = self.features, self.season_ring
        singles = ("season_mean", "season_var", "season_seen", "season_peak", "season_held")
        return [
            ("season_phase", 1),
            ("season_sum", f),
            ("season_blocks", 1),
            ("season_ring", f * ring),
            *((name, 1) for name in singles),
        ]

    def _season(self) -> list[dict[str, Any]]:
        out = _entries(self.season_at, self._season_sizes())
        for part in out:
            if part["name"] == "season_ring":
                part["block"] = self.season_block
        return out


def _entries(at: int, sizes: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """The description of parts of these sizes laid end to end from the column ``at``."""
    out = []
    for name, size in sizes:
        out.append({"name": name, "offset": at, "size": size})
        at += size
    return out
