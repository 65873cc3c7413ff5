"""Alert and score messages as published to Kafka (the formats in the README)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from daemon.alerts import AlertEvent, SourceKey
from daemon.model_file import CongestionInfo, ModelInfo
from daemon.records import MAX_TS, format_timestamp

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


def congestion_detail(
    head: CongestionInfo, forecast: np.ndarray, current: float, ts: float, limit: float
) -> dict[str, Any]:
    """What a congestion alert says beyond the score: the forecast, the limit and when it is reached.

    The time to the limit interpolates linearly from the current load to the warning forecast at the
    horizon; it is None when that forecast stays under the limit (resolving readings).

    >>> from daemon.model_file import CongestionInfo
    >>> head = CongestionInfo(channel=0, quantiles=(0.5, 0.9), warn=0, limit=20.0, horizon_s=1800.0)
    >>> d = congestion_detail(head, np.array([26.0, 31.0]), 14.0, 0.0, 20.0)
    >>> d["forecast"]["quantiles"], d["time_to_limit_s"], d["expected_at"]
    ({'0.5': 26.0, '0.9': 31.0}, 900.0, '1970-01-01T00:15:00.000Z')
    """
    value = float(forecast[head.warn])
    if current >= limit:
        eta: float | None = 0.0
    elif value >= limit:
        eta = head.horizon_s * (limit - current) / (value - current)
    else:
        eta = None
    return {
        "forecast": {
            "value": round(value, 6),
            "quantile": head.quantiles[head.warn],
            "horizon_s": head.horizon_s,
            "quantiles": {
                f"{q:g}": round(float(v), 6) for q, v in zip(head.quantiles, forecast, strict=True)
            },
        },
        "limit": round(limit, 6),
        "current": round(current, 6),
        "time_to_limit_s": None if eta is None else round(eta, 3),
        # past year 9999 (a stamp near the end of the range) it cannot be written, and is not useful
        "expected_at": None if eta is None or ts + eta > MAX_TS else format_timestamp(ts + eta),
    }


def model_field(name: str, model: ModelInfo) -> dict[str, str]:
    """Which model spoke: its name in the config (as in metrics and logs), the version, and the name it
    was trained under, which two config entries sharing one file have in common."""
    return {"name": name, "version": model.version, "trained_name": model.name}


def alert_message(
    event: AlertEvent,
    stream: str,
    name: str,
    model: ModelInfo,
    contrib: np.ndarray,
    top: int,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The alert record of the model configured as ``name``; ``detail`` adds kind-specific fields (a
    congestion alert's forecast)."""
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
        "model": model_field(name, model),
        "source": {"topic": topic, "partition": partition, "offset": offset},
        **(detail or {}),
    }


def score_message(
    stream: str,
    ts: float,
    score: float,
    name: str,
    model: ModelInfo,
    forecast: np.ndarray | None = None,
    fault: float | None = None,
) -> dict[str, Any]:
    """A reading's score; with a congestion head also the load forecast its warnings are decided on,
    with a fault head the fault probability."""
    message: dict[str, Any] = {
        "stream": stream,
        "ts": format_timestamp(ts),
        "score": round(score, 6),
        "model": model_field(name, model),
    }
    head = model.congestion
    if head is not None and forecast is not None:
        message["forecast"] = round(float(forecast[head.warn]), 6)
    if fault is not None:
        message["fault_probability"] = round(fault, 6)
    return message
