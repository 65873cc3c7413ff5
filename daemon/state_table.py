"""Every live stream's recurrent state in one contiguous array per model, a slot per stream.

Slots of idle streams are recycled; the array grows by doubling, never per stream.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


EMPTY, GONE = -1, -2  # index buckets never used, and those of released streams (probes go on past them)
NARROW_OFFSETS = 2**32 - 1  # the largest id buffer 4-byte offsets address
COMPACT_SLOTS = 65_536  # ids moved per step of a compaction, to bound its temporaries


def _pages(shape: int | tuple[int, ...], dtype: npt.DTypeLike, fill: float = 0) -> npt.NDArray[Any]:
    """A zeroed (or ``fill``-ed) array in pages of its own (an anonymous mapping), outside the malloc heap.

    The tables live for the whole run and are replaced when they double. In the heap they would leave
    holes there that the polls' temporaries then keep resident, and they would raise glibc's
    thresholds for returning memory (docs/benchmarks.md). Untouched pages cost nothing.
    """
    dims = (shape,) if isinstance(shape, int) else shape
    count = int(np.prod(dims))
    array = np.frombuffer(_mapping(count * np.dtype(dtype).itemsize), dtype=dtype, count=count)
    if fill:
        array.fill(fill)
    return array.reshape(dims)


def _mapping(size: int) -> mmap.mmap:
    """``size`` zeroed bytes of anonymous memory, private to this process (a fork copies, never shares)."""
    return mmap.mmap(-1, max(1, size), flags=mmap.MAP_PRIVATE)


def _grown(array: npt.NDArray[Any], rows: int, fill: float = 0) -> npt.NDArray[Any]:
    """``array`` grown to ``rows`` rows, the new ones ``fill``-ed."""
    grown = _pages((rows, *array.shape[1:]), array.dtype)
    grown[: len(array)] = array
    if fill:
        grown[len(array) :] = fill
    return grown


def _index_size(capacity: int) -> int:
    """Buckets for ``capacity`` slots: a power of two at least twice as many, so that probes stay short."""
    return 1 << max(3, (2 * capacity - 1).bit_length())


def _utf8(stream: str) -> bytes:
    """The id's bytes; lone surrogates (a str can hold them) pass through, so every id can be stored."""
    return stream.encode("utf-8", "surrogatepass")


def _hashes(streams: Sequence[str]) -> npt.NDArray[np.uint32]:
    """The low 32 bits of each id's ``hash()``: enough to pick a bucket and to pass over most others."""
    return np.fromiter(map(hash, streams), dtype=np.int64, count=len(streams)).astype(np.uint32)


