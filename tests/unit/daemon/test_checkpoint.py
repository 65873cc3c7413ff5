"""Checkpoints: restoring one and reading on from its offsets gives what never stopping gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from daemon import checkpoint as checkpoint_module
from daemon.checkpoint import Checkpoint, Checkpoints, load, restore, save, take
from daemon.config import Config, parse_config
from daemon.engine import HostEngine
from daemon.errors import ConfigError
from daemon.kafka_io import encode_json
from daemon.processor import Outcome, Processor, RawRecord
from daemon.records import Source
from daemon.replay import reading_message
from tests.support import MACHINE_TEMPERATURE, PLAIN_SCORE, model_exporter
from train.export import untrained_model
from train.pipeline import TrainReport
from train.series import load_nab_csv

# Rows around the failure of 2013-12-16, where the demo model fires and resolves alerts.
FIRST_ROW = 3900


def _config(model: Path, checkpoint_dir: Path | None = None) -> Config:
    data: dict[str, Any] = {
        "models": [{"name": "m", "path": str(model)}],
        "kafka": {"scores_topic": "scores", "scores_every": 3},
        "alerting": {"fault": {"cooldown_s": 600}},
    }
    if checkpoint_dir is not None:
        data["state"] = {"checkpoint_dir": str(checkpoint_dir)}
    return parse_config(data, Path("."), env={})


def _polls() -> list[list[RawRecord]]:
    """Six streams on two partitions, each replaying the failure from another row, in polls of 50."""
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    records, offsets = [], [0, 0]
    for t in range(150):
        for i in range(6):
            row = FIRST_ROW + 10 * i + t
            stream, part = f"m-{i}", i % 2
            value = encode_json(
                reading_message(stream, float(series.ts[row]), ("temp_c",), [float(series.values[row, 0])])
            )
            records.append(RawRecord(stream.encode(), value, Source("r", part, offsets[part])))
            offsets[part] += 1
    return [records[i : i + 50] for i in range(0, len(records), 50)]


def _summary(out: Outcome) -> tuple[list[Any], list[Any]]:
    return [(s.stream, s.score, s.publish) for s in out.scored()], out.alerts


def test_restored_streams_go_on_exactly_as_if_never_stopped(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    model = machine_model.model_path
    polls = _polls()
    config = _config(model)
    whole = Processor(config, {"m": HostEngine(model, 4)})
    expected = [_summary(whole.process(p)) for p in polls]
    assert any(alerts for _, alerts in expected[9:]), "alerts fire after the checkpoint too"

    first = Processor(config, {"m": HostEngine(model, 4)})
    for p in polls[:9]:
        first.process(p)
    states = first.runtimes["m"].kinds["fault"].states
    assert any(s.phase != "idle" for s in states.values()), "an alert is pending or firing at the checkpoint"
    offsets = {0: 225, 1: 225}
    save(take(first, "r", offsets), tmp_path / "c.npz")
    loaded = load(tmp_path / "c.npz")
    assert loaded is not None and loaded.offsets == offsets and loaded.topic == "r"

    resumed = Processor(config, {"m": HostEngine(model, 4)})
    assert restore(resumed, loaded, {0, 1}) == 6
    assert [_summary(resumed.process(p)) for p in polls[9:]] == expected[9:]


def test_only_the_assigned_partitions_streams_come_back(machine_model: TrainReport) -> None:
    model = machine_model.model_path
    first = Processor(_config(model), {"m": HostEngine(model, 4)})
    for p in _polls()[:3]:
        first.process(p)
    resumed = Processor(_config(model), {"m": HostEngine(model, 4)})
    assert restore(resumed, take(first, "r", {0: 75, 1: 75}), {1}) == 3
    assert sorted(resumed.runtimes["m"].engine.table.slots.streams()) == ["m-1", "m-3", "m-5"]


def test_state_of_a_model_that_changed_shape_is_not_restored(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    first = Processor(_config(machine_model.model_path), {"m": HostEngine(machine_model.model_path, 4)})
    first.process(_polls()[0])
    other = untrained_model(tmp_path / "other.onnx", ("temp_c",), hidden=4)
    resumed = Processor(_config(other), {"m": HostEngine(other, 4)})
    assert restore(resumed, take(first, "r", {0: 25, 1: 25}), {0, 1}) == 0
    assert len(resumed.runtimes["m"].engine.table.slots) == 0


def test_unreadable_checkpoint_means_a_cold_start(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(b"not a checkpoint")
    assert load(path) is None
    assert load(tmp_path / "missing.npz") is None


def _checkpoint(offsets: dict[int, int]) -> Checkpoint:
    return Checkpoint("r", offsets, 0.0, {})


def test_plan_never_skips_records_a_crash_may_have_lost(tmp_path: Path) -> None:
    config = _config(tmp_path / "m.onnx", tmp_path)
    checkpoints = Checkpoints(config)
    assert checkpoints.path is not None and checkpoints.path.parent == tmp_path
    save(_checkpoint({0: 100, 1: 100, 2: 100, 3: 5}), checkpoints.path)
    committed: dict[int, int | None] = {0: 100, 1: 90, 2: 2_000_000, 3: 50}
    plan = checkpoints.plan({0, 1, 2, 3}, committed, {0: 0, 1: 0, 2: 0, 3: 10}, max_replay=1_000_000)
    # 0: resumes at its commit; 1: the file is ahead of the commit (a crash may have lost acks);
    # 2: too far behind; 3: its offset is no longer retained
    assert [parts for _, parts in plan] == [{0}]
    # A snapshot parked at a revoke by this process may be ahead: its alerts are still tracked here.
    checkpoints.park(_checkpoint({1: 100}))
    plan = checkpoints.plan({1}, committed, {1: 0}, max_replay=1_000_000)
    assert [(c.offsets[1], parts) for c, parts in plan] == [(100, {1})]
    assert checkpoints.plan({1}, committed, {1: 0}, max_replay=1_000_000) == [], (
        "a parked snapshot is used once"
    )


def test_checkpoint_folder_must_be_writable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"state.checkpoint_dir .* is not a writable folder"):
        Checkpoints(_config(tmp_path / "m.onnx", tmp_path / "absent"))


def test_systemd_state_directory_is_the_default(tmp_path: Path) -> None:
    data = {"models": [{"name": "m", "path": "m.onnx"}]}
    assert parse_config(data, tmp_path, env={}).state.checkpoint_dir is None
    assert parse_config(
        data, tmp_path, env={"STATE_DIRECTORY": "/var/lib/faultcast"}
    ).state.checkpoint_dir == ("/var/lib/faultcast")


def test_snapshot_holds_only_the_given_partitions_streams(machine_model: TrainReport) -> None:
    first = Processor(_config(machine_model.model_path), {"m": HostEngine(machine_model.model_path, 4)})
    first.process(_polls()[0])
    snap = take(first, "r", {1: 25}).models["m"]
    assert sorted(snap.streams) == ["m-1", "m-3", "m-5"] and set(snap.partitions) == {1}


def test_truncated_checkpoint_means_a_cold_start(machine_model: TrainReport, tmp_path: Path) -> None:
    first = Processor(_config(machine_model.model_path), {"m": HostEngine(machine_model.model_path, 4)})
    first.process(_polls()[0])
    path = tmp_path / "c.npz"
    save(take(first, "r", {0: 25, 1: 25}), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert load(path) is None


def test_parked_snapshot_expires(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoints = Checkpoints(_config(tmp_path / "m.onnx", tmp_path))
    now = [1000.0]
    monkeypatch.setattr(checkpoint_module.time, "monotonic", lambda: now[0])
    checkpoints.park(_checkpoint({1: 100}))
    now[0] += checkpoint_module.PARK_TTL_S + 1
    assert checkpoints.plan({1}, {1: 100}, {1: 0}, max_replay=1_000_000) == []


def test_fault_alerts_a_checkpoint_holds_under_another_fault_score_are_ended_not_restored(
    tmp_path: Path,
) -> None:
    """A reload to a model whose fault score is made differently, with the same state layout, ends the
    alerts the old score raised (model_reload). A snapshot taken before it (parked at a revoke, or the
    file before a crash) must not bring them back, and must not leave them open either: the reload did
    not see the streams it held."""
    live = tmp_path / "live.onnx"
    export = model_exporter(live)
    export(replace(PLAIN_SCORE, peak_half_life=50.0), "1")
    data = {"models": [{"name": "m", "path": str(live)}], "alerting": {"fault": {"fire_after": 1}}}
    config = parse_config(data, Path("."), env={})
    before, same = (Processor(config, {"m": HostEngine(live, 4)}) for _ in range(2))
    wild = [
        RawRecord(b"s", encode_json(reading_message("s", 60.0 * t, ("temp_c",), [70.0 + 30 * (-1) ** t])),
                  Source("r", 0, t))
        for t in range(3)
    ]  # fmt: skip
    [fired] = {a["id"] for a in before.process(wild).alerts if a["state"] == "firing"}  # it may escalate
    save(take(before, "r", {0: 3}), tmp_path / "m.ckpt.npz")  # as a crash would leave it
    snapshot = load(tmp_path / "m.ckpt.npz")
    assert snapshot is not None
    export(replace(PLAIN_SCORE, peak_half_life=100.0), "2")  # same layout, another peak gate
    after = Processor(config, {"m": HostEngine(live, 4)})
    for processor in (same, after):
        assert restore(processor, snapshot, {0}) == 1
    assert list(same.runtimes["m"].kinds["fault"].states) == ["s"]  # the same model takes its alert back
    assert after.runtimes["m"].kinds["fault"].states == {}
    assert after.runtimes["m"].engine.table.slots.get("s") is not None  # the stream's state does come back
    assert same.runtimes["m"].owed == []
    ended = after.process([]).alerts  # with the next poll, records or not
    assert [(a["id"], a["state"], a["resolution"]) for a in ended] == [(fired, "resolved", "model_reload")]
    assert ended[0]["model"]["version"] == "1"  # the version that raised it
    # A snapshot under another state layout restores nothing, and ends what it held as firing the same way
    other = model_exporter(tmp_path / "other.onnx")
    other(PLAIN_SCORE, "3")  # no peak gate: one state column fewer
    config_other = parse_config(
        {**data, "models": [{"name": "m", "path": str(tmp_path / "other.onnx")}]}, Path("."), env={}
    )
    reshaped = Processor(config_other, {"m": HostEngine(tmp_path / "other.onnx", 4)})
    assert restore(reshaped, snapshot, {0}) == 0
    assert [(a["id"], a["resolution"]) for a in reshaped.process([]).alerts] == [(fired, "model_reload")]
