"""Dataset specs: shipped NAB and SKAB specs, and the loader's clean-up on small synthetic CSVs."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from daemon.errors import ConfigError
from tests.support import MACHINE_TEMPERATURE, NAB, WINDOWS
from train.dataset import (
    LabelledSeries,
    LoadReport,
    SpecError,
    load_dataset,
    load_spec,
    parse_spec,
    shipped_specs,
    skab_split,
)
from train.series import load_nab_csv, load_nab_windows, parse_nab_time

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
SKAB_CHANNELS = ("accel1_rms", "accel2_rms", "current", "pressure", "temperature", "thermocouple", "voltage")


def load(
    tmp_path: Path, spec_yaml: str, files: dict[str, str]
) -> tuple[tuple[LabelledSeries, ...], LoadReport]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_dataset(parse_spec(spec_yaml), tmp_path)


def by_name(streams: tuple[LabelledSeries, ...]) -> dict[str, LabelledSeries]:
    return {s.series.name: s for s in streams}


def test_shipped_specs_are_listed_and_valid() -> None:
    categories = ("realKnownCause", "realTraffic", "realAdExchange", "realAWSCloudwatch", "realTweets")
    nab = {f"nab_{c}" for c in categories}
    assert set(shipped_specs()) >= {*nab, "skab"}
    for name in nab:  # one layout, one category each
        assert load_spec(name).files == (f"data/{name[4:]}/*.csv",)
    skab = load_spec("skab")
    assert skab.separator == ";" and skab.timestamp.format == "%Y-%m-%d %H:%M:%S"
    assert skab.channel_names == (*SKAB_CHANNELS, "flow_rate_rms")
    assert skab.channel_columns[-1] == "Volume Flow RateRMS"
    assert load_spec("nab_realKnownCause").files == ("data/realKnownCause/*.csv",)


def test_nab_known_cause_from_the_vendored_subset() -> None:
    streams, report = load_dataset(load_spec("nab_realKnownCause"), NAB)
    assert report.files == 7 and len(streams) == 7 and report.skipped_total == 0
    machine = by_name(streams)["machine_temperature_system_failure"]
    raw = load_nab_csv(MACHINE_TEMPERATURE)
    # The file steps back 55 minutes once: 11 rows come after a later one, and 12 rows repeat earlier
    # timestamps (the 11 plus the one where the series catches up); the first of each is kept.
    assert len(raw) == 22695 and len(machine) == 22683
    assert np.all(np.diff(machine.series.ts) > 0)
    _, first = np.unique(raw.ts, return_index=True)
    np.testing.assert_array_equal(machine.series.values, raw.values[first])
    assert machine.series.channels == ("value",) and machine.anomaly is None and machine.changepoint is None
    expected = load_nab_windows(WINDOWS, "realKnownCause/machine_temperature_system_failure.csv")
    assert list(machine.windows) == expected and machine.source == str(MACHINE_TEMPERATURE)
    assert report.duplicates == 12 + 11  # machine temperature and ec2 request latency
    assert report.reordered == 11 and report.rows_read == report.rows_kept + report.duplicates


def test_nab_specs_read_the_shared_copy_the_same_way() -> None:
    if not (SHARED_DATA / "NAB").is_dir():
        pytest.skip(f"shared NAB data not found at {SHARED_DATA / 'NAB'}")
    for name in ("nab_realKnownCause", "nab_realTraffic"):
        vendored, _ = load_dataset(load_spec(name), NAB)
        shared, report = load_dataset(load_spec(name), SHARED_DATA / "NAB")
        assert report.files == 7 and [s.series.name for s in shared] == [s.series.name for s in vendored]
        for a, b in zip(vendored, shared, strict=True):
            assert a.series.fingerprint() == b.series.fingerprint() and a.windows == b.windows


def test_skab_valve1_and_anomaly_free_with_the_400_row_split() -> None:
    if not (SHARED_DATA / "SKAB").is_dir():
        pytest.skip(f"SKAB (GPL, not vendored) not found at {SHARED_DATA / 'SKAB'}")
    streams, report = load_dataset(load_spec("skab"), SHARED_DATA)
    named = by_name(streams)
    assert report.files == 17 and len(streams) == 17 and report.skipped_total == 0
    assert "valve1/0" in named and "valve1/15" in named
    valve = named["valve1/0"]
    assert len(valve) == 1147 and valve.series.values.shape == (1147, 8)
    assert valve.series.ts[0] == parse_nab_time("2020-03-09 10:14:33")
    assert valve.series.values[0, 0] == np.float32(0.0265878) and valve.series.values[0, 7] == 32.0
    assert valve.anomaly is not None and valve.changepoint is not None
    assert valve.anomaly.dtype == np.bool_ and int(valve.anomaly.sum()) == 401
    assert int(valve.changepoint.sum()) == 4
    train, test = skab_split(valve)
    assert len(train) == 400 and len(test) == 747
    assert train.anomaly is not None and not train.anomaly.any()
    assert test.series.ts[0] == valve.series.ts[400]
    free = named["anomaly-free/anomaly-free"]
    assert len(free) == 9405 and free.anomaly is None and free.changepoint is None


NUMBERS = """
files: ["*.csv"]
timestamp: {column: t, format: epoch}
channels: [x]
"""


@pytest.mark.parametrize(("policy", "segments", "split"), [("split", [3, 2, 1], 2), ("keep", [6], 0)])
def test_gaps_split_or_kept(tmp_path: Path, policy: str, segments: list[int], split: int) -> None:
    csv = "t,x\n0,1\n10,2\n20,3\n100,4\n110,5\n500,6\n"
    windows = '{"s": [[5, 15], [105, 105], [200, 300]]}'
    spec = NUMBERS + f"gaps: {{max_gap_s: 30, policy: {policy}}}\nwindows: {{path: w.json, key: '{{stem}}'}}"
    streams, report = load(tmp_path, spec, {"s.csv": csv, "w.json": windows})
    assert [len(s) for s in streams] == segments
    assert report.gaps == 2 and report.gaps_split == split
    if policy == "split":
        assert [s.series.name for s in streams] == ["s#0", "s#1", "s#2"]
        assert streams[1].series.values[:, 0].tolist() == [4.0, 5.0]
        assert [s.windows for s in streams] == [((5.0, 15.0),), ((105.0, 105.0),), ()]
    else:
        assert streams[0].series.name == "s" and len(streams[0].windows) == 3


@pytest.mark.parametrize(("how", "values"), [("mean", [1.5, 4.0, 6.0]), ("last", [2.0, 4.0, 6.0])])
def test_readings_resampled_onto_a_grid_before_the_gaps_are_found(
    tmp_path: Path, how: str, values: list[float]
) -> None:
    # two readings in the first minute, three in the second (in the file out of order, one late in the
    # minute), none in the third, one in the fourth; the readings at 3 s and 65 s are labelled
    csv = "t,x,y\n0,1,0\n3,2,1\n65,5,1\n60,3,0\n119.5,4,0\n200,6,0\n"
    spec = NUMBERS + "label_columns: {anomaly: y}\n" + f"resample: {{step_s: 60, how: {how}}}\n"
    (stream,), report = load(tmp_path, spec + "gaps: {max_gap_s: 90}\n", {"s.csv": csv})
    assert stream.series.ts.tolist() == [0.0, 60.0, 180.0]  # each step's start; the empty one is not filled
    assert stream.series.values[:, 0].tolist() == values
    assert stream.anomaly is not None and stream.anomaly.tolist() == [True, True, False]
    # 119.5 -> 200 s is under 90 s apart only once they are on the grid (60 -> 180 s is not): one gap
    assert report.resampled == 3 and report.rows_kept == 3 and report.gaps == 1
    assert "3 readings merged by resampling" in report.describe()


def test_a_fractional_resample_step_keeps_every_reading_of_a_regular_recording(tmp_path: Path) -> None:
    """Ten readings a second from an epoch time onto a 0.1 s grid: one reading a step, none merged, no gap
    (in floats 1.7e9 + 0.6 over 0.1 floors into the step before)."""
    t0 = 1_700_000_000
    csv = "t,x\n" + "".join(f"{t0 + i // 10}.{i % 10},{i}\n" for i in range(100))
    spec = NUMBERS + "resample: {step_s: 0.1}\ngaps: {max_gap_s: 0.15, policy: split}\n"
    (stream,), report = load(tmp_path, spec, {"s.csv": csv})
    assert report.resampled == 0 and report.gaps == 0 and len(stream) == 100
    assert stream.series.values[:, 0].tolist() == list(range(100))
    np.testing.assert_allclose(np.diff(stream.series.ts), 0.1, atol=1e-6)


def test_resample_settings_are_checked() -> None:
    with pytest.raises(
        SpecError, match=re.escape("step_s: must be a number of seconds, at least 1e-6, got 0.0")
    ):
        parse_spec(NUMBERS + "resample: {step_s: 0}\n")
    with pytest.raises(SpecError, match="how: 'last' needs step_s"):
        parse_spec(NUMBERS + "resample: {how: last}\n")


def test_duplicates_dropped_and_rows_sorted(tmp_path: Path) -> None:
    csv = "t,x\n30,3\n10,1\n20,2\n10,99\n40,4\n20,98\n"
    (stream,), report = load(tmp_path, NUMBERS, {"s.csv": csv})
    assert stream.series.ts.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert stream.series.values[:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]  # the first of each repeat wins
    assert (
        report.duplicates == 2 and report.reordered == 4 and report.rows_read == 6 and report.rows_kept == 4
    )


def test_bad_rows_are_skipped_and_counted(tmp_path: Path) -> None:
    csv = (
        "time;a;b;label\n"
        "2024-01-01 00:00:00;1;10;0\n"
        "2024-13-01 00:00:00;2;20;0\n"  # month 13
        "yesterday;2;20;0\n"
        "2024-01-01 00:00:02;two;20;0\n"
        "2024-01-01 00:00:03;nan;20;0\n"
        "2024-01-01 00:00:04;4;inf;0\n"
        "2024-01-01 00:00:05;5\n"  # short
        "2024-01-01 00:00:06;6;60;0;extra\n"
        "2024-01-01 00:00:07;7;70;maybe\n"
        "\n"
        "2024-01-01 00:00:08;8;80;1\n"
    )
    spec = """
