"""Alert and score messages as published to Kafka (the formats in DESIGN.md)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from daemon.alerts import AlertEvent, SourceKey
from daemon.model_file import ModelInfo
from daemon.records import format_timestamp

# Fixed namespace: the same (stream, kind, first offending offset) yields the same id in every run, so a
# replay after a crash re-emits ids consumers have seen. A stream lives on one partition, so its offsets
# are unique; the topic name is left out so that a mirrored or renamed readings topic keeps the ids.
_ALERT_NAMESPACE = uuid.UUID("5d0f6c1e-6b7a-4c6e-9d51-2f3c1b8a7e40")


def alert_id(stream: str, kind: str, first: SourceKey) -> str:
    """
    >>> a = alert_id("press-07", "fault", ("readings", 2, 18231))
    >>> a == alert_id("press-07", "fault", ("mirror", 2, 18231))
    True
    >>> a == alert_id("press-07", "fault", ("readings", 2, 18232))
    False
    """
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{stream}\x1f{kind}\x1f{first[2]}"))


def top_channels(contrib: np.ndarray, channels: tuple[str, ...], count: int) -> list[dict[str, Any]]:
    order = np.argsort(-contrib, kind="stable")[:count]
    return [{"name": channels[i], "share": round(float(contrib[i]), 4)} for i in order if contrib[i] > 0]


def alert_message(
    event: AlertEvent, stream: str, model: ModelInfo, contrib: np.ndarray, top: int
) -> dict[str, Any]:
    topic, partition, offset = event.source
    return {
        "id": alert_id(stream, event.kind, event.first_source),
        "kind": event.kind,
        "state": event.state,
        "severity": event.severity,
        "stream": stream,
        "ts": format_timestamp(event.ts),
        "started_at": format_timestamp(event.started_at),
        "score": round(event.score, 6),
        "peak": round(event.peak, 6),
        "threshold": round(event.threshold, 6),
        "resolution": event.resolution,
        "top_channels": top_channels(contrib, model.features, top),
        "model": {"name": model.name, "version": model.version},
        "source": {"topic": topic, "partition": partition, "offset": offset},
    }


def score_message(stream: str, ts: float, score: float, model: ModelInfo) -> dict[str, Any]:
    return {
        "stream": stream,
        "ts": format_timestamp(ts),
        "score": round(score, 6),
        "model": {"name": model.name, "version": model.version},
    }
