"""One model's engine and the per-stream bookkeeping around it: alert states, carried values, sampling."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.alerts import AlertEvent, AlertPolicy, AlertState, KindAlerts, expire
from daemon.config import ALERTING_DEFAULTS, AlertKindConfig, Config
from daemon.engine import Engine, Reloaded, WaveResult
from daemon.messages import alert_message, congestion_detail
from daemon.model_file import ModelInfo
from daemon.records import Reading


def policy_for(
    kind: str,
    config: AlertKindConfig,
    model_threshold: float | None,
    model_alerting: Mapping[str, float] | None = None,
) -> AlertPolicy:
    """The policy from the config, falling back to what the model was calibrated with, then defaults."""
    threshold = config.threshold if config.threshold is not None else model_threshold
    if threshold is None:
        raise ValueError(
            f"no {kind} threshold: set alerting.{kind}.threshold or use a model that carries one"
        )

    def setting(name: str, value: float | None) -> float:
        return value if value is not None else (model_alerting or {}).get(name, ALERTING_DEFAULTS[name])

    return AlertPolicy(
        kind=kind,
        threshold=threshold,
        resolve_threshold=threshold * setting("resolve_ratio", config.resolve_ratio),
        fire_after=int(setting("fire_after", config.fire_after)),
        resolve_after=int(setting("resolve_after", config.resolve_after)),
        cooldown_s=config.cooldown_s,
        severities=tuple(sorted(config.severities.items(), key=lambda kv: kv[1])),
    )


def fault_score(info: ModelInfo) -> tuple[object, ...]:
    """What fault alerts follow: the fault head's probability, or the anomaly score and how it is made."""
    score = info.metadata.get("score", {})
    made = (info.fault_head, score.get("adapt"), score.get("peak_half_life"), score.get("range_tolerance"))
    # Checks added later count only where a model has them, so that checkpoints written before they
    # existed still match the models without them.
    later = tuple((name, score[name]) for name in ("range_creep", "season") if score.get(name) is not None)
    return made + later


