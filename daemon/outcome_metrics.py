"""The daemon's metrics from what the processor reports: a poll's outcome, the streams and state held, the
models loaded."""

from __future__ import annotations

import collections
import time
from typing import get_args

import numpy as np

from daemon.alerts import EventState
from daemon.config import ALERT_KINDS
from daemon.metrics import RELOAD_RESULTS, Metrics
from daemon.processor import Outcome, Processor


def count_outcome(m: Metrics, records: int, outcome: Outcome) -> None:
    """What one poll's ``records`` came to: consumed, rejected and dropped by reason, scored, waves, latency,
    alerts."""
    m.consumed.inc(records)
    for _, rejection in outcome.rejected:
        m.rejected.labels(reason=rejection.reason).inc()
    for drop in outcome.dropped:
        m.dropped.labels(reason=drop.reason).inc()
    m.unknown_channels.inc(outcome.unknown_channels)
    m.carried.inc(outcome.carried)
    m.stream_resets.labels(reason="gap").inc(outcome.gap_resets)
    m.stream_resets.labels(reason="non_finite").inc(
        sum(r.reason == "non_finite_score" for _, r in outcome.rejected)
    )
    for model, count in outcome.faster.items():
        m.faster.labels(model=model).inc(count)
    m.evicted.inc(outcome.evicted)
    for model, size, seconds in outcome.waves:
        m.batch_size.labels(model=model).observe(size)
        m.step_seconds.labels(model=model).observe(seconds)
    counts: collections.Counter[str] = collections.Counter()
    for wave in outcome.scored_waves:
        counts[wave.model] += len(wave.readings)
    for model, count in counts.items():
        m.scored.labels(model=model).inc(count)
    stamps = [
        r.source.record_ts
        for wave in outcome.scored_waves
        for r in wave.readings
        if r.source.record_ts is not None
    ]
    if stamps:
        m.latency.observe_many(np.maximum(0.0, time.time() - np.array(stamps, dtype=np.float64)))
    for alert in outcome.alerts:
        m.alerts.labels(kind=alert["kind"], severity=alert["severity"], state=alert["state"]).inc()


def state_gauges(m: Metrics, processor: Processor) -> None:
    """Streams, firing alerts and state bytes as they stand now."""
    for model, count in processor.active_streams.items():
        m.active_streams.labels(model=model).set(count)
    for model, runtime in processor.runtimes.items():
        for kind in ALERT_KINDS:  # a kind a reload took away reads 0, not its last count
            alerts = runtime.kinds.get(kind)
            firing = 0 if alerts is None else sum(s.phase == "firing" for s in alerts.states.values())
            m.alerts_firing.labels(model=model, kind=kind).set(firing)
    by_device: dict[str, int] = {}
    for runtime in processor.runtimes.values():
        table = runtime.engine.table
        by_device[table.device] = by_device.get(table.device, 0) + table.nbytes
    for device, nbytes in by_device.items():
        m.state_bytes.labels(device=device).set(nbytes)


def model_info(m: Metrics, processor: Processor) -> None:
    """Each model's version, trained name, file hash and channels; and its series of every counter and
    histogram, at 0 until they count (see Metrics)."""
    for name, runtime in processor.runtimes.items():
        m.scored.labels(model=name)
        m.faster.labels(model=name)
        m.batch_size.labels(model=name)
        m.step_seconds.labels(model=name)
        for result in RELOAD_RESULTS:
            m.reloads.labels(model=name, result=result)
        for kind, alerts in runtime.kinds.items():
            policies = [alerts.policy, *(policy for _, policy in alerts.overrides)]
            for severity in {severity for policy in policies for severity, _ in policy.severities}:
                for state in get_args(EventState):
                    m.alerts.labels(kind=kind, severity=severity, state=state)
        info = runtime.engine.info
        m.model_info.labels(model=name).info(
            {
                "version": info.version,
                "trained_name": info.name,
                "sha256": info.sha256[:16],
                "features": ",".join(info.features),
            }
        )
