from __future__ import annotations

import numpy as np

from daemon.batching import waves
from daemon.state_table import StateTable


def test_table_grows_by_doubling_and_keeps_state() -> None:
    table = StateTable(width=3, capacity=2)
    slots = table.assign(["a", "b"])
    table.scatter(slots, np.array([[1, 1, 1], [2, 2, 2]], dtype=np.float32))
    more = table.assign(["c"])
    assert table.slots.capacity == 4 and table.nbytes == 4 * 3 * 4
    np.testing.assert_array_equal(table.gather(slots), [[1, 1, 1], [2, 2, 2]])
    np.testing.assert_array_equal(table.gather(more), [[0, 0, 0]])
    table.assign([f"s{i}" for i in range(3)])
    assert table.slots.capacity == 8 and len(table.slots) == 6


def test_evicted_slot_is_reused_cold() -> None:
    table = StateTable(width=2, capacity=2)
    slots = table.assign(["a", "b"])
    table.scatter(slots, np.ones((2, 2), dtype=np.float32))
    table.slots.last_ts[slots] = [10.0, 50.0]
    assert table.slots.idle_since(20.0) == ["a"]
    table.evict("a")
    reused = table.assign(["c"])
    assert reused[0] == slots[0] and table.slots.capacity == 2
    np.testing.assert_array_equal(table.gather(reused), [[0, 0]])
    assert "a" not in table.slots and table.slots.get("c") == slots[0]


def test_waves_keep_each_streams_order_and_never_merge_its_readings() -> None:
    streams = ["a", "b", "a", "a", "c", "b", "a"]
    result = waves(streams, max_batch=2)
    flat = [i for wave in result for i in wave]
    assert sorted(flat) == list(range(len(streams)))
    for wave in result:
        assert len(wave) <= 2
        assert len({streams[i] for i in wave}) == len(wave)
    for stream in "abc":
        order = [i for i in flat if streams[i] == stream]
        assert order == sorted(order)
