"""The device-resident state table against the host engine, measured in the same run.

    .venv/bin/python bench/device_table.py [--streams 10000 100000] [--waves 20] [--device cuda|cpu]

For each stream count, one wave advances every stream by one reading: prints milliseconds per wave of
the host engine (numpy table, plain run) and of the device engine (torch table on --device, IOBinding),
their ratio, and the state table's bytes (and, on CUDA, the GPU memory torch holds). Without a usable
GPU the device engine runs as its CPU twin.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from daemon.device_engine import DeviceEngine, cuda_available
from daemon.engine import Engine, HostEngine
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if cuda_available() else "cpu")
    args = parser.parse_args()
    # The table's torch operations are memory copies; torch's own thread pool would only fight
    # onnxruntime's for the cores.
    torch.set_num_threads(1)
    path = untrained_model(
        Path(tempfile.mkdtemp()) / "bench.onnx", tuple(f"c{i}" for i in range(FEATURES)), 32
    )
    print(f"device engine on {args.device}; GPU usable: {cuda_available()}")
    print(f"{'streams':>8} {'host ms/wave':>13} {'device ms/wave':>15} {'host/device':>12} {'table MB':>9}")
    for n in args.streams:
        streams = [f"s{i}" for i in range(n)]
        x = np.random.default_rng(0).normal(70, 5, (n, FEATURES)).astype(np.float32)
        host = HostEngine(path, n)
        device = DeviceEngine(path, n, args.device)
        host_ms = per_wave_ms(host, streams, x, args.waves)
        device_ms = per_wave_ms(device, streams, x, args.waves)
        ratio, megabytes = host_ms / device_ms, device.table.nbytes / 1e6
        line = f"{n:>8} {host_ms:>13.2f} {device_ms:>15.2f} {ratio:>12.2f} {megabytes:>9.1f}"
        if args.device == "cuda":
            line += f"  GPU allocated {torch.cuda.memory_allocated() / 1e6:.1f} MB"
        print(line, flush=True)


if __name__ == "__main__":
    main()
