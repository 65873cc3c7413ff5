"""Checkpoints: every live stream's state, alert states and the offsets they stand for, on local disk.

A checkpoint is one unit: the next offset of each partition, and for every model the state
rows, alert states and carried values of its streams, plus the model's state layout. Restoring a
partition's streams and seeking to its offset gives the same results as never having stopped. It is
written atomically (a temporary file renamed over the old one), so a crash leaves the previous one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.alerts import AlertState
from daemon.config import Config
from daemon.engine import state_layout
from daemon.errors import ConfigError
from daemon.processor import Processor
from daemon.runtime import ModelRuntime, fault_score

FORMAT_VERSION = 1
# A revoked partition that has not come back within this long has moved on for good: its snapshot goes.
PARK_TTL_S = 600.0
log = logging.getLogger("faultcast.checkpoint")


@dataclass(frozen=True)
class ModelSnapshot:
    layout: str  # state_layout() of the model that wrote the rows; restored only under the same layout
    sha256: str
    streams: list[str]
    partitions: list[int]
    last_ts: list[float]
    rows: np.ndarray  # [len(streams), state width]
    alerts: dict[str, dict[str, dict[str, Any]]]  # kind -> stream -> AlertState fields
    carried: dict[str, tuple[list[float], int]]  # stream -> (last vector, readings carried in a row)
    since_score: dict[str, int]
    # What the fault alerts followed (runtime.fault_score), the model version that raised the alerts and
    # each kind's threshold, to resolve alerts that cannot go on under another model; None in
    # checkpoints written before they were kept
    fault_score: list[Any] | None = None
    version: str | None = None
    trained_name: str | None = None
    thresholds: dict[str, float] | None = None


@dataclass(frozen=True)
class Checkpoint:
    topic: str
    offsets: dict[int, int]  # partition -> next offset to read
    watermark: float
    models: dict[str, ModelSnapshot]
    # partition -> the metadata of the offset commit the state goes on from (each run of the daemon tags
    # its commits); the group's commit must still carry it, or another instance has read the partition
    # since. None in checkpoints written before it was kept.
    commits: dict[int, str] | None = None


def take(
    processor: Processor, topic: str, offsets: dict[int, int], commits: dict[int, str] | None = None
) -> Checkpoint:
    """A snapshot of the live streams of the partitions in ``offsets``; call it only between two polls
    (nothing half-processed)."""
    return Checkpoint(
        topic,
        dict(offsets),
        processor.watermark,
        {name: _snapshot(rt, set(offsets)) for name, rt in processor.runtimes.items()},
        None if commits is None else {p: commits[p] for p in offsets if p in commits},
    )


def _snapshot(rt: ModelRuntime, partitions: set[int]) -> ModelSnapshot:
    table = rt.engine.table
    streams, slots = table.slots.on_partitions(partitions)
    return ModelSnapshot(
        layout=str(state_layout(rt.engine.info)),
        sha256=rt.engine.info.sha256,
        streams=streams,
        partitions=table.slots.partition[slots].tolist(),
        last_ts=table.slots.last_ts[slots].tolist(),
        rows=table.gather(slots),
        alerts={
            kind: {s: dataclasses.asdict(state) for s, state in alerts.states.items()}
            for kind, alerts in rt.kinds.items()
        },
        carried={s: (list(v), run) for s, (v, run) in rt.last_values.items()},
        since_score=dict(rt.since_score),
        fault_score=list(fault_score(rt.engine.info)),
        version=rt.engine.info.version,
        trained_name=rt.engine.info.name,
        thresholds={kind: alerts.policy.threshold for kind, alerts in rt.kinds.items()},
    )


def restore(processor: Processor, checkpoint: Checkpoint, partitions: set[int]) -> int:
    """Puts back the streams of ``partitions`` for every model whose state layout is unchanged.

    Alerts the snapshot holds as firing under a model whose score meant something else (another state
    layout, or a fault score made differently) cannot go on: they are resolved as ``model_reload`` with
    the next poll, as a reload resolves its own. Returns how many streams were restored; the caller
    seeks each partition to its checkpoint offset.
    """
    processor.watermark = max(processor.watermark, checkpoint.watermark)
    restored = 0
    for name, snap in checkpoint.models.items():
        rt = processor.runtimes.get(name)
        keep = [i for i, p in enumerate(snap.partitions) if p in partitions]
        if rt is None:
            log.warning(
                "checkpoint state of a model no longer configured is not restored", extra={"model": name}
            )
            continue
        if snap.layout != str(state_layout(rt.engine.info)):
            log.warning(
                "checkpoint state of a model that changed shape is not restored", extra={"model": name}
            )
            _end_alerts(rt, snap, keep, sorted(snap.alerts))
            continue
        if not keep:
            continue
        streams = [snap.streams[i] for i in keep]
        table = rt.engine.table
        slots = table.assign(streams)
        table.scatter(slots, snap.rows[keep])
        table.slots.last_ts[slots] = [snap.last_ts[i] for i in keep]
        table.slots.partition[slots] = [snap.partitions[i] for i in keep]
        wanted = set(streams)
        same_faults = snap.fault_score in (None, list(fault_score(rt.engine.info)))
        for kind, states in snap.alerts.items():
            if kind in rt.kinds and (kind != "fault" or same_faults):
                rt.kinds[kind].states.update({s: _alert_state(f) for s, f in states.items() if s in wanted})
        ended = sorted(set(snap.alerts) - set(rt.kinds)) + ([] if same_faults else ["fault"])
        _end_alerts(rt, snap, keep, ended)
        rt.last_values.update(
            {s: (list(map(float, v)), run) for s, (v, run) in snap.carried.items() if s in wanted}
        )
        rt.since_score.update({s: n for s, n in snap.since_score.items() if s in wanted})
        restored += len(streams)
    return restored


def _end_alerts(rt: ModelRuntime, snap: ModelSnapshot, rows: list[int], kinds: list[str]) -> None:
    """Resolves (model_reload) the firing alerts of ``kinds`` the snapshot holds for these rows' streams."""
    last_ts = {snap.streams[i]: snap.last_ts[i] for i in rows}
    now = rt.engine.info
    made_by = dataclasses.replace(
        now, version=snap.version or now.version, name=snap.trained_name or now.name
    )
    for kind in kinds:
        threshold = (snap.thresholds or {}).get(kind)
        for stream, fields in snap.alerts.get(kind, {}).items():
            if stream in last_ts:
                rt.end_restored(kind, stream, _alert_state(fields), last_ts[stream], made_by, threshold)


