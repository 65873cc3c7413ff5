"""Replays recorded series through the daemon's own Processor and ONNX engine: per-row scores and alerts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from daemon.alerts import AlertPolicy
from daemon.config import Config, parse_config
from daemon.engine import HostEngine
from daemon.kafka_io import encode_json
from daemon.processor import Outcome, Processor, RawRecord
from daemon.records import Source
from daemon.replay import in_time_order, reading_message
from train.dataset import LabelledSeries
from train.series import Series

TOPIC = "backtest.readings"
MODEL = "backtest"


@dataclass
class StreamResult:
    """One stream's backtest: per-row score (NaN where not scored), firing state, and its alert records."""

    stream: str
    ts: npt.NDArray[np.float64]
    score: npt.NDArray[np.float64]
    firing: npt.NDArray[np.bool_]  # a fault alert
    alerts: list[dict[str, Any]] = field(default_factory=list)
    # with a congestion head: the load forecasts [T, Q] (NaN where none), and where a congestion alert fires
    forecast: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    warning: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def onsets(self) -> npt.NDArray[np.bool_]:
        """Rows whose reading made an alert fire (a new alert, not an escalation)."""
        out = np.zeros(len(self.ts), dtype=bool)
        seen: set[str] = set()
        for alert in self.alerts:
            if alert["kind"] == "fault" and alert["state"] == "firing" and alert["id"] not in seen:
                seen.add(alert["id"])
                out[alert["source"]["offset"]] = True
        return out


@dataclass(frozen=True)
class Backtest:
    """Every stream's result, the fault alerts' settings the alert state machine used, and record counts."""

    streams: dict[str, StreamResult]
    policy: AlertPolicy
    rejected: int
    dropped: int

    @property
    def threshold(self) -> float:
        return self.policy.threshold


def config_for(
    model: Path,
    alerting: Mapping[str, Any] | None = None,
    congestion: Mapping[str, Any] | None = None,
    **sections: Any,
) -> Config:
    """A daemon config with one model scoring every stream; ``alerting`` and ``congestion`` are the
    ``alerting.fault`` and ``alerting.congestion`` sections."""
    data: dict[str, Any] = {"models": [{"name": MODEL, "path": model.name}], **sections}
    kinds = {"fault": alerting, "congestion": congestion}
    if any(kinds.values()):
        data["alerting"] = {kind: dict(section) for kind, section in kinds.items() if section}
    return parse_config(data, model.parent, env={})


def records(streams: Sequence[Series]) -> list[RawRecord]:
    """Each series as keyed reading records, merged in time order as a topic would deliver them.

    Stream i lives on partition i; a record's offset is its row index in the series.
    """
    out = []
    for part, row in in_time_order(streams):
        s = streams[part]
        message = reading_message(s.name, float(s.ts[row]), s.channels, s.values[row].tolist())
        out.append(RawRecord(s.name.encode("utf-8"), encode_json(message), Source(TOPIC, part, row)))
    return out


def backtest(
    model: Path,
    series: Sequence[Series | LabelledSeries],
    alerting: Mapping[str, Any] | None = None,
    config: Config | None = None,
) -> Backtest:
    """Streams ``series`` (distinct names) through ``Processor`` + ``HostEngine`` exactly as the daemon would.

    Records go in polls of ``batching.max_poll_records``. A row is firing from the reading that fired an
    alert until the reading that resolved it (a resolution at eviction ends it after the stream's last
    row so far).
    """
    plain = [s.series if isinstance(s, LabelledSeries) else s for s in series]
    names = [s.name for s in plain]
    if len(set(names)) != len(names):
        raise ValueError(f"stream names must be distinct: {names}")
    cfg = config if config is not None else config_for(model, alerting)
    model_config = cfg.models[0]
    engine = HostEngine(Path(model_config.path), cfg.state.initial_capacity, model_config.baseline_readings)
    processor = Processor(cfg, {cfg.models[0].name: engine})
    quantiles = len(engine.info.congestion.quantiles) if engine.info.congestion else 0
    results = {
        s.name: StreamResult(
            s.name,
            s.ts.astype(np.float64),
            np.full(len(s), np.nan),
            np.zeros(len(s), dtype=bool),
            forecast=np.full((len(s), quantiles), np.nan),
            warning=np.zeros(len(s), dtype=bool),
        )
        for s in plain
    }
    changes: dict[tuple[str, str], list[tuple[int, bool]]] = {
        (n, kind): [] for n in names for kind in ("fault", "congestion")
    }
    last_row = dict.fromkeys(names, -1)
    rejected = dropped = 0
    recs = records(plain)
    poll = cfg.batching.max_poll_records
    for start in range(0, len(recs), poll):
        out = processor.process(recs[start : start + poll])
        rejected += len(out.rejected)
        dropped += len(out.dropped)
        for scored in out.scored():
            results[scored.stream].score[scored.source.offset] = scored.score
            if scored.forecast is not None:
                results[scored.stream].forecast[scored.source.offset] = scored.forecast
            last_row[scored.stream] = max(last_row[scored.stream], scored.source.offset)
        _collect_alerts(out, results, changes, last_row)
    for name, result in results.items():
        result.firing[:] = _firing(len(result.ts), changes[name, "fault"])
        result.warning[:] = _firing(len(result.ts), changes[name, "congestion"])
    policy = processor.runtimes[cfg.models[0].name].kinds["fault"].policy
    return Backtest(results, policy, rejected, dropped)


def _collect_alerts(
    out: Outcome,
    results: dict[str, StreamResult],
    changes: dict[tuple[str, str], list[tuple[int, bool]]],
    last_row: dict[str, int],
) -> None:
    for alert in out.alerts:
        stream = alert["stream"]
        results[stream].alerts.append(alert)
        kind_changes = changes[stream, alert["kind"]]
        if alert["state"] == "firing":
            kind_changes.append((alert["source"]["offset"], True))
        elif alert["resolution"] == "stream_idle":
            kind_changes.append((last_row[stream] + 1, False))
        else:
            kind_changes.append((alert["source"]["offset"], False))


def _firing(rows: int, changes: list[tuple[int, bool]]) -> npt.NDArray[np.bool_]:
    """Per-row state from (row, firing) changes in event order: each holds until the next one."""
    out = np.zeros(rows, dtype=bool)
    for (row, on), (until, _) in zip(changes, [*changes[1:], (rows, False)], strict=False):
        if on:
            out[row:until] = True
    return out
