"""The device-resident state table against the host engine, measured in the same run.

    .venv/bin/python bench/device_table.py [--streams 10000 100000] [--waves 20] [--device cuda|cpu]
    .venv/bin/python bench/device_table.py --device cuda --table-only   # GPU host, CPU onnxruntime

For each stream count, one wave advances every stream by one reading: prints milliseconds per wave of
the host engine (numpy table, plain run) and of the device engine (torch table on --device, IOBinding),
their ratio, and the state table's bytes (and, on CUDA, the GPU memory torch holds). Without a usable
GPU the device engine runs as its CPU twin. ``--table-only`` times the two tables' own work (assign,
gather, scatter) without onnxruntime, and checks that both kept the same state.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from daemon.device_engine import DeviceEngine, DeviceStateTable, cuda_available
from daemon.engine import Engine, HostEngine
from daemon.state_table import StateTable
from train.export import untrained_model

FEATURES = 8


def per_wave_ms(engine: Engine, streams: list[str], x: np.ndarray, waves: int) -> float:
    reset, ts = np.zeros(len(streams), dtype=bool), np.zeros(len(streams))
    engine.step(streams, x, reset, ts)  # warm-up: allocates the slots
    started = time.perf_counter()
    for _ in range(waves):
        engine.step(streams, x, reset, ts)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - started) / waves


def table_only(n: int, device: str, waves: int, width: int = 82) -> tuple[float, float, float]:
    """Milliseconds per wave of the state table's own work (assign, gather, scatter) for ``n`` streams,
    on the host table and on the device table, and the bytes the device table holds: what a GPU host
    without onnxruntime-gpu can still measure."""
    streams = [f"s{i}" for i in range(n)]
    host = StateTable(width, n)
    host_next = np.ones((n, width), dtype=np.float32)
    table = DeviceStateTable(width, n, device)
    next_state = torch.ones((n, width), dtype=torch.float32, device=device)

    def host_wave() -> None:
        slots = host.assign(streams)
        host.scatter(slots, host.gather(slots) + host_next)

    def device_wave() -> None:
        slots = table.assign(streams)
        table.put(slots, table.rows(slots) + next_state)

    timed = []
    for wave in (host_wave, device_wave):
        wave()  # warm-up: allocates the slots (and on a GPU loads the kernels)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(waves):
            wave()
        if device == "cuda":
            torch.cuda.synchronize()
        timed.append(1000 * (time.perf_counter() - started) / waves)
    # every wave added one to every row: the tables kept each stream's state through the waves
    slots = host.assign(streams)
    assert np.array_equal(table.gather(slots), host.gather(slots))
    return timed[0], timed[1], float(table.nbytes)


HEADER = f"{'streams':>8} {'host ms/wave':>13} {'device ms/wave':>15} {'host/device':>12} {'table MB':>9}"


def row(n: int, host_ms: float, device_ms: float, nbytes: float, device: str) -> str:
    line = f"{n:>8} {host_ms:>13.2f} {device_ms:>15.2f} {host_ms / device_ms:>12.2f} {nbytes / 1e6:>9.1f}"
    if device == "cuda":
        line += f"  GPU peak {torch.cuda.max_memory_allocated() / 1e6:.1f} MB"
        torch.cuda.reset_peak_memory_stats()
    return line


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if cuda_available() else "cpu")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="time the state table alone on --device (a GPU host whose onnxruntime lacks CUDA)",
    )
    args = parser.parse_args()
    if args.table_only:
        print(f"state table alone on {args.device}; torch {torch.__version__}\n{HEADER}")
        for n in args.streams:
            print(row(n, *table_only(n, args.device, args.waves), args.device), flush=True)
        return
    # The table's torch operations are memory copies; torch's own thread pool would only fight
    # onnxruntime's for the cores.
    torch.set_num_threads(1)
    path = untrained_model(
        Path(tempfile.mkdtemp()) / "bench.onnx", tuple(f"c{i}" for i in range(FEATURES)), 32
    )
    print(f"device engine on {args.device}; GPU usable: {cuda_available()}\n{HEADER}")
    for n in args.streams:
        streams = [f"s{i}" for i in range(n)]
        x = np.random.default_rng(0).normal(70, 5, (n, FEATURES)).astype(np.float32)
        host = HostEngine(path, n)
        device = DeviceEngine(path, n, args.device)
        host_ms = per_wave_ms(host, streams, x, args.waves)
        device_ms = per_wave_ms(device, streams, x, args.waves)
        print(row(n, host_ms, device_ms, device.table.nbytes, args.device), flush=True)


if __name__ == "__main__":
    main()