def _alert_state(fields: dict[str, Any]) -> AlertState:
    first = fields["first_source"]
    return AlertState(**{**fields, "first_source": None if first is None else tuple(first)})


def save(checkpoint: Checkpoint, path: Path) -> None:
    """Writes ``checkpoint`` to ``path`` atomically: readers see the old file or the new one, whole."""
    meta = {
        "format_version": FORMAT_VERSION,
        "topic": checkpoint.topic,
        "offsets": {str(p): o for p, o in checkpoint.offsets.items()},
        "watermark": checkpoint.watermark,
        "commits": None if checkpoint.commits is None else {str(p): t for p, t in checkpoint.commits.items()},
        "models": {
            name: {k: v for k, v in dataclasses.asdict(snap).items() if k != "rows"}
            for name, snap in checkpoint.models.items()
        },
    }
    arrays = {f"rows/{name}": snap.rows for name, snap in checkpoint.models.items()}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, allow_pickle=False, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``; None if there is none or it cannot be read (the daemon starts cold)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            if meta["format_version"] != FORMAT_VERSION:
                raise ValueError(f"format_version {meta['format_version']} is not {FORMAT_VERSION}")
            models = {
                name: ModelSnapshot(**{**fields, "rows": data[f"rows/{name}"]})
                for name, fields in meta["models"].items()
            }
        commits = meta.get("commits")
        return Checkpoint(
            meta["topic"],
            {int(p): int(o) for p, o in meta["offsets"].items()},
            meta["watermark"],
            models,
            None if commits is None else {int(p): str(t) for p, t in commits.items()},
        )
    except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError, TypeError) as exc:
        log.warning("checkpoint unreadable; streams start cold", extra={"path": str(path), "error": str(exc)})
        return None


def check_folder(config: Config) -> None:
    """Raises ConfigError unless the checkpoint folder, when there is one, is a writable folder."""
    folder = config.state.checkpoint_dir
    if folder is not None and not (os.path.isdir(folder) and os.access(folder, os.W_OK)):
        raise ConfigError(f"state.checkpoint_dir {folder} is not a writable folder; create it, or unset it")


