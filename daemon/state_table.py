"""Every live stream's recurrent state in one contiguous array per model, a slot per stream.

Slots of idle streams are recycled; the array grows by doubling, never per stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import itemgetter

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class SlotMap:
    """Stream id <-> slot bookkeeping, shared by the CPU and device tables. Calls take whole waves.

    A dict from id to slot, so that a wave's lookup is one C call. A numpy open-addressing map with the
    ids in one byte buffer was tried: it held 46 B per stream instead of about 160 B, but looked a
    wave of 1,000 streams up 25x slower than the dict (docs/benchmarks.md).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._slots: dict[str, int] = {}
        self._streams: list[str | None] = [None] * capacity
        self._used = np.zeros(capacity, dtype=bool)
        self._free_from = 0  # no free slot below this one
        self.last_ts = np.full(capacity, -np.inf)
        self.partition = np.full(capacity, -1, dtype=np.int32)  # the Kafka partition the stream arrives on
        # The last wave assigned and its slots. Streams that report periodically come in the same order
        # wave after wave, and comparing a wave with the last one costs a fraction of looking every id up
        # again (0.1-1.9 ms against 13 ms for 100,000 streams: the dict's entries are scattered in memory).
        self._last_wave: list[str] = []
        self._last_slots: IntArray = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, stream: str) -> bool:
        return stream in self._slots

    def get(self, stream: str) -> int | None:
        return self._slots.get(stream)

    def find(self, streams: Sequence[str]) -> IntArray:
        """The slot of each of ``streams``, -1 for those without one."""
        if len(streams) > 1:
            try:
                # Every stream known, as in a steady state: itemgetter looks them all up in one C loop,
                # 1.5-1.7x as fast as mapping dict.get with a default.
                found = itemgetter(*streams)(self._slots)
                return np.fromiter(found, dtype=np.int64, count=len(streams))
            except KeyError:
                pass
        return np.fromiter(map(self._slots.get, streams, repeat(-1)), dtype=np.int64, count=len(streams))

    def streams(self) -> dict[str, int]:
        return dict(self._slots)

    def assign(self, streams: Sequence[str]) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """The slots of ``streams`` (distinct) and which of them are new (the table must zero those)."""
        if len(streams) > 1 and streams == self._last_wave:  # no slot was released since: still right
            return self._last_slots.copy(), np.zeros(len(streams), dtype=bool)
        slots = self.find(streams)
        fresh = slots < 0
        if fresh.any():
            new = np.flatnonzero(fresh)
            slots[new] = self._take(len(new))
            for i, slot in zip(new.tolist(), slots[new].tolist(), strict=True):
                self._slots[streams[i]] = slot
                self._streams[slot] = streams[i]
        self._last_wave, self._last_slots = list(streams), slots.copy()
        return slots, fresh

    def release(self, streams: Sequence[str]) -> IntArray:
        """Frees the slots of ``streams`` (distinct, all known: KeyError otherwise, and nothing freed)."""
        slots = self.find(streams)
        if len(slots) and slots.min() < 0:
            raise KeyError(streams[int(np.argmin(slots))])
        self._last_wave = []  # it may name a stream released here
        for stream, slot in zip(streams, slots.tolist(), strict=True):
            del self._slots[stream]
            self._streams[slot] = None
        self._used[slots] = False
        self.last_ts[slots] = -np.inf
        self.partition[slots] = -1
        if len(slots):
            self._free_from = min(self._free_from, int(slots.min()))
        return slots

    def idle_since(self, cutoff: float) -> list[str]:
        """Streams whose last reading is older than ``cutoff`` (event time)."""
        return self._named(np.flatnonzero((self.last_ts < cutoff) & self._used))

    def on_partitions(self, partitions: set[int]) -> list[str]:
        """Streams last seen on one of ``partitions``."""
        return self._named(np.flatnonzero(np.isin(self.partition, list(partitions)) & self._used))

    def _named(self, slots: IntArray) -> list[str]:
        return [s for s in map(self._streams.__getitem__, slots.tolist()) if s is not None]

    def _take(self, n: int) -> IntArray:
        """``n`` free slots, lowest first: streams that first come in order get consecutive slots."""
        while len(self._slots) + n > self.capacity:
            self._grow()
        # Search a window after the lowest free slot, widened as needed, not the whole table.
        window = 2 * n
        while True:
            free = np.flatnonzero(~self._used[self._free_from : self._free_from + window])
            if len(free) >= n:
                break
            window *= 4
        slots = (free[:n] + self._free_from).astype(np.int64)
        self._used[slots] = True
        self._free_from = int(slots[-1]) + 1
        return slots

    def _grow(self) -> None:
        old = self.capacity
        self.capacity = old * 2
        self._streams.extend([None] * old)
        self._used = np.concatenate([self._used, np.zeros(old, dtype=bool)])
        self.last_ts = np.concatenate([self.last_ts, np.full(old, -np.inf)])
        self.partition = np.concatenate([self.partition, np.full(old, -1, dtype=np.int32)])


class StateTable:
    """Recurrent state of every live stream of one model, on the host."""

    device = "cpu"

    def __init__(self, width: int, capacity: int) -> None:
        self.width = width
        self.slots = SlotMap(capacity)
        self._data: FloatArray = np.zeros((capacity, width), dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def assign(self, streams: list[str]) -> IntArray:
        """Slots for ``streams`` (distinct), allocating zeroed (cold) state for new ones."""
        slots, fresh = self.slots.assign(streams)
        if self.slots.capacity != self._data.shape[0]:
            grown = np.zeros((self.slots.capacity, self.width), dtype=np.float32)
            grown[: self._data.shape[0]] = self._data
            self._data = grown
        if fresh.any():
            self._data[slots[fresh]] = 0.0
        return slots

    def gather(self, slots: IntArray) -> FloatArray:
        return np.take(self._data, slots, axis=0)

    def scatter(self, slots: IntArray, state: FloatArray) -> None:
        self._data[slots] = state

    def run_of(self, slots: IntArray) -> slice | None:
        """The rows as one slice when ``slots`` are consecutive and ascending (streams that keep arriving
        in the order they first came), so a wave can read and write them without fancy indexing."""
        if len(slots) and slots[-1] - slots[0] == len(slots) - 1 and np.all(np.diff(slots) == 1):
            return slice(int(slots[0]), int(slots[-1]) + 1)
        return None

    def view(self, rows: slice) -> FloatArray:
        return self._data[rows]

    def reshape(self, width: int) -> None:
        """Every stream's state becomes cold, ``width`` wide; slots and timestamps stay."""
        self.width = width
        self._data = np.zeros((self.slots.capacity, width), dtype=np.float32)

    def evict(self, streams: list[str]) -> None:
        self.slots.release(streams)
