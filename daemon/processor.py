"""The daemon's core without I/O: records in; scores, alerts, rejections and drops out.

Kafka, metrics and the clock stay outside, so this is what tests, the backtest and the service share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daemon.batching import waves
from daemon.config import Config
from daemon.engine import Engine
from daemon.records import Reading, Rejection, Source, cached_timestamps, decode, to_vector
from daemon.routing import Router
from daemon.runtime import ModelRuntime


# Slotted, not frozen, like the types in daemon.records: one of each is built per record.
@dataclass(slots=True)
class RawRecord:
    key: bytes | None
    value: bytes | None
    source: Source
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class Scored:
    model: str
    stream: str
    ts: float
    score: float
    source: Source
    publish: bool  # whether this score goes to the scores topic (every Nth reading of a stream)
    forecast: np.ndarray | None = None  # the congestion head's quantile forecasts [Q], raw units
    fault: float | None = None  # the fault head's probability


@dataclass(slots=True)
class Admitted:
    """A reading that passed every check, waiting for its wave."""

    record: RawRecord
    reading: Reading
    vector: list[float]  # in the model's channel order
    reset: bool  # start the stream cold (gap or idle beyond the TTL)


@dataclass(frozen=True)
class Drop:
    """A valid reading that is not scored: its timestamp is not after the stream's last one."""

    reason: str  # duplicate_timestamp | out_of_order
    stream: str
    ts: float
    source: Source


@dataclass
class Outcome:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)
    rejected: list[tuple[RawRecord, Rejection]] = field(default_factory=list)
    dropped: list[Drop] = field(default_factory=list)
    unknown_channels: int = 0
    carried: int = 0
    gap_resets: int = 0
    evicted: int = 0
    waves: list[tuple[str, int, float]] = field(default_factory=list)  # model, batch size, seconds