class Checkpoints:
    """This instance's checkpoints: the file written at commits, and snapshots parked at a revoke.

    A parked snapshot may be ahead of the committed offsets (the records between were processed and
    their alerts are still tracked by this process); the file is used only where it is not ahead, so a
    crash never skips records whose alerts were not acknowledged.
    """

    def __init__(self, config: Config) -> None:
        folder = config.state.checkpoint_dir
        name = re.sub(r"[^A-Za-z0-9._-]", "_", f"{config.kafka.group_id}--{config.kafka.readings_topic}")
        self.path = None if folder is None else Path(folder) / f"{name}.ckpt.npz"
        self.interval = config.state.checkpoint_interval_s
        self._last = time.monotonic()
        self._parked: dict[int, tuple[float, Checkpoint]] = {}
        check_folder(config)

    def due(self, force: bool = False) -> bool:
        now = time.monotonic()
        if self.path is None or not (force or now - self._last >= self.interval):
            return False
        self._last = now
        return True

    def write(self, checkpoint: Checkpoint) -> None:
        assert self.path is not None
        save(checkpoint, self.path)

    def park(self, checkpoint: Checkpoint) -> None:
        """Keeps a revoked partition's snapshot for a while, in case the partition comes back."""
        self._drop_expired()
        self._parked.update(dict.fromkeys(checkpoint.offsets, (time.monotonic(), checkpoint)))

    def _drop_expired(self) -> None:
        now = time.monotonic()
        self._parked = {p: (t, c) for p, (t, c) in self._parked.items() if now - t < PARK_TTL_S}

    def may_restore(self, partitions: set[int]) -> bool:
        """Whether any checkpoint could hold these partitions (worth asking the broker for offsets)."""
        return self.path is not None or any(p in self._parked for p in partitions)

    def plan(
        self,
        partitions: set[int],
        committed: dict[int, int | None],
        earliest: dict[int, int],
        max_replay: int,
        tags: dict[int, str] | None = None,
    ) -> list[tuple[Checkpoint, set[int]]]:
        """Which checkpoint restores which of ``partitions``; the others start cold at their commit.

        ``tags``: the metadata of each partition's committed offset. A checkpoint goes on only from the
        commit it was taken after: a later one by another instance means that instance scored the
        records since, and raised their alerts, so replaying them here would raise them again."""
        on_disk = load(self.path) if self.path is not None else None
        self._drop_expired()
        chosen: dict[int, Checkpoint] = {}
        for p in partitions:
            entry, done = self._parked.pop(p, None), committed.get(p)
            parked = entry[1] if entry is not None else None
            # This instance never commits past what it read: a commit past the snapshot is another's.
            if (
                parked is not None
                and _ours(parked, p, tags, parked=True)
                and (done is None or done <= parked.offsets[p])
                and _replayable(parked.offsets[p], done, earliest.get(p, 0), max_replay)
            ):
                chosen[p] = parked
            elif (
                on_disk is not None and p in on_disk.offsets and done is not None and _ours(on_disk, p, tags)
            ):
                offset = on_disk.offsets[p]
                if offset <= done and _replayable(offset, done, earliest.get(p, 0), max_replay):
                    chosen[p] = on_disk
        groups: dict[int, tuple[Checkpoint, set[int]]] = {}
        for p, checkpoint in chosen.items():
            groups.setdefault(id(checkpoint), (checkpoint, set()))[1].add(p)
        return list(groups.values())


def _ours(checkpoint: Checkpoint, partition: int, tags: dict[int, str] | None, parked: bool = False) -> bool:
    """Whether the group's last commit on ``partition`` is the one ``checkpoint`` goes on from. Where the
    checkpoint does not know (written before tags were kept, or before this run had looked the commit
    up) it is taken to be. A commit without a tag (an older version's, or an operator's offset reset,
    which needs the group empty) is no one's, but for a snapshot this run parked: no reset can have come
    while it was a member."""
    if checkpoint.commits is None or partition not in checkpoint.commits or tags is None:
        return True
    expected = checkpoint.commits[partition]
    return (expected != "" or parked) and tags.get(partition) == expected


def _replayable(offset: int, committed: int | None, earliest: int, max_replay: int) -> bool:
    """Whether reading again from ``offset`` is possible (still retained) and bounded."""
    return offset >= earliest and (committed is None or committed - offset <= max_replay)