class SlotMap:
    """Stream id <-> slot bookkeeping, shared by the CPU and device tables. Calls take whole waves.

    No Python object per stream: the ids are UTF-8 in one byte buffer, found through an open-addressing
    index on their ``hash()`` (triangular probing), and every match is confirmed byte for byte. A live
    stream costs about 43 B beside its state at 1M streams; a dict from id to slot cost about 185 B (the
    id string, its entry, the slot's int object). A wave's lookup costs more than the dict's (0.3-0.4 us
    a stream against 0.06-0.16), which the last-wave shortcut below avoids for periodic streams.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._count = 0
        self._used = _pages(capacity, bool)
        self._free_from = 0  # no free slot below this one
        self.last_ts = _pages(capacity, np.float64, -np.inf)
        self.partition = _pages(capacity, np.int32, -1)  # the Kafka partition the stream arrives on
        self._hash = _pages(capacity, np.uint32)  # of each slot's id
        # Where the id's bytes begin in the buffer: 4 bytes a stream until the buffer outgrows them.
        self._start: npt.NDArray[np.uint32 | np.int64] = _pages(capacity, np.uint32)
        self._size = _pages(capacity, np.int32)
        self._ids = _mapping(16 * capacity)  # the ids' UTF-8 bytes end to end
        self._widen_starts(len(self._ids))
        self._ids_end = 0
        self._garbage = 0  # bytes of released ids, dropped at the next compaction
        self._index = _pages(_index_size(capacity), np.int32, EMPTY)
        self._filled = 0  # buckets not EMPTY
        # The last wave assigned and its slots. Streams that report periodically come in the same order
        # wave after wave, and comparing a wave with the last one costs a fraction of looking every id up
        # again.
        self._last_wave: list[str] = []
        self._last_slots: IntArray = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        """What the map holds beside the state: its arrays and the ids written so far."""
        arrays = (self._used, self.last_ts, self.partition, self._hash, self._start, self._size, self._index)
        return sum(a.nbytes for a in arrays) + self._ids_end

    def get(self, stream: str) -> int | None:
        slot = int(self.find([stream])[0])
        return None if slot < 0 else slot

    def find(self, streams: Sequence[str]) -> IntArray:
        """The slot of each of ``streams``, -1 for those without one."""
        found = np.full(len(streams), -1, dtype=np.int64)
        if len(streams) == 0 or not self._count:
            return found
        hashes, mask = _hashes(streams), len(self._index) - 1
        rows = np.arange(len(streams))
        buckets, step = hashes & mask, 0
        while len(rows):  # each round probes the next bucket of the rows not settled yet
            cand = self._index[buckets].astype(np.int64)
            hit = cand >= 0
            hit[hit] = self._hash[cand[hit]] == hashes[rows[hit]]
            if hit.any():
                hit[hit] = self._same_ids(streams, rows[hit], cand[hit])
                found[rows[hit]] = cand[hit]
            more = ~hit & (cand != EMPTY)
            step += 1
            rows, buckets = rows[more], (buckets[more] + step) & mask
        return found

    def _same_ids(self, streams: Sequence[str], rows: IntArray, slots: IntArray) -> npt.NDArray[np.bool_]:
        """Whether each ``streams[rows[i]]`` is the id stored for ``slots[i]``."""
        ids, (starts, ends) = self._ids, self._spans(slots)
        same = [ids[a:b] == _utf8(streams[i]) for i, a, b in zip(rows.tolist(), starts, ends, strict=True)]
        return np.array(same, dtype=bool)

    def streams(self) -> dict[str, int]:
        slots = np.flatnonzero(self._used)
        return dict(zip(self._named(slots), slots.tolist(), strict=True))

    def assign(self, streams: Sequence[str]) -> tuple[IntArray, npt.NDArray[np.bool_]]:
        """The slots of ``streams`` (distinct) and which of them are new (the table must zero those)."""
        if len(streams) > 1 and streams == self._last_wave:  # no slot was released since: still right
            return self._last_slots.copy(), np.zeros(len(streams), dtype=bool)
        slots = self.find(streams)
        fresh = slots < 0
        if fresh.any():
            new = np.flatnonzero(fresh)
            slots[new] = self._take(len(new))
            self._store([streams[i] for i in new.tolist()], slots[new])
        self._last_wave, self._last_slots = list(streams), slots.copy()
        return slots, fresh

    def release(self, streams: Sequence[str]) -> IntArray:
        """Frees the slots of ``streams`` (distinct, all known: KeyError otherwise, and nothing freed)."""
        slots = self.find(streams)
        if len(slots) and slots.min() < 0:
            raise KeyError(streams[int(np.argmin(slots))])
        self._last_wave = []  # it may name a stream released here
        self._index[self._buckets_of(slots)] = GONE
        self._count -= len(slots)
        self._garbage += int(self._size[slots].sum())
        self._size[slots] = 0
        self._used[slots] = False
        self.last_ts[slots] = -np.inf
        self.partition[slots] = -1
        if len(slots):
            self._free_from = min(self._free_from, int(slots.min()))
        return slots

    def idle_since(self, cutoff: float) -> list[str]:
        """Streams whose last reading is older than ``cutoff`` (event time)."""
        return self._named(np.flatnonzero((self.last_ts < cutoff) & self._used))

    def on_partitions(self, partitions: set[int]) -> tuple[list[str], IntArray]:
        """Streams last seen on one of ``partitions``, and their slots."""
        slots = np.flatnonzero(np.isin(self.partition, list(partitions)) & self._used)
        return self._named(slots), slots

    def _named(self, slots: IntArray) -> list[str]:
        ids, (starts, ends) = self._ids, self._spans(slots)
        return [ids[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends, strict=True)]

    def _spans(self, slots: IntArray) -> tuple[list[int], list[int]]:
        """Where the ids of ``slots`` begin and end in the buffer."""
        starts = self._start[slots].astype(np.int64)
        return starts.tolist(), (starts + self._size[slots]).tolist()

    def _buckets_of(self, slots: IntArray) -> IntArray:
        """The index bucket holding each of ``slots`` (all live)."""
        mask = len(self._index) - 1
        buckets, rows, out = self._hash[slots] & mask, np.arange(len(slots)), np.zeros(len(slots), np.int64)
        step = 0
        while len(rows):
            here = self._index[buckets] == slots[rows]
            out[rows[here]] = buckets[here]
            step += 1
            rows, buckets = rows[~here], (buckets[~here] + step) & mask
        return out

    def _take(self, n: int) -> IntArray:
        """``n`` free slots, lowest first: streams that first come in order get consecutive slots."""
        while self._count + n > self.capacity:
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
        self._count += n
        self._free_from = int(slots[-1]) + 1
        return slots

    def _store(self, streams: list[str], slots: IntArray) -> None:
        """Writes the ids of new ``streams`` (their slots just taken) to the buffer and the index."""
        encoded = list(map(_utf8, streams))
        sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        data = b"".join(encoded)
        if self._ids_end + len(data) > len(self._ids):
            self._compact(len(data))
        self._ids[self._ids_end : self._ids_end + len(data)] = data
        self._start[slots] = self._ids_end + np.cumsum(sizes) - sizes
        self._size[slots] = sizes
        self._ids_end += len(data)
        self._hash[slots] = _hashes(streams)
        if 4 * (self._filled + len(slots)) > 3 * len(self._index):  # too few EMPTY buckets left
            self._reindex(len(self._index))  # every live slot, these among them
        else:
            self._insert(slots)

    def _insert(self, slots: IntArray) -> None:
        """Puts ``slots`` in the index, each in the first free bucket from its hash on."""
        mask = len(self._index) - 1
        buckets, step = self._hash[slots] & mask, 0
        while len(slots):  # slots that land on one bucket in a round: the first takes it, the rest go on
            cand = self._index[buckets]
            free = np.flatnonzero(cand < 0)
            won = free[np.unique(buckets[free], return_index=True)[1]]
            self._filled += int(np.count_nonzero(cand[won] == EMPTY))
            self._index[buckets[won]] = slots[won]
            rest = np.ones(len(slots), dtype=bool)
            rest[won] = False
            step += 1
            slots, buckets = slots[rest], (buckets[rest] + step) & mask

    def _reindex(self, size: int) -> None:
        self._index = _pages(size, np.int32, EMPTY)
        self._filled = 0
        self._insert(np.flatnonzero(self._used))

    def _compact(self, needed: int) -> None:
        """Room for ``needed`` more bytes of ids: released ids dropped, the buffer at least twice what is
        then used, so that compactions stay rare."""
        used = self._ids_end - self._garbage + needed
        size = len(self._ids)
        while size < 2 * used:
            size *= 2
        old, ids = self._ids, _mapping(size)
        self._widen_starts(size)
        live = np.flatnonzero(self._used & (self._size > 0))
        end = 0
        for first in range(0, len(live), COMPACT_SLOTS):
            chunk = live[first : first + COMPACT_SLOTS]
            starts, ends = self._spans(chunk)
            data = b"".join([old[a:b] for a, b in zip(starts, ends, strict=True)])
            ids[end : end + len(data)] = data
            self._start[chunk] = end + np.cumsum(self._size[chunk]) - self._size[chunk]
            end += len(data)
        old.close()
        self._ids, self._ids_end, self._garbage = ids, end, 0

    def _widen_starts(self, size: int) -> None:
        """Offsets of 8 bytes once the buffer is too big for 4."""
        if size > NARROW_OFFSETS and self._start.dtype != np.int64:
            self._start = _grown(self._start.astype(np.int64), len(self._start))

    def _grow(self) -> None:
        old = self.capacity
        self.capacity = old * 2
        self._used = _grown(self._used, self.capacity)
        self.last_ts = _grown(self.last_ts, self.capacity, -np.inf)
        self.partition = _grown(self.partition, self.capacity, -1)
        self._hash = _grown(self._hash, self.capacity)
        self._start = _grown(self._start, self.capacity)
        self._size = _grown(self._size, self.capacity)
        self._reindex(_index_size(self.capacity))


class StateTable:
    """Recurrent state of every live stream of one model, on the host."""

    device = "cpu"

    def __init__(self, width: int, capacity: int) -> None:
        self.width = width
        self.slots = SlotMap(capacity)
        self._data: FloatArray = _pages((capacity, width), np.float32)

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes)

    def assign(self, streams: list[str]) -> IntArray:
        """Slots for ``streams`` (distinct), allocating zeroed (cold) state for new ones."""
        slots, fresh = self.slots.assign(streams)
        if self.slots.capacity != self._data.shape[0]:
            self._data = _grown(self._data, self.slots.capacity)
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
        self._data = _pages((self.slots.capacity, width), np.float32)

    def evict(self, streams: list[str]) -> None:
        self.slots.release(streams)
