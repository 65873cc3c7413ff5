"""Memory added by live streams against the raw bytes of their recurrent state, measured in one run.

    .venv/bin/python bench/state_memory.py [--streams 1000000] [--hidden 32]

Feeds one reading for each of N streams through the daemon's core (decode, route, state table,
ONNX step, alert state machine) and prints the resident-size growth, the raw state bytes, their ratio
and the per-stream constant on top of the state.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
from pathlib import Path

from daemon.config import parse_config
from daemon.engine import HostEngine
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from train.export import untrained_model


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1_000_000)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--chunk", type=int, help="records per poll (default: the daemon's max_poll_records)")
    args = parser.parse_args()
    model = untrained_model(Path(tempfile.mkdtemp()) / "m.onnx", ("temp_c",), hidden=args.hidden)
    # The daemon's own batching defaults: a poll's temporaries are part of what stays resident.
    config = parse_config({"models": [{"name": "m", "path": str(model)}]}, Path("."), env={})
    chunk = args.chunk or config.batching.max_poll_records
    processor = Processor(config, {"m": HostEngine(model, 1024)})
    # Warm up code paths and allocator pools (onnxruntime's arena grows to the largest wave) with one
    # full wave of other streams, then forget them: "before" holds everything but the streams.
    warm = [f"warm-{i}" for i in range(config.batching.max_batch)]
    processor.process(
        [
            RawRecord(
                s.encode(),
                json.dumps({"stream": s, "ts": 1.0, "values": {"temp_c": 70.0}}).encode(),
                Source("r", 0, 0),
            )
            for s in warm
        ]
    )
    processor.runtimes["m"].evict(warm, 1.0)
    gc.collect()
    before = rss_bytes()
    for start in range(0, args.streams, chunk):
        records = [
            RawRecord(
                f"s{i:07d}".encode(),
                json.dumps({"stream": f"s{i:07d}", "ts": 1.0, "values": {"temp_c": 70.0}}).encode(),
                Source("r", 0, i),
            )
            for i in range(start, min(start + chunk, args.streams))
        ]
        out = processor.process(records)
        assert sum(len(wave.readings) for wave in out.scored_waves) == len(records)
        del records, out
    gc.collect()
    added = rss_bytes() - before
    table = processor.runtimes["m"].engine.table
    width = table.width
    raw = args.streams * width * 4
    live = len(table.slots)
    print(
        f"streams {live:,}  state {width} floats = {width * 4} B each  capacity {table.slots.capacity:,}  "
        f"records per poll {chunk:,}"
    )
    print(
        f"resident size added {added / 2**20:,.1f} MiB  raw state {raw / 2**20:,.1f} MiB  "
        f"ratio {added / raw:.2f}  per-stream constant {(added - raw) / live:,.0f} B"
    )
    # What the slot map holds by its own count, to tell it from what the process keeps besides.
    print(f"slot map {table.slots.nbytes / 2**20:,.1f} MiB = {table.slots.nbytes / live:,.0f} B per stream")


if __name__ == "__main__":
    main()
