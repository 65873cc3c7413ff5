from __future__ import annotations

import numpy as np
import pytest

from daemon import state_table
from daemon.batching import waves
from daemon.engine import diverged_rows
from daemon.state_table import SlotMap, StateTable


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
    table.evict(["a"])
    reused = table.assign(["c"])
    assert reused[0] == slots[0] and table.slots.capacity == 2
    np.testing.assert_array_equal(table.gather(reused), [[0, 0]])
    assert table.slots.get("a") is None and table.slots.get("c") == slots[0]


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


def test_slot_map_agrees_with_a_dict_through_growth_release_and_reuse() -> None:
    rng = np.random.default_rng(3)
    slot_map = SlotMap(4)
    model: dict[str, int] = {}
    names = [f"machine-{i}" for i in range(60_000)] + ["прес-1", "ñ", "a" * 300, "machine-1 "]
    for round_ in range(40):
        wave = list(dict.fromkeys(rng.choice(names, size=3_000).tolist()))
        slots, fresh = slot_map.assign(wave)
        for stream, slot, new in zip(wave, slots.tolist(), fresh.tolist(), strict=True):
            assert new == (stream not in model)
            assert model.setdefault(stream, slot) == slot
        assert len(set(model.values())) == len(model)  # no two streams share a slot
        gone = [s for s in model if rng.random() < 0.3]
        np.testing.assert_array_equal(slot_map.release(gone), [model.pop(s) for s in gone])
        probe = list(dict.fromkeys(rng.choice(names, size=2_000).tolist()))
        want = [model.get(s, -1) for s in probe]
        np.testing.assert_array_equal(slot_map.find(probe), want, err_msg=f"round {round_}")
        known = rng.permutation(list(model)).tolist()  # all known: the lookup's fast path
        np.testing.assert_array_equal(slot_map.find(known), [model[s] for s in known])
        np.testing.assert_array_equal(slot_map.find(known[:1]), [model[known[0]]])
    assert len(slot_map) == len(model) and slot_map.streams() == model
    assert slot_map.find([]).tolist() == [] and slot_map.find(["nobody"]).tolist() == [-1]


def test_a_wave_like_the_last_one_gets_the_same_slots_until_a_stream_is_released() -> None:
    slot_map = SlotMap(4)
    wave = ["a", "b", "c"]
    first, fresh = slot_map.assign(wave)
    assert fresh.all()
    again, fresh = slot_map.assign(["a", "b", "c"])  # an equal wave in another list, as the next poll's
    assert again.tolist() == first.tolist() and not fresh.any()
    again[0] = 99  # what a caller does with its slots is not remembered
    assert slot_map.assign(wave)[0].tolist() == first.tolist()
    slot_map.release(["b"])
    slots, fresh = slot_map.assign(wave)  # b comes back cold, straight after
    assert fresh.tolist() == [False, True, False] and slot_map.get("b") == slots[1]
    slot_map.release(["b"])
    d = slot_map.assign(["d", "e"])[0][0]  # takes b's old slot
    slots, fresh = slot_map.assign(wave)
    assert fresh.tolist() == [False, True, False]
    assert slots[1] != d and slot_map.get("b") == slots[1] and slot_map.get("d") == d


def test_slot_map_frees_slots_lowest_first_so_first_seen_order_stays_consecutive() -> None:
    slot_map = SlotMap(8)
    slots, _ = slot_map.assign(["a", "b", "c", "d"])
    assert slots.tolist() == [0, 1, 2, 3]
    slot_map.release(["b"])
    assert slot_map.assign(["e", "f"])[0].tolist() == [1, 4]
    assert slot_map.idle_since(0.0) == ["a", "e", "c", "d", "f"]  # last_ts starts at -inf
    try:
        slot_map.release(["a", "zz"])
    except KeyError as exc:
        assert exc.args == ("zz",)
    else:
        raise AssertionError("releasing an unknown stream must raise")
    assert slot_map.get("a") == 0 and len(slot_map) == 5  # and nothing was freed


def test_diverged_rows_are_those_with_any_non_finite_output_but_the_shares() -> None:
    """NaN, either infinity, and infinities that would cancel in a sum all count, in any column of the
    state; NaN in the channel shares alone does not (they derive from the score's errors)."""
    rows, width = 7, 300  # wider than one BLAS block
    state = np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)
    score = np.ones(rows, dtype=np.float32)
    contrib = np.full((rows, 2), 0.5, dtype=np.float32)
    state[1, 0] = np.nan
    state[2, width - 1] = np.inf
    state[3, 5], state[3, 250] = np.inf, -np.inf
    score[4] = -np.inf
    contrib[5, 1] = np.nan
    state[6, 100] = 3.0e38  # large but finite
    out = diverged_rows({"score": score, "contrib": contrib, "next_state": state})
    assert np.flatnonzero(out).tolist() == [1, 2, 3, 4]


def _agrees_with_a_dict(slot_map: SlotMap, names: list[str], rounds: int, seed: int) -> None:
    """Random waves, releases and lookups; the map answers as a dict from id to slot would."""
    rng = np.random.default_rng(seed)
    model: dict[str, int] = {}
    for _ in range(rounds):
        wave = list(dict.fromkeys(rng.choice(names, size=len(names) // 2).tolist()))
        slots, fresh = slot_map.assign(wave)
        for stream, slot, new in zip(wave, slots.tolist(), fresh.tolist(), strict=True):
            assert new == (stream not in model)
            assert model.setdefault(stream, slot) == slot
        gone = [s for s in model if rng.random() < 0.4]
        np.testing.assert_array_equal(slot_map.release(gone), [model.pop(s) for s in gone])
        probe = list(dict.fromkeys(rng.choice(names, size=len(names) // 2).tolist()))
        np.testing.assert_array_equal(slot_map.find(probe), [model.get(s, -1) for s in probe])
        assert slot_map.streams() == model and len(slot_map) == len(model)


def test_ids_whose_hashes_collide_are_told_apart_by_their_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_table, "_hashes", lambda streams: np.full(len(streams), 7, dtype=np.uint32))
    names = [f"m{i}" for i in range(150)] + [
        "",
        "é",
        "e\u0301",
        "m1\x00",
        "m1 ",
        "M1",
        "長い名前" * 20,
        "\ud800",
    ]
    _agrees_with_a_dict(SlotMap(4), names, rounds=12, seed=5)


def test_ids_released_and_replaced_for_ever_keep_the_map_small() -> None:
    """Streams that come and go (idle eviction) leave no growing garbage: released ids' bytes and index
    marks are reclaimed, so what the map holds follows the live streams, not all streams ever seen."""
    slot_map = SlotMap(1024)
    live = [f"first-{i}" for i in range(1000)]
    slot_map.assign(live)
    held = slot_map.nbytes
    for generation in range(60):
        slot_map.release(live[:500])
        live = live[500:] + [f"gen-{generation}-{i}" for i in range(500)]
        slot_map.assign(live[500:])
        np.testing.assert_array_equal(
            np.sort(slot_map.find(live)), np.sort(list(slot_map.streams().values()))
        )
    assert sorted(slot_map.streams()) == sorted(live) and slot_map.capacity == 1024
    assert slot_map.nbytes <= held + 16_000  # 30,000 ids came and went, about 360 kB of them


def test_offsets_widen_when_the_id_buffer_outgrows_four_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_table, "NARROW_OFFSETS", 100)
    slot_map = SlotMap(2)
    _agrees_with_a_dict(slot_map, [f"machine-{i:05d}" for i in range(400)], rounds=8, seed=9)
    assert slot_map._start.dtype == np.int64  # the 4-byte offsets could not address the buffer