files: ["*.csv"]
separator: ";"
timestamp: {column: time, format: "%Y-%m-%d %H:%M:%S"}
channels: [a, b]
label_columns: {anomaly: label}
"""
    (stream,), report = load(tmp_path, spec, {"s.csv": csv})
    assert stream.series.values.tolist() == [[1.0, 10.0], [8.0, 80.0]]
    assert stream.series.ts.tolist() == [
        parse_nab_time("2024-01-01 00:00:00"),
        parse_nab_time("2024-01-01 00:00:08"),
    ]
    assert (
        stream.anomaly is not None and stream.anomaly.tolist() == [False, True] and stream.changepoint is None
    )
    assert report.skipped == {"columns": 2, "timestamp": 2, "value": 3, "label": 1, "stream": 0}
    assert report.rows_read == 10 and report.rows_kept == 2 and report.skipped_total == 8
    where = tmp_path / "s.csv"
    assert report.first_skipped == {
        "timestamp": f"{where}:3",
        "value": f"{where}:5",
        "columns": f"{where}:8",
        "label": f"{where}:10",
    }
    assert report.describe() == (
        f"read 10 rows from 1 files, kept 2; skipped 2 (columns; first at {where}:8), 2 (timestamp; first at "
        f"{where}:3), 3 (value; first at {where}:5), 1 (label; first at {where}:10)"
    )


def test_renames_and_stream_by_column_across_files(tmp_path: Path) -> None:
    files = {
        "day1/log.csv": "ts,machine,Motor Temp,vib,ignored\n2024-01-01T00:00:00Z,m1,60,0.1,x\n"
        "2024-01-01T00:00:00Z,m2,70,0.2,x\n2024-01-01T00:01:00Z,,1,1,x\n",
        "day2/log.csv": "ts,machine,Motor Temp,vib,ignored\n2024-01-02T00:00:00+01:00,m1,61,0.3,x\n",
    }
    spec = """
