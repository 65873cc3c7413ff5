"""Two models side by side through the real broker: freeway lanes routed to a congestion model, a
machine to the fault model; the congestion alerts equal what the offline core decides."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from daemon.engine import HostEngine
from daemon.kafka_io import encode_json
from daemon.processor import Processor, RawRecord
from daemon.records import Source
from daemon.replay import reading_message
from tests.integration.harness import by_stream, daemon_config, read_all, run_daemon
from tests.support import MACHINE_TEMPERATURE, NAB
from train.pipeline import TrainReport
from train.series import Series, load_nab_csv

pytestmark = pytest.mark.integration

LANES = {"lane-6005": "occupancy_6005", "lane-t4013": "occupancy_t4013"}


def _produce() -> list[tuple[bytes, bytes]]:
    """Both lanes' whole files and 600 machine readings, merged in time order as a plant would send."""
    series: dict[str, Series] = {
        lane: load_nab_csv(NAB / "data" / "realTraffic" / f"{name}.csv", "occupancy")
        for lane, name in LANES.items()
    }
    machine = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    series["machine-1"] = replace(machine.rows(3700, 4300), name="machine-1")
    rows = sorted((float(s.ts[i]), stream, i) for stream, s in series.items() for i in range(len(s)))
    return [
        (
            stream.encode(),
            encode_json(
                reading_message(stream, t, series[stream].channels, series[stream].values[i].tolist())
            ),
        )
        for t, stream, i in rows
    ]


def test_congestion_alerts_through_kafka_equal_the_offline_core(
    kafka_bootstrap: str, machine_model: TrainReport, traffic_model: TrainReport
) -> None:
    config = daemon_config(
        kafka_bootstrap,
        machine_model.model_path,
        streams=("machine-*",),
        scores=True,
        more_models=(("traffic", traffic_model.model_path, ("lane-*",)),),
    )
    produce = _produce()
    run_daemon(config, produce)
    alerts = [json.loads(r.value) for r in read_all(kafka_bootstrap, config.kafka.alerts_topic)]

    engines = {m.name: HostEngine(Path(m.path), 8) for m in config.models}
    offline = Processor(config, engines).process(
        [RawRecord(k, v, Source("offline", 0, i)) for i, (k, v) in enumerate(produce)]
    )
    # occupancy_t4013 repeats one timestamp; the repeat is dropped, everything else is scored
    assert not offline.rejected and [(d.reason, d.stream) for d in offline.dropped] == [
        ("duplicate_timestamp", "lane-t4013")
    ]
    # Within a poll the daemon steps one model's wave after the other's, so only each stream's order
    # is fixed; compared stream by stream, the alerts are identical.
    assert by_stream(alerts) == by_stream(offline.alerts)

    congestion = [a for a in alerts if a["kind"] == "congestion"]
    assert {a["stream"] for a in congestion} == set(LANES), "both lanes congest in these two weeks"
    limit = traffic_model.metadata["congestion"]["limit"]
    for alert in congestion:
        assert alert["model"]["name"] == "traffic" and alert["limit"] == pytest.approx(limit, rel=1e-6)
        assert alert["forecast"]["horizon_s"] == 1800.0 and alert["forecast"]["quantile"] == 0.5
        assert alert["top_channels"] == [{"name": "occupancy", "share": 1.0}]
        if alert["state"] == "firing":
            assert alert["forecast"]["value"] >= limit and alert["expected_at"] is not None
            assert 0.0 <= alert["time_to_limit_s"] <= 1800.0
    # routing by stream pattern: each alert comes from its stream's model; the machine's failure fires
    assert all(
        a["model"]["name"] == ("traffic" if a["stream"] in LANES else "machine-temperature") for a in alerts
    )
    assert any(a["kind"] == "fault" and a["stream"] == "machine-1" for a in alerts)

    assert config.kafka.scores_topic is not None
    scores = [json.loads(r.value) for r in read_all(kafka_bootstrap, config.kafka.scores_topic)]
    assert len(scores) == len(produce) - 1
    assert all(("forecast" in s) == s["stream"].startswith("lane-") for s in scores)
