"""Every live stream's recurrent state in one contiguous array per model, a slot per stream.

Slots of idle streams are recycled; the array grows by doubling, never per stream.
"""

from __future__ import annotations

from operator import itemgetter

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class SlotMap:
    """Stream id <-> slot bookkeeping, shared by the CPU and device tables."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._slots: dict[str, int] = {}
        self._streams: list[str | None] = [None] * capacity
        self._free: list[int] = list(range(capacity - 1, -1, -1))
        self.last_ts = np.full(capacity, -np.inf)
        self.partition = np.full(capacity, -1, dtype=np.int32)  # the Kafka partition the stream arrives on

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, stream: str) -> bool:
        return stream in self._slots

    def get(self, stream: str) -> int | None:
        return self._slots.get(stream)

    def lookup(self, streams: list[str]) -> IntArray:
        """The slots of ``streams``, all known (KeyError otherwise)."""
        if len(streams) == 1:
            return np.array([self._slots[streams[0]]], dtype=np.int64)
        return np.fromiter(itemgetter(*streams)(self._slots), dtype=np.int64, count=len(streams))

    def streams(self) -> dict[str, int]:
        return dict(self._slots)

    def assign(self, stream: str) -> tuple[int, bool]:
        """The stream's slot and whether it is new (a new slot must be zeroed by the table)."""
        slot = self._slots.get(stream)
        if slot is not None:
            return slot, False
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._slots[stream] = slot
        self._streams[slot] = stream
        return slot, True

    def release(self, stream: str) -> int:
        slot = self._slots.pop(stream)
        self._streams[slot] = None
        self.last_ts[slot] = -np.inf
        self.partition[slot] = -1
        self._free.append(slot)
        return slot

    def idle_since(self, cutoff: float) -> list[str]:
        """Streams whose last reading is older than ``cutoff`` (event time)."""
        idle = np.flatnonzero(self.last_ts < cutoff)
        return self._named(idle)

    def on_partitions(self, partitions: set[int]) -> list[str]:
        """Streams last seen on one of ``partitions``."""
        return self._named(np.flatnonzero(np.isin(self.partition, list(partitions))))

    def _named(self, slots: IntArray) -> list[str]:
        return [s for s in (self._streams[i] for i in slots) if s is not None]

    def _grow(self) -> None:
        old = self.capacity
        self.capacity = old * 2
        self._streams.extend([None] * old)
        self._free.extend(range(self.capacity - 1, old - 1, -1))
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
        try:  # the steady state: every stream already has a slot
            return self.slots.lookup(streams)
        except KeyError:
            pass
        slots = np.empty(len(streams), dtype=np.int64)
        fresh = []
        for i, stream in enumerate(streams):
            slots[i], new = self.slots.assign(stream)
            if new:
                fresh.append(slots[i])
        if self.slots.capacity != self._data.shape[0]:
            grown = np.zeros((self.slots.capacity, self.width), dtype=np.float32)
            grown[: self._data.shape[0]] = self._data
            self._data = grown
        if fresh:
            self._data[fresh] = 0.0
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

    def evict(self, stream: str) -> None:
        self.slots.release(stream)
