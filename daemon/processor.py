"""The daemon's core without I/O: records in; scores, alerts, rejections and drops out.

Kafka, metrics and the clock stay outside, so this is what tests, the backtest and the service share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from daemon.batching import waves
from daemon.config import Config
from daemon.engine import Engine
from daemon.records import Reading, Rejection, Source, cached_timestamps, decode, to_vector
from daemon.routing import Router
from daemon.runtime import ModelRuntime


# Slotted, not frozen, like the types in daemon.records: one is built per record.
@dataclass(slots=True)
class RawRecord:
    key: bytes | None
    value: bytes | None
    source: Source
    headers: tuple[tuple[str, bytes | None], ...] = ()  # kafka-python gives a null header value as None


@dataclass(slots=True)
class Scored:
    """One scored reading, as ``ScoredWave.row`` gives it."""

    model: str
    stream: str
    ts: float
    score: float
    source: Source
    publish: bool  # whether this score goes to the scores topic (every Nth reading of a stream)
    forecast: np.ndarray | None = None  # the congestion head's quantile forecasts [Q], raw units
    fault: float | None = None  # the fault head's probability


@dataclass(frozen=True)
class ScoredWave:
    """One wave's scored readings, column by column: most polls only count them and time their latency,
    so no object is built per reading unless it is asked for (``row``)."""

    model: str
    readings: list[Reading]
    scores: list[float]
    forecast: np.ndarray | None  # [B, Q] the congestion head's quantile forecasts
    fault: list[float] | None  # the fault head's probabilities
    publish: list[bool] | None = None  # per reading, when there is a scores topic

    def row(self, i: int) -> Scored:
        reading = self.readings[i]
        return Scored(
            self.model,
            reading.stream,
            reading.ts,
            self.scores[i],
            reading.source,
            self.publish is not None and self.publish[i],
            None if self.forecast is None else self.forecast[i],
            None if self.fault is None else self.fault[i],
        )

    def subset(self, rows: list[int]) -> ScoredWave:
        return ScoredWave(
            self.model,
            [self.readings[i] for i in rows],
            [self.scores[i] for i in rows],
            None if self.forecast is None else self.forecast[rows],
            None if self.fault is None else [self.fault[i] for i in rows],
            None if self.publish is None else [self.publish[i] for i in rows],
        )


@dataclass(slots=True)
class Pending:
    """One model's admitted readings of a poll, waiting for their waves; one entry per reading."""

    records: list[RawRecord] = field(default_factory=list)
    readings: list[Reading] = field(default_factory=list)
    vectors: list[list[float]] = field(default_factory=list)  # in the model's channel order
    resets: list[bool] = field(default_factory=list)  # start the stream cold (gap or idle beyond the TTL)


DropReason = Literal["duplicate_timestamp", "out_of_order"]


@dataclass(frozen=True)
class Drop:
    """A valid reading that is not scored: its timestamp is not after the stream's last one."""

    reason: DropReason
    stream: str
    ts: float
    source: Source


