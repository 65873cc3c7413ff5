"""Replay: recorded series become reading records, merged in time order and keyed by stream id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.cli import main
from daemon.replay import replay
from train.dataset import load_matching
from train.series import Series


class _Producer:
    """Keeps what is sent; every record is acknowledged."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []
        self.flushed = False

    def send(self, topic: str, key: bytes, value: bytes) -> _Acked:
        self.sent.append((topic, key, json.loads(value)))
        return _Acked()

    def flush(self) -> None:
        self.flushed = True


class _Acked:
    def failed(self) -> bool:
        return False


def _series(name: str, ts: list[float], channels: tuple[str, ...]) -> Series:
    values = np.arange(len(ts) * len(channels), dtype=np.float32).reshape(len(ts), len(channels))
    return Series(name, np.array(ts), values, channels)


def test_streams_are_merged_in_time_order_with_every_channel_and_keyed_by_id() -> None:
    press = _series("press", [0.0, 20.0, 40.0], ("vib", "temp"))
    pump = _series("pump", [10.0, 20.0], ("flow",))
    producer = _Producer()
    assert replay(producer, "readings", [("line/press", press), ("line/pump", pump)]) == 5  # type: ignore[arg-type]
    assert producer.flushed
    sent = [(key.decode(), body["ts"], body["values"]) for _, key, body in producer.sent]
    assert sent == [
        ("line/press", "1970-01-01T00:00:00.000Z", {"vib": 0.0, "temp": 1.0}),
        ("line/pump", "1970-01-01T00:00:10.000Z", {"flow": 0.0}),
        ("line/press", "1970-01-01T00:00:20.000Z", {"vib": 2.0, "temp": 3.0}),  # a tie: stream order
        ("line/pump", "1970-01-01T00:00:20.000Z", {"flow": 1.0}),
        ("line/press", "1970-01-01T00:00:40.000Z", {"vib": 4.0, "temp": 5.0}),
    ]
    assert all(body["stream"] == key.decode() for _, key, body in producer.sent)
    limited = _Producer()
    assert replay(limited, "readings", [("a", press), ("b", pump)], limit=2) == 2  # type: ignore[arg-type]
    assert [key for _, key, _ in limited.sent] == [b"a", b"b"]


def test_replay_paces_by_the_rows_own_clock() -> None:
    waits: list[float] = []
    producer = _Producer()
    series = _series("s", [100.0, 160.0, 220.0], ("x",))
    replay(producer, "readings", [("s", series)], speedup=60.0, sleep=waits.append)  # type: ignore[arg-type]
    # The fake sleep does not pass time: each wait is the row's time from the first, sped up, less the
    # little time the loop took.
    assert len(waits) == 2 and 0.9 < waits[0] <= 1.0 and 1.9 < waits[1] <= 2.0


def test_replay_of_a_spec_or_a_csv_checks_its_source_before_the_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["replay", "--bootstrap", "127.0.0.1:9"]  # nothing listens there: the broker, first, would fail
    assert main([*base, "--csv", str(tmp_path / "x.csv")]) == 2
    assert "replay: --csv needs --stream" in capsys.readouterr().err
    assert main([*base, "--csv", str(tmp_path / "absent.csv"), "--stream", "s"]) == 2
    assert "absent.csv: cannot read it" in capsys.readouterr().err
    spec = tmp_path / "mine.yaml"
    spec.write_text("files: ['*.csv']\ntimestamp: {column: t, format: epoch}\nchannels: [x]\n")
    (tmp_path / "a.csv").write_text("t,x\n0,1\n")
    assert main([*base, "--spec", str(spec), "--root", str(tmp_path), "--streams", "b*"]) == 2
    assert "faultcast: error: no stream of" in capsys.readouterr().err
    for flags, says in [(["--limit", "-1"], "--limit: must be above 0"), (["--speedup", "0"], "--speedup")]:
        with pytest.raises(SystemExit):
            main([*base, "--spec", str(spec), "--root", str(tmp_path), *flags])
        assert says in capsys.readouterr().err


def test_a_spec_replays_each_recorded_stream_whole_with_all_its_channels(tmp_path: Path) -> None:
    """A spec that splits streams at gaps for training still replays each under the id it was recorded
    with: production never sends the segments' names."""
    (tmp_path / "press.csv").write_text("t,vib,temp\n0,1,60\n60,2,61\n5000,3,62\n5060,4,63\n")
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        "files: ['*.csv']\ntimestamp: {column: t, format: epoch}\nchannels: [vib, temp]\n"
        "gaps: {max_gap_s: 600, policy: split}\n"
    )
    split, _ = load_matching(str(spec), tmp_path, "*")
    assert [s.series.name for s in split] == ["press#0", "press#1"]  # as training sees it
    [whole], _ = load_matching(str(spec), tmp_path, "press", keep_gaps=True)
    producer = _Producer()
    assert replay(producer, "readings", [(whole.series.name, whole.series)]) == 4  # type: ignore[arg-type]
    assert [(key, body["values"]) for _, key, body in producer.sent] == [
        (b"press", {"vib": 1.0, "temp": 60.0}),
        (b"press", {"vib": 2.0, "temp": 61.0}),
        (b"press", {"vib": 3.0, "temp": 62.0}),
        (b"press", {"vib": 4.0, "temp": 63.0}),
    ]