files: ["day*/log.csv"]
timestamp: {column: ts}
channels: [{Motor Temp: temp_c}, vib]
stream: {column: machine}
stream_name: "press-{key}"
"""
    streams, report = load(tmp_path, spec, files)
    named = by_name(streams)
    assert list(named) == ["press-m1", "press-m2"] and report.files == 2
    m1 = named["press-m1"]
    assert m1.series.channels == ("temp_c", "vib")
    np.testing.assert_allclose(m1.series.values, [[60.0, 0.1], [61.0, 0.3]], rtol=1e-6)
    assert m1.series.ts[1] - m1.series.ts[0] == 23 * 3600  # the +01:00 offset is honoured
    assert m1.source == f"{tmp_path / 'day1/log.csv'}, {tmp_path / 'day2/log.csv'}"
    assert len(named["press-m2"]) == 1 and report.skipped["stream"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("seperator: ';'", "config key 'seperator': unknown key; did you mean 'separator'?"),
        ("timestamp: {colum: t}", "config key 'timestamp.colum': unknown key; did you mean 'column'?"),
        ("gaps: {max_gap_s: ten}", "config key 'gaps.max_gap_s'"),
        ("stream: files", "config key 'stream'"),
        ("gaps: {policy: split}", "'split' needs max_gap_s"),
    ],
)
def test_bad_spec_names_the_key(extra: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(NUMBERS + extra, "mine.yaml")
    assert message in str(caught.value) and "mine.yaml" in str(caught.value)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ConfigError)


def test_a_timestamp_format_that_is_not_a_pattern_is_refused() -> None:
    with pytest.raises(
        SpecError, match=r"timestamp.format 'YYYY-MM-DD hh:mm:ss': give iso, epoch or a strftime"
    ):
        parse_spec(NUMBERS.replace("format: epoch", "format: 'YYYY-MM-DD hh:mm:ss'"), "mine.yaml")


def test_a_label_column_that_no_file_has_is_refused(tmp_path: Path) -> None:
    files = {"normal.csv": "t,x\n0,1\n", "run.csv": "t,x,anomaly\n0,1,0\n"}
    _, report = load(
        tmp_path, NUMBERS + "label_columns: {anomaly: anomaly}", files
    )  # one file lacks it: fine
    assert report.rows_kept == 2
    with pytest.raises(SpecError, match="no file has the label column 'Anomaly'; check label_columns"):
        load(tmp_path, NUMBERS + "label_columns: {anomaly: Anomaly}", files)


def test_data_that_does_not_fit_the_spec_is_reported(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"'nothing/\*.csv' matches nothing"):
        load_dataset(parse_spec(NUMBERS.replace("*.csv", "nothing/*.csv")), tmp_path)
    with pytest.raises(SpecError, match="has no column 'x'"):
        load(tmp_path, NUMBERS, {"s.csv": "t,y\n0,1\n"})
    (stream,), report = load(
        tmp_path, NUMBERS + "windows: {path: w.json}", {"s.csv": "t,x\n0,1\n", "w.json": "{}"}
    )
    assert stream.windows == () and report.missing_windows == ("/s.csv",)
    assert math.isclose(stream.series.ts[0], 0.0)


def test_the_documented_example_spec_reads_the_documented_csv(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "dataset-spec.md").read_text()
    blocks = re.findall(r"```(csv|yaml)\n(.*?)```", doc, flags=re.S)
    csv_text, spec_text = (dict(blocks)[kind] for kind in ("csv", "yaml"))
    (tmp_path / "days").mkdir()
    (tmp_path / "days" / "0301.csv").write_text(csv_text)
    streams, report = load_dataset(parse_spec(spec_text), tmp_path)
    named = by_name(streams)
    assert list(named) == ["site-a/P-101", "site-a/P-102"] and report.skipped_total == 0
    pump = named["site-a/P-101"]
    assert pump.series.channels == ("vibration_rms", "motor_temp_c")
    assert pump.series.values.tolist() == [[pytest.approx(0.82), 61.5]]
    assert pump.anomaly is not None and pump.anomaly.tolist() == [False]