class Processor:
    def __init__(self, config: Config, engines: dict[str, Engine]) -> None:
        self.config = config
        self.runtimes = {m.name: ModelRuntime(m.name, engines[m.name], config) for m in config.models}
        self.router = Router([(m.name, m.streams) for m in config.models])
        self.watermark = float("-inf")
        # A stream silent for longer than its TTL starts cold whether or not its slot was evicted yet, so
        # results do not depend on where poll boundaries fall (a replay gives the same scores).
        state = config.state
        self.max_gap = state.idle_ttl_s if state.max_gap_s is None else min(state.max_gap_s, state.idle_ttl_s)
        self.carry_limit = config.records.carry_missing_for

    def process(self, records: list[RawRecord]) -> Outcome:
        """Scores one poll's records in order; alerts come out in the order their readings came in."""
        out = Outcome()
        for rt in self.runtimes.values():
            out.alerts += rt.owed
            rt.owed = []
        pending: dict[str, list[Admitted]] = {name: [] for name in self.runtimes}
        limits = self.config.records
        timestamp = cached_timestamps()
        decoded = [
            decode(r.key, r.value, r.source, limits.max_bytes, limits.max_future_s, timestamp)
            for r in records
        ]
        where = self._locate(list(dict.fromkeys(d.stream for d in decoded if isinstance(d, Reading))))
        last_seen: dict[str, float] = {}
        for record, reading in zip(records, decoded, strict=True):
            admitted = self._admit(record, reading, where, last_seen, out)
            if admitted is not None:
                pending[admitted[0]].append(admitted[1])
        for name, items in pending.items():
            if items:
                self._score(self.runtimes[name], items, out)
        cutoff = self.watermark - self.config.state.idle_ttl_s
        for rt in self.runtimes.values():
            idle = rt.engine.table.slots.idle_since(cutoff)
            out.alerts += rt.evict(idle, self.watermark)
            out.evicted += len(idle)
        return out

    def evict_partitions(self, partitions: set[int]) -> int:
        """Forgets the streams of partitions this instance no longer owns.

        Their alerts move with the partitions: the new owner resumes from the committed offsets, so
        no resolution is sent from here.
        """
        count = 0
        for rt in self.runtimes.values():
            streams = rt.engine.table.slots.on_partitions(partitions)
            rt.evict(streams, self.watermark, resolve=False)
            count += len(streams)
        return count

    @property
    def active_streams(self) -> dict[str, int]:
        return {name: len(rt.engine.table.slots) for name, rt in self.runtimes.items()}

    def _admit(
        self,
        record: RawRecord,
        decoded: Reading | Rejection,
        where: dict[str, tuple[str, float | None]],
        last_seen: dict[str, float],
        out: Outcome,
    ) -> tuple[str, Admitted] | None:
        if isinstance(decoded, Rejection):
            out.rejected.append((record, decoded))
            return None
        located = where.get(decoded.stream)
        if located is None:
            out.rejected.append(
                (
                    record,
                    Rejection(
                        "unknown_stream", "no model's streams pattern matches", record.source, decoded.stream
                    ),
                )
            )
            return None
        name, last_ts = located
        runtime = self.runtimes[name]
        # Invalid values are poison whatever their timestamp, so they are checked before ordering.
        limit = self.carry_limit
        last, carried_run = runtime.last_values.get(decoded.stream, (None, 0)) if limit else (None, 0)
        converted = to_vector(decoded, runtime.engine.info.features, last if carried_run < limit else None)
        if isinstance(converted, Rejection):
            out.rejected.append((record, converted))
            return None
        vector, carried_names, unknown = converted
        carried = len(carried_names)
        previous = last_seen.get(decoded.stream, last_ts)
        if previous is not None and decoded.ts <= previous:
            reason = "duplicate_timestamp" if decoded.ts == previous else "out_of_order"
            out.dropped.append(Drop(reason, decoded.stream, decoded.ts, record.source))
            return None
        out.unknown_channels += unknown
        out.carried += carried
        if limit:
            run = runtime.last_values.get(decoded.stream, (vector, 0))[1]
            runtime.last_values[decoded.stream] = (vector, run + 1 if carried else 0)
        last_seen[decoded.stream] = decoded.ts
        self.watermark = max(self.watermark, decoded.ts)
        reset = previous is not None and decoded.ts - previous > self.max_gap
        out.gap_resets += reset
        return name, Admitted(record, decoded, vector, reset)

    def _locate(self, streams: list[str]) -> dict[str, tuple[str, float | None]]:
        """Per stream of a poll: the model that scores it and the last timestamp it scored (None for a
        stream without state). A stream with state stays with its model; others are routed. One
        lookup per model and poll, not per record."""
        located: dict[str, tuple[str, float | None]] = {}
        for name, runtime in self.runtimes.items():
            if not streams:
                break
            slot_map = runtime.engine.table.slots
            slots = slot_map.find(streams)
            known = (slots >= 0).tolist()
            last = slot_map.last_ts[slots].tolist()
            located.update((s, (name, t)) for s, k, t in zip(streams, known, last, strict=True) if k)
            streams = [s for s, k in zip(streams, known, strict=True) if not k]
        for stream in streams:
            routed = self.router.model_for(stream)
            if routed is not None:
                located[stream] = (routed, None)
        return located

    def _publish_score(self, runtime: ModelRuntime, stream: str) -> bool:
        """Whether this reading's score goes to the scores topic (the caller checks there is one)."""
        every = self.config.kafka.scores_every
        if every == 1:
            return True
        count = runtime.since_score.get(stream, 0) + 1
        runtime.since_score[stream] = 0 if count >= every else count
        return count >= every

    def _score(self, runtime: ModelRuntime, items: list[Admitted], out: Outcome) -> None:
        for wave in waves([item.reading.stream for item in items], self.config.batching.max_batch):
            batch = [items[i] for i in wave]
            streams = [item.reading.stream for item in batch]
            x = np.array([item.vector for item in batch], dtype=np.float32)
            reset = np.fromiter((item.reset for item in batch), dtype=bool, count=len(batch))
            ts = np.fromiter((item.reading.ts for item in batch), dtype=np.float64, count=len(batch))
            started = time.perf_counter()
            result = runtime.engine.step(streams, x, reset, ts)
            out.waves.append((runtime.name, len(batch), time.perf_counter() - started))
            slot_map = runtime.engine.table.slots
            slot_map.last_ts[result.slots] = ts
            slot_map.partition[result.slots] = [item.reading.source.partition for item in batch]
            # Python lists once per wave: indexing numpy arrays per row costs more than the step.
            scores, diverged = result.score.tolist(), result.diverged.tolist()
            faults = result.fault.tolist() if result.fault is not None else None
            holds = result.hold.tolist() if result.hold is not None else None
            watched = runtime.watched(streams, result).tolist()
            sampled = self.config.kafka.scores_topic is not None
            for row, item in enumerate(batch):
                reading, src = item.reading, item.reading.source
                if diverged[row]:
                    detail = "the model's score or state became non-finite; the stream restarts cold"
                    out.rejected.append(
                        (item.record, Rejection("non_finite_score", detail, src, reading.stream))
                    )
                    continue
                publish = sampled and self._publish_score(runtime, reading.stream)
                forecast = result.congestion[row] if result.congestion is not None else None
                score = scores[row]
                fault = faults[row] if faults is not None else None
                out.scored.append(
                    Scored(runtime.name, reading.stream, reading.ts, score, src, publish, forecast, fault)
                )
                if watched[row]:
                    hold = holds[row] if holds is not None else None
                    out.alerts += runtime.observe(
                        reading.stream, row, result, reading, item.vector, score, fault, hold
                    )