class ModelRuntime:
    """One model's engine plus the per-stream bookkeeping around it."""

    def __init__(self, name: str, engine: Engine, config: Config) -> None:
        self.name = name
        self.engine = engine
        self.config = config
        self.kinds = self._alert_kinds()
        self.last_values: dict[str, tuple[list[float], int]] = {}  # for carrying missing channels
        self.since_score: dict[str, int] = {}
        # resolved alerts a reload (or a restore under another model) ended, sent with the next poll
        self.owed: list[dict[str, Any]] = []

    def _alert_kinds(self) -> dict[str, KindAlerts]:
        """Fault alerts always; congestion alerts when the model has a congestion head."""
        info, alerting = self.engine.info, self.config.alerting
        calibrated = info.metadata.get("thresholds", {}).get("fault", {}).get("alerting")
        fault = policy_for("fault", alerting.fault, info.thresholds.get("fault"), calibrated)
        kinds = {"fault": KindAlerts(fault)}
        if info.congestion is not None:
            policy = policy_for("congestion", alerting.congestion, info.congestion.limit)
            overrides = [
                (pattern, policy_for("congestion", replace(alerting.congestion, threshold=limit), None))
                for pattern, limit in alerting.congestion.limits.items()
            ]
            kinds["congestion"] = KindAlerts(policy, overrides)
        return kinds

    def reload(self, path: Path) -> Reloaded | None:
        """Takes the model at ``path``; None if it did not change.

        Alert states carry over for the kinds whose score means the same under the new model; their
        policies take its thresholds. A kind the new model lacks, or a fault score that changed meaning
        (a fault head came or went, or the anomaly score's adaptive rate, peak gate or range check
        changed), ends its firing alerts as resolved (``model_reload``).
        """
        old = self.engine.info
        reloaded = self.engine.reload(path)
        if reloaded is not None:
            kinds = self._alert_kinds()
            for kind, alerts in self.kinds.items():
                same = kind in kinds and (
                    kind != "fault" or fault_score(old) == fault_score(self.engine.info)
                )
                if same:
                    kinds[kind].states = alerts.states
                else:
                    self.owed += self._resolve_all(kind, alerts, old)
            self.kinds = kinds
            if not reloaded.kept_state:
                self.last_values.clear()
        return reloaded

    def _resolve_all(self, kind: str, alerts: KindAlerts, info: ModelInfo) -> list[dict[str, Any]]:
        streams = list(alerts.states)
        ended = (
            self._end(kind, alerts, stream, ts, "model_reload", info)
            for stream, ts in zip(streams, self._last_ts(streams), strict=True)
        )
        return [message for message in ended if message is not None]

    def _end(
        self, kind: str, alerts: KindAlerts, stream: str, ts: float, resolution: str, info: ModelInfo
    ) -> dict[str, Any] | None:
        """Drops ``stream``'s state under ``kind``; the resolved alert owed if its alert was firing."""
        event = alerts.expire(stream, ts, resolution)
        return None if event is None else self._resolved(kind, event, stream, info)

    def _resolved(self, kind: str, event: AlertEvent, stream: str, info: ModelInfo) -> dict[str, Any]:
        """The message of an alert ended without a reading of its own (so no channel shares)."""
        no_channels = np.zeros(len(info.features), dtype=np.float32)
        return alert_message(event, stream, self.name, info, no_channels, self._alerting(kind).top_channels)

    def end_restored(
        self,
        kind: str,
        stream: str,
        state: AlertState,
        ts: float,
        made_by: ModelInfo,
        threshold: float | None,
    ) -> None:
        """Ends an alert a checkpoint held under a model whose score meant something else: resolved as
        ``model_reload`` with the next poll, as a reload resolves the alerts it ends, in the name of the
        model version that raised it (``made_by``). A kind this model lacks is resolved under the
        ``threshold`` it had then; without one (a checkpoint from before it was kept), it is left."""
        alerts = self.kinds.get(kind)
        if alerts is not None:
            if stream in alerts.states:  # live here already: its own alert goes on
                return
            policy = alerts.policy_of(stream)
        elif threshold is not None:
            policy = policy_for(kind, self._alerting(kind), threshold)
        else:
            return
        event = expire(policy, state, ts, "model_reload")
        if event is not None:
            self.owed.append(self._resolved(kind, event, stream, made_by))

    def _last_ts(self, streams: list[str]) -> list[float]:
        """Each stream's last scored timestamp; 0.0 for one without state."""
        slot_map = self.engine.table.slots
        slots = slot_map.find(streams)
        known: list[float] = np.where(slots >= 0, slot_map.last_ts[slots], 0.0).tolist()
        return known

    def evict(self, streams: list[str], ts: float, resolve: bool = True) -> list[dict[str, Any]]:
        """Forgets ``streams``; with ``resolve``, returns the resolved alerts owed for firing ones."""
        owed = []
        self.engine.table.evict(streams)
        for stream in streams:
            for kind, alerts in self.kinds.items():
                message = self._end(kind, alerts, stream, ts, "stream_idle", self.engine.info)
                if message is not None and resolve:
                    owed.append(message)
            self.last_values.pop(stream, None)
            self.since_score.pop(stream, None)
        return owed

    def _alerting(self, kind: str) -> AlertKindConfig:
        return self.config.alerting.congestion if kind == "congestion" else self.config.alerting.fault

    def watched(self, streams: list[str], result: WaveResult) -> npt.NDArray[np.bool_]:
        """Per row of a wave: whether its reading can move an alert state, i.e. its value for some kind
        reaches that kind's least threshold or its stream is not idle under it. The rest need no
        ``observe``: most readings of most streams, most of the time."""
        fault = result.score if result.fault is None else result.fault
        mask: npt.NDArray[np.bool_] = fault >= self.kinds["fault"].least_threshold
        congestion, head = self.kinds.get("congestion"), self.engine.info.congestion
        if congestion is not None and head is not None and result.congestion is not None:
            mask |= result.congestion[:, head.warn] >= congestion.least_threshold
        busy: set[str] = set().union(*(kind.states for kind in self.kinds.values()))
        if busy:
            mask |= np.fromiter(map(busy.__contains__, streams), dtype=bool, count=len(streams))
        return mask

    def observe(
        self,
        stream: str,
        row: int,
        result: WaveResult,
        reading: Reading,
        vector: list[float],
        anomaly: float,
        fault_probability: float | None,
        hold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Feeds row ``row`` of a wave (whose anomaly score, fault probability and hold score the caller
        already read out) to each alert kind; the alert messages it causes."""
        src = reading.source
        key = (src.topic, src.partition, src.offset)
        info, messages = self.engine.info, []
        if fault_probability is None:
            event = self.kinds["fault"].observe(stream, anomaly, reading.ts, key, hold)
        else:
            event = self.kinds["fault"].observe(stream, fault_probability, reading.ts, key)
        if event is not None:
            top = self.config.alerting.fault.top_channels
            detail = {"anomaly_score": round(anomaly, 6)} if result.fault is not None else None
            messages.append(alert_message(event, stream, self.name, info, result.contrib[row], top, detail))
        head, congestion = info.congestion, self.kinds.get("congestion")
        if head is not None and congestion is not None and result.congestion is not None:
            forecast = result.congestion[row]
            event = congestion.observe(stream, float(forecast[head.warn]), reading.ts, key)
            if event is not None:
                share = np.zeros(len(info.features), dtype=np.float32)
                share[head.channel] = 1.0
                limit = congestion.policy_of(stream).threshold
                detail = congestion_detail(head, forecast, float(vector[head.channel]), reading.ts, limit)
                top = self.config.alerting.congestion.top_channels
                messages.append(alert_message(event, stream, self.name, info, share, top, detail))
        return messages
