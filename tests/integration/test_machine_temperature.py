"""The walking skeleton end to end: NAB machine temperature through the real broker into the daemon."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from daemon.kafka_io import encode_json
from daemon.replay import reading_message
from tests.integration.harness import daemon_config, read_all, run_daemon
from tests.support import MACHINE_TEMPERATURE, WINDOWS
from train.pipeline import TrainReport
from train.series import load_nab_csv, load_nab_windows

pytestmark = pytest.mark.integration

STREAM = "machine-temperature"
DAY = 86400.0
# An alert that starts up to 5 days before a labelled window counts as an early warning of it: the file's
# failure is documented to have a precursor days ahead (NAB data README), and a few days is the lead a
# maintenance planner can use. NAB's windows themselves are only ~2 days wide.
EARLY = 5 * DAY


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _replay_once(bootstrap: str, model: TrainReport) -> tuple[list[dict[str, Any]], str]:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    config = daemon_config(bootstrap, model.model_path)
    produce = [
        (STREAM.encode(), encode_json(reading_message(STREAM, float(ts), series.channels, row.tolist())))
        for ts, row in zip(series.ts, series.values, strict=True)
    ]
    run_daemon(config, produce)
    alerts = [json.loads(r.value) for r in read_all(bootstrap, config.kafka.alerts_topic)]
    return alerts, config.kafka.readings_topic


@pytest.fixture(scope="module")
def two_runs(kafka_bootstrap: str, machine_model: TrainReport) -> list[tuple[list[dict[str, Any]], str]]:
    return [_replay_once(kafka_bootstrap, machine_model) for _ in range(2)]


def test_alert_fields(two_runs: list[tuple[list[dict[str, Any]], str]], machine_model: TrainReport) -> None:
    alerts, topic = two_runs[0]
    assert alerts, "the failure series produced no alert"
    rows = len(load_nab_csv(MACHINE_TEMPERATURE, "temp_c"))
    open_ids: set[str] = set()
    for alert in alerts:
        assert set(alert) == {
            "id",
            "kind",
            "state",
            "severity",
            "stream",
            "ts",
            "started_at",
            "score",
            "peak",
            "resolution",
            "threshold",
            "top_channels",
            "model",
            "source",
        }
        assert alert["kind"] == "fault" and alert["stream"] == STREAM
        assert alert["severity"] in {"warning", "critical"}
        assert alert["threshold"] == pytest.approx(machine_model.threshold, rel=1e-6)
        assert alert["model"] == {
            "name": "machine-temperature",
            "version": "1",
            "trained_name": "machine-temperature",
        }
        assert alert["top_channels"] == [{"name": "temp_c", "share": 1.0}]
        assert alert["source"]["topic"] == topic and alert["source"]["partition"] == 0
        assert 0 <= alert["source"]["offset"] < rows
        assert _epoch(alert["started_at"]) <= _epoch(alert["ts"])
        if alert["state"] == "firing":
            assert alert["peak"] >= alert["threshold"] and alert["resolution"] is None
            open_ids.add(alert["id"])
        else:
            assert alert["id"] in open_ids, "resolved an alert that never fired"
            assert alert["score"] < alert["threshold"] and alert["resolution"] == "recovered"
            open_ids.discard(alert["id"])
    assert not open_ids, "an alert was left firing although the series ends quietly"


def test_alert_ids_are_deterministic_across_runs(two_runs: list[tuple[list[dict[str, Any]], str]]) -> None:
    (first, topic_a), (second, topic_b) = two_runs
    assert topic_a != topic_b
    assert [a["id"] for a in first] == [a["id"] for a in second]
    strip = [{k: v for k, v in a.items() if k != "source"} for a in first]
    assert strip == [{k: v for k, v in a.items() if k != "source"} for a in second]


def test_alerts_fall_on_labelled_windows(two_runs: list[tuple[list[dict[str, Any]], str]]) -> None:
    alerts, _ = two_runs[0]
    windows = load_nab_windows(WINDOWS, "realKnownCause/machine_temperature_system_failure.csv")
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    starts = sorted({_epoch(a["started_at"]) for a in alerts if a["state"] == "firing"})
    probation_end = series.ts[int(len(series) * 0.15)]

    inside = {i for i, (lo, hi) in enumerate(windows) for s in starts if lo <= s <= hi}
    anticipated = {i for i, (lo, hi) in enumerate(windows) for s in starts if lo - EARLY <= s <= hi}
    explained = [s for s in starts if any(lo - EARLY <= s <= hi for lo, hi in windows)]
    # The model learnt the probation period, so it must not alarm there.
    assert all(s > probation_end for s in starts)
    # At least half of the labelled failures are caught while they happen ...
    assert len(inside) >= 2, f"alerts inside windows {sorted(inside)}"
    # ... and three of the four are flagged, on time or early (the shutdown in window 0 is a slow ramp
    # the 5-minute forecaster follows).
    assert len(anticipated) >= 3, f"windows flagged on time or early: {sorted(anticipated)}"
    # Precision: at least half of the alerts point at a labelled event, and at most 10 alerts in 79 days
    # (about one a week) keep the false-alarm load bearable.
    assert len(explained) * 2 >= len(starts), f"{len(explained)} of {len(starts)} alerts near a window"
    assert len(starts) <= 10
