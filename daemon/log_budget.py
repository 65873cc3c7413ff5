"""Per-kind budgets for log lines that come one per record.

A misconfigured producer can send thousands of bad records a second. One journal line each would bury
everything else, and journald drops a unit's lines beyond its rate limit, errors included. The counters
in /metrics keep the totals; the log keeps a sample of each kind, with offsets, and says what it held
back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    start: float
    lines: int = 0
    held: int = 0


class LogBudget:
    """At most ``lines`` lines per key in each ``window_s``-second window (from the key's first line)."""

    def __init__(self, lines: int = 10, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.lines = lines
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._ended: dict[str, int] = {}

    def allow(self, key: str) -> bool:
        """Whether one more line of ``key`` may be logged now; if not, it is counted as held back."""
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window.start >= self.window_s:
            if window is not None:
                self._settle(key, window)
            window = self._windows[key] = _Window(now)
        window.lines += 1
        if window.lines <= self.lines:
            return True
        window.held += 1
        return False

    def held_back(self, final: bool = False) -> dict[str, int]:
        """Lines held back in windows that are over (``final``: in every window), by key; each count is
        reported once."""
        now = self._clock()
        for key, window in self._windows.items():
            if final or now - window.start >= self.window_s:
                self._settle(key, window)
        ended, self._ended = self._ended, {}
        return ended

    def _settle(self, key: str, window: _Window) -> None:
        """Moves what ``window`` held back to the counts owed for ``key``."""
        if window.held:
            self._ended[key] = self._ended.get(key, 0) + window.held
            window.held = 0