@dataclass
class Outcome:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    scored_waves: list[ScoredWave] = field(default_factory=list)
    rejected: list[tuple[RawRecord, Rejection]] = field(default_factory=list)
    dropped: list[Drop] = field(default_factory=list)
    unknown_channels: int = 0
    carried: int = 0
    gap_resets: int = 0
    faster: dict[str, int] = field(default_factory=dict)  # per model: readings much faster than trained
    evicted: int = 0
    waves: list[tuple[str, int, float]] = field(default_factory=list)  # model, batch size, seconds

    def scored(self) -> list[Scored]:
        """Every scored reading, in wave order, one object each (built on each call)."""
        return [wave.row(i) for wave in self.scored_waves for i in range(len(wave.readings))]


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

    def process(self, records: list[RawRecord], read_at: float | None = None) -> Outcome:
        """Scores one poll's records in order; alerts come out in the order their readings came in.

        ``read_at`` (the wall clock when they were read) bounds the timestamps of records without one."""
        out = Outcome()
        for rt in self.runtimes.values():
            out.alerts += rt.owed
            rt.owed = []
        pending = {name: Pending() for name in self.runtimes}
        limits = self.config.records
        timestamp = cached_timestamps()
        decoded = [
            decode(r.key, r.value, r.source, limits.max_bytes, limits.max_future_s, timestamp, read_at)
            for r in records
        ]
        where = self._locate(list(dict.fromkeys(d.stream for d in decoded if isinstance(d, Reading))))
        last_seen: dict[str, float] = {}
        for record, reading in zip(records, decoded, strict=True):
            self._admit(record, reading, where, last_seen, pending, out)
        for name, items in pending.items():
            if items.readings:
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
            streams, _ = rt.engine.table.slots.on_partitions(partitions)
            rt.evict(streams, self.watermark, resolve=False)
            count += len(streams)
        return count

    @property
    def owes_alerts(self) -> bool:
        """Whether a model reload (or a restore under another model) ended alerts not resolved yet."""
        return any(rt.owed for rt in self.runtimes.values())

    @property
    def active_streams(self) -> dict[str, int]:
        return {name: len(rt.engine.table.slots) for name, rt in self.runtimes.items()}

    def _admit(
        self,
        record: RawRecord,
        decoded: Reading | Rejection,
        where: dict[str, tuple[str, float | None]],
        last_seen: dict[str, float],
        pending: dict[str, Pending],
        out: Outcome,
    ) -> None:
        """Checks one decoded record against its stream's model and history; queues it for its wave."""
        if isinstance(decoded, Rejection):
            out.rejected.append((record, decoded))
            return
        stream = decoded.stream
        located = where.get(stream)
        if located is None:
            detail = "no model's streams pattern matches"
            rejection = Rejection("unknown_stream", detail, record.source, stream, "validate")
            out.rejected.append((record, rejection))
            return
        name, last_ts = located
        runtime = self.runtimes[name]
        # Invalid values are poison whatever their timestamp, so they are checked before ordering.
        limit = self.carry_limit
        last, carried_run = runtime.last_values.get(stream, (None, 0)) if limit else (None, 0)
        converted = to_vector(decoded, runtime.engine.info.features, last if carried_run < limit else None)
        if isinstance(converted, Rejection):
            out.rejected.append((record, converted))
            return
        vector, carried_names, unknown = converted
        previous = last_seen.get(stream, last_ts)
        ts = decoded.ts
        if previous is not None and ts <= previous:
            reason: DropReason = "duplicate_timestamp" if ts == previous else "out_of_order"
            out.dropped.append(Drop(reason, stream, ts, record.source))
            return
        out.unknown_channels += unknown
        if limit:
            carried = len(carried_names)
            out.carried += carried
            run = runtime.last_values.get(stream, (vector, 0))[1]
            runtime.last_values[stream] = (vector, run + 1 if carried else 0)
        last_seen[stream] = ts
        self.watermark = max(self.watermark, ts)
        reset = previous is not None and ts - previous > self.max_gap
        out.gap_resets += reset
        # Under half the trained step: the model steps through time faster than it learned to (a
        # producer or resampling change); the odd early reading among the rest is jitter, which
        # Prometheus tells apart by the share (FaultcastReadingsFasterThanTrained).
        trained = runtime.engine.info.reading_step_s
        if previous is not None and trained is not None and ts - previous < trained / 2:
            out.faster[name] = out.faster.get(name, 0) + 1
        queue = pending[name]
        queue.records.append(record)
        queue.readings.append(decoded)
        queue.vectors.append(vector)
        queue.resets.append(reset)

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

    def _score(self, runtime: ModelRuntime, pending: Pending, out: Outcome) -> None:
        readings, sampled = pending.readings, self.config.kafka.scores_topic is not None
        for wave in waves([reading.stream for reading in readings], self.config.batching.max_batch):
            batch = [readings[i] for i in wave]
            streams = [reading.stream for reading in batch]
            x = np.array([pending.vectors[i] for i in wave], dtype=np.float32)
            reset = np.array([pending.resets[i] for i in wave], dtype=bool)
            ts = np.array([reading.ts for reading in batch], dtype=np.float64)
            started = time.perf_counter()
            result = runtime.engine.step(streams, x, reset, ts)
            out.waves.append((runtime.name, len(batch), time.perf_counter() - started))
            slot_map = runtime.engine.table.slots
            slot_map.last_ts[result.slots] = ts
            slot_map.partition[result.slots] = [reading.source.partition for reading in batch]
            # Python lists once per wave: indexing numpy arrays per row costs more than the step.
            scores = result.score.tolist()
            faults = result.fault.tolist() if result.fault is not None else None
            holds = result.hold.tolist() if result.hold is not None else None
            watched = runtime.watched(streams, result)
            scored = ScoredWave(runtime.name, batch, scores, result.congestion, faults)
            if result.diverged.any():
                self._reject_diverged([pending.records[i] for i in wave], batch, result.diverged, out)
                watched = watched & ~result.diverged
                scored = scored.subset(np.flatnonzero(~result.diverged).tolist())
            if scored.readings:  # not when every row diverged: no scores, so no metric series either
                if sampled:
                    publish = [self._publish_score(runtime, reading.stream) for reading in scored.readings]
                    scored = replace(scored, publish=publish)
                out.scored_waves.append(scored)
            for row in np.flatnonzero(watched).tolist():
                reading, vector = batch[row], pending.vectors[wave[row]]
                fault = faults[row] if faults is not None else None
                hold = holds[row] if holds is not None else None
                out.alerts += runtime.observe(
                    reading.stream, row, result, reading, vector, scores[row], fault, hold
                )

    @staticmethod
    def _reject_diverged(
        records: list[RawRecord], batch: list[Reading], diverged: npt.NDArray[np.bool_], out: Outcome
    ) -> None:
        """Dead-letters the rows whose score or state went non-finite (the engine reset their state)."""
        detail = "the model's score or state became non-finite; the stream restarts cold"
        for row in np.flatnonzero(diverged).tolist():
            reading = batch[row]
            rejection = Rejection("non_finite_score", detail, reading.source, reading.stream, "score")
            out.rejected.append((records[row], rejection))
