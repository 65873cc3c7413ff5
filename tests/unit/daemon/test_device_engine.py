"""The device engine's CPU twin: IOBinding over a torch state table gives what the host engine gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.checkpoint import restore, take
from daemon.config import parse_config
from daemon.device_engine import DeviceEngine, DeviceStateTable, cuda_available
from daemon.engine import HostEngine
from daemon.errors import DeviceError
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from daemon.state_table import StateTable
from train.export import untrained_model
from train.pipeline import TrainReport


def _waves(rng: np.random.Generator) -> list[tuple[list[str], np.ndarray, np.ndarray]]:
    """Waves of distinct streams; new ones appear (the table grows), some restart cold."""
    out = []
    for w in range(12):
        streams = [f"s{i}" for i in rng.choice(40 + 5 * w, size=20, replace=False)]
        x = (70 + rng.normal(0, 3, (20, 2))).astype(np.float32)
        out.append((streams, x, rng.random(20) < 0.1))
    return out


# The table needs torch's device alone, not onnxruntime-gpu: a GPU host runs the "cuda" case.
TABLE_DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", TABLE_DEVICES)
def test_device_table_keeps_what_the_host_table_keeps(device: str) -> None:
    """Growth, cold new and reused slots, eviction and a width change, against the host table."""
    rng = np.random.default_rng(5)
    host, table = StateTable(3, 2), DeviceStateTable(3, 2, device)
    for round_ in range(30):
        if round_ == 20:
            host.reshape(5)
            table.reshape(5)
        streams = [f"s{i}" for i in rng.choice(50 + 10 * round_, size=25, replace=False)]
        slots = host.assign(streams)
        np.testing.assert_array_equal(table.assign(streams), slots)
        np.testing.assert_array_equal(table.gather(slots), host.gather(slots))
        state = rng.normal(size=(25, host.width)).astype(np.float32)
        host.scatter(slots, state)
        if round_ % 2:
            table.scatter(slots, state)
        else:  # the engine's own path: rows and state stay on the device
            table.put(slots, table.rows(slots) * 0 + torch.from_numpy(state).to(device))
        gone = streams[: round_ % 4]
        host.evict(gone)
        table.evict(gone)
    assert str(table.data.device).startswith(device) and table.slots.capacity > 2
    every = np.array(sorted(host.slots.streams().values()))
    np.testing.assert_array_equal(table.gather(every), host.gather(every))
    assert table.nbytes == host.nbytes


@pytest.mark.parametrize(("congestion", "gate"), [(None, None), (75.0, None), (None, 5.0)])
def test_waves_match_the_host_engine(tmp_path: Path, congestion: float | None, gate: float | None) -> None:
    model = untrained_model(
        tmp_path / "m.onnx", ("a", "b"), hidden=8, congestion_limit=congestion, peak_half_life=gate
    )
    host, device = HostEngine(model, 4), DeviceEngine(model, 4, "cpu")
    for streams, x, reset in _waves(np.random.default_rng(0)):
        ts = np.zeros(len(streams))
        want, got = host.step(streams, x, reset, ts), device.step(streams, x, reset, ts)
        np.testing.assert_array_equal(got.slots, want.slots)
        np.testing.assert_allclose(got.score, want.score, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got.contrib, want.contrib, rtol=1e-6, atol=1e-7)
        assert (got.congestion is None) == (want.congestion is None)
        if want.congestion is not None and got.congestion is not None:
            np.testing.assert_allclose(got.congestion, want.congestion, rtol=1e-6)
        assert (got.hold is None) == (want.hold is None) == (gate is None)
        if want.hold is not None and got.hold is not None:
            np.testing.assert_allclose(got.hold, want.hold, rtol=1e-6, atol=1e-7)
    slots = np.arange(host.table.slots.capacity)
    assert device.table.slots.capacity == host.table.slots.capacity > 4  # both grew by doubling
    np.testing.assert_allclose(device.table.gather(slots), host.table.gather(slots), rtol=1e-6, atol=1e-7)
    assert device.table.nbytes == host.table.nbytes


def test_processor_and_checkpoints_run_on_the_device_table(machine_model: TrainReport) -> None:
    path = machine_model.model_path
    config = parse_config({"models": [{"name": "m", "path": str(path)}]}, Path("."), env={})
    rng = np.random.default_rng(1)
    records = [
        RawRecord(
            f"m-{i % 7}".encode(),
            json.dumps({"ts": 1000.0 + 300 * (i // 7), "values": {"temp_c": 70 + rng.normal(0, 4)}}).encode(),
            Source("r", i % 7 % 2, i),
        )
        for i in range(700)
    ]
    host = Processor(config, {"m": HostEngine(path, 4)})
    device = Processor(config, {"m": DeviceEngine(path, 4, "cpu")})
    want = [host.process(records[i : i + 70]) for i in range(0, 350, 70)]
    got = [device.process(records[i : i + 70]) for i in range(0, 350, 70)]
    assert [round(s.score, 5) for o in got for s in o.scored()] == [
        round(s.score, 5) for o in want for s in o.scored()
    ]
    # a checkpoint taken from the device table restores into another device table
    resumed = Processor(config, {"m": DeviceEngine(path, 4, "cpu")})
    assert restore(resumed, take(device, "r", {0: 175, 1: 175}), {0, 1}) == 7
    rest = records[350:]
    want_rest = [s.score for s in host.process(rest).scored()]
    got_rest = [s.score for s in resumed.process(rest).scored()]
    np.testing.assert_allclose(got_rest, want_rest, rtol=1e-5)


@pytest.mark.skipif(cuda_available(), reason="this host has a usable GPU")
def test_cuda_without_a_gpu_is_a_device_error(tmp_path: Path) -> None:
    model = untrained_model(tmp_path / "m.onnx", ("a",))
    with pytest.raises(DeviceError, match="no GPU is usable"):
        DeviceEngine(model, 4, "cuda")
