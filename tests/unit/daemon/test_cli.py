"""One console script: `faultcast --help` and every subcommand's help explain themselves."""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from daemon.cli import main
from daemon.errors import ConfigError, FencedError
from daemon.http_server import serve
from daemon.model_file import read_model
from tests.support import MACHINE_TEMPERATURE, OCCUPANCY, REPO
from train import pipeline
from train.pipeline import TrainReport
from train.series import load_nab_csv


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], "COMMAND"),
        (["run", "--help"], "--check"),
        (["train", "--help"], "--fit-fraction"),
        (["train", "compare", "--help"], "--delays"),
        (["replay", "--help"], "--speedup"),
        (["evaluate", "nab", "--help"], "--mapping"),
        (["evaluate", "skab", "--help"], "--baseline"),
        (["demo", "--help"], "--exit-when-done"),
        (["export", "--help"], "--run-dir"),
        (["evaluate", "congestion", "--help"], "--seed"),
        (["evaluate", "--help"], "nab|skab|congestion"),
    ],
)
def test_help(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert expected in capsys.readouterr().out


def _check(config: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`faultcast run --check` on a config of ``text``: exit status, stdout, stderr."""
    config.write_text(text)
    status = main(["run", "--config", str(config), "--check"])
    out, err = capsys.readouterr()
    return status, out, err


def test_config_errors_exit_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "models: [{name: m, path: m.onnx}]\nkafka: {bootstrap_server: x}\n"
    status, _, err = _check(tmp_path / "config.yaml", text, capsys)
    assert status == 2 and "did you mean 'bootstrap_servers'" in err


def test_check_names_every_missing_model_and_an_unwritable_checkpoint_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    text = "models: [{name: press, path: a.onnx, streams: [press-*]}, {name: pump, path: b.onnx}]\n"
    status, _, err = _check(config, text, capsys)
    assert status == 2
    assert "models[0] 'press'" in err and "models[1] 'pump'" in err and "faultcast demo" in err
    text = f"models: [{{name: m, path: m.onnx}}]\nstate: {{checkpoint_dir: {tmp_path / 'none'}}}\n"
    status, _, err = _check(config, text, capsys)
    assert status == 2 and "state.checkpoint_dir" in err


def test_check_lists_the_channels_to_send_and_the_thresholds_in_force(
    machine_model: TrainReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    text = f"models: [{{name: m, path: {machine_model.model_path}}}]\n"
    status, out, _ = _check(config, text, capsys)
    calibrated = f"thresholds fault {machine_model.threshold:.4g}"
    assert status == 0 and f"ok: model m v1: channels temp_c; {calibrated}" in out
    status, out, _ = _check(config, text + "alerting: {fault: {threshold: 0.5}}\n", capsys)
    assert status == 0 and "channels temp_c; thresholds fault 0.5\n" in out


def test_check_lists_per_stream_congestion_limits(
    traffic_model: TrainReport, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"models: [{{name: t, path: {traffic_model.model_path}}}]\n"
    text += "alerting: {congestion: {limits: {'lane-6*': 12}}}\n"
    status, out, _ = _check(tmp_path / "config.yaml", text, capsys)
    limit = traffic_model.metadata["congestion"]["limit"]
    assert status == 0 and f"congestion {limit:.4g}; lane-6* 12\n" in out


def test_outputs_that_cannot_be_written_are_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = ["train", "--csv", str(MACHINE_TEMPERATURE), "--out", str(blocker / "m.onnx")]
    assert main(argv) == 2
    assert f"train: --out {blocker / 'm.onnx'}: {blocker} is a file, not a folder" in capsys.readouterr().err
    argv = ["train", "--csv", str(MACHINE_TEMPERATURE), "--out", "m.onnx", "--run-dir", str(blocker / "run")]
    assert main(argv) == 2
    assert f"train: --run-dir {blocker / 'run'}: {blocker} is a file" in capsys.readouterr().err
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    argv = ["train", "--csv", str(MACHINE_TEMPERATURE), "--out", str(tmp_path / "dangling" / "m.onnx")]
    assert main(argv) == 2
    assert f"{tmp_path / 'dangling'} is a link to nothing" in capsys.readouterr().err
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "gone" / "m.onnx")
    assert main(["train", "--csv", str(MACHINE_TEMPERATURE), "--out", str(tmp_path / "dangling.onnx")]) == 2
    assert "dangling.onnx: a link to nothing" in capsys.readouterr().err
    assert main(["export", "--run-dir", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert f"export: --out {tmp_path}: cannot write this file" in capsys.readouterr().err
    # A command refused for another reason leaves no folder behind for its output.
    assert main(["train", "--csv", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "new/m.onnx")]) == 2
    assert "absent.csv: cannot read it" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_a_metrics_port_in_use_names_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot serve metrics on 127.0.0.1:{port} .*metrics.port"):
            serve("127.0.0.1", port, CollectorRegistry(), lambda: (True, "ready"))


def test_train_explains_bad_data_and_bad_options_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "m.onnx")
    cases = {
        "absent.csv": (None, "absent.csv: cannot read it"),
        "layout.csv": ("time,temp\n1,2\n", "expected a comma-separated header 'timestamp,value'"),
        "value.csv": ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,oops\n", "value.csv:3: "),
        "short.csv": (
            "timestamp,value\n" + "".join(f"2024-01-01 00:{m:02d}:00,1\n" for m in range(40)),
            "6 of its 40 readings to fit on are too few",
        ),
    }
    for name, (text, says) in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        assert main(["train", "--csv", str(tmp_path / name), "--out", out]) == 2
        assert says in capsys.readouterr().err, name
    (tmp_path / "latin1.csv").write_bytes(
        "timestamp,value\n2024-01-01 00:00:00,1\n# \xb0C\n".encode("latin-1")
    )
    assert main(["train", "--csv", str(tmp_path / "latin1.csv"), "--out", out]) == 2
    assert "latin1.csv: not UTF-8 text" in capsys.readouterr().err
    short = str(tmp_path / "short.csv")
    for flags, says in [
        (["--hidden", "0"], "hidden=0 must be >= 1"),
        (["--layers", "4"], "layers=4 must be 1, 2 or 3"),
        (["--dropout", "1"], "dropout=1.0 must lie in [0, 1)"),
        (["--lr", "0"], "lr=0.0 must be a number > 0"),
        (["--lr", "inf"], "lr=inf must be a number > 0"),
        (["--window", "0"], "window=0 must be >= 1"),
        (["--fit-fraction", "1.5"], "fit_fraction=1.5 must lie in (0, 1]"),
        (["--baseline", "-3"], "baseline=-3"),
        (["--scale-floor", "1.0"], "scale_floor=1.0: a per-stream score scale needs"),
        (["--fault-horizon", "10"], "--fault-horizon needs labelled data: --spec with label_columns"),
        (["--fault-horizon", "0", "--spec", "skab"], "fault horizon 0: must be >= 1 reading"),
        (["--congestion", "value", "--congestion-horizon", "0"], "congestion horizon 0 readings"),
        (["--congestion-horizon", "3"], "--congestion-horizon and --congestion-step-s need --congestion"),
    ]:
        argv = ["train", "--csv", short, "--out", out, *flags]
        if "--spec" in flags:
            argv.remove("--csv")
            argv.remove(short)
        assert main(argv) == 2
        assert f"faultcast: error: train: {says}" in capsys.readouterr().err


def test_train_adds_a_congestion_head_and_clock_inputs_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "load.onnx"
    argv = ["train", "--csv", str(OCCUPANCY), "--channel", "occupancy", "--out", str(out)]
    argv += [
        "--fit-fraction",
        "0.5",
        "--epochs",
        "2",
        "--hidden",
        "8",
        "--clock",
        "--congestion",
        "occupancy",
    ]
    assert main([*argv, "--congestion-step-s", "60"]) == 2
    err = capsys.readouterr().err
    assert "readings come every 300 s (median): give that as the step (--congestion-step-s)" in err
    assert main([*argv, "--congestion-horizon", "12"]) == 2  # the right step, but the data has gaps
    assert "gaps leave few: forecast fewer readings ahead (--congestion-horizon)" in capsys.readouterr().err
    assert main([*argv, "--congestion-horizon", "3"]) == 0
    _, info = read_model(out)
    assert info.clock and info.congestion is not None and info.congestion.horizon_s == 900.0
    thresholds = json.loads(capsys.readouterr().out)["thresholds"]
    assert thresholds == {"fault": info.thresholds["fault"], "congestion": info.congestion.limit}
    assert info.metadata["congestion"]["channel"] == "occupancy"


def test_train_adds_a_fault_head_from_a_spec_with_anomaly_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def write(faults: list[range]) -> None:
        rows = [
            f"{i * 60},{(i % 7) * 0.5 + 5 * any(i in f for f in faults)},{int(any(i in f for f in faults))}"
            for i in range(300)
        ]
        (tmp_path / "press.csv").write_text("t,x,fault\n" + "\n".join(rows) + "\n")

    spec = tmp_path / "press.yaml"
    spec.write_text("files: ['*.csv']\ntimestamp: {column: t, format: epoch}\nchannels: [x]\n")
    out = tmp_path / "press.onnx"
    # Rows 0-169 are fitted, 170-249 validate.
    argv = ["train", "--spec", str(spec), "--root", str(tmp_path), "--fit-rows", "250", "--val-rows", "80"]
    argv += ["--epochs", "2", "--hidden", "8", "--fault-horizon", "10", "--out", str(out)]
    write([range(100, 110), range(200, 210)])
    assert main(argv) == 2
    assert "a fault head learns from anomaly labels, and stream press has none" in capsys.readouterr().err
    spec.write_text(spec.read_text() + "label_columns: {anomaly: fault}\n")
    # A fault at rows 100-109 lies within 10 readings ahead of rows 90-108: 19 readings. None in the
    # validated rows, so no threshold could be chosen.
    write([range(100, 110)])
    assert main(argv) == 2
    assert "in both the fitted and the validated rows of the streams' heads; they hold 19 and 0" in (
        capsys.readouterr().err
    )
    write([range(100, 110), range(200, 210)])
    long_horizon = [a if a != "10" else "80" for a in argv]  # as long as the 80 validated rows
    assert main(long_horizon) == 2
    assert (
        "--fault-horizon 80 must be shorter than the fitted and the validated rows" in capsys.readouterr().err
    )
    assert main(argv) == 0
    _, info = read_model(out)
    fault = info.metadata["fault"]
    assert info.fault_head and fault["horizon_steps"] == 10 and fault["validation"]["positives"] == 19
    assert json.loads(capsys.readouterr().out)["thresholds"] == {"fault": fault["threshold"]}


def _hourly_csv(path: Path, values: Sequence[float]) -> Path:
    rows = [f"2024-01-{1 + i // 24:02d} {i % 24:02d}:00:00,{v}" for i, v in enumerate(values)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    return path


def test_train_says_which_period_season_auto_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def train(name: str, values: list[float]) -> object:
        csv = _hourly_csv(tmp_path / f"{name}.csv", values)
        argv = ["train", "--csv", str(csv), "--out", str(tmp_path / f"{name}.onnx"), "--fit-fraction", "0.8"]
        gated = ["--adapt", "0.05", "--peak-half-life", "20"]
        assert main([*argv, "--epochs", "1", "--hidden", "8", *gated, "--season", "auto"]) == 0
        return json.loads(capsys.readouterr().out)["season"]

    # 30 days of hourly readings: busy from 07:00 to 19:00 (a daily rhythm of 24), or no rhythm at all
    rng = np.random.default_rng(0)
    daily = [(10.0 if 7 <= i % 24 < 19 else 2.0) + rng.normal(0, 0.4) for i in range(720)]
    assert train("daily", daily) == 24
    assert train("noise", list(rng.normal(0, 1, 720))) is None


def test_train_fits_with_the_settings_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _hourly_csv(tmp_path / "line.csv", list(np.random.default_rng(0).normal(0, 1, 720)))
    out = tmp_path / "line.onnx"
    argv = ["train", "--csv", str(csv), "--out", str(out), "--epochs", "1", "--hidden", "8", "--layers", "2"]
    assert main([*argv, "--dropout", "0.3", "--lr", "0.01", "--window", "24", "--cell", "gru"]) == 0
    _, info = read_model(out)
    fit = info.metadata["training"]["fit"]
    assert (fit["layers"], fit["dropout"], fit["lr"], fit["window"], fit["cell"]) == (2, 0.3, 0.01, 24, "gru")
    assert info.metadata["layers"] == 2 and info.metadata["cell"] == "gru"


def test_train_refuses_a_window_longer_than_the_fitted_readings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _hourly_csv(tmp_path / "line.csv", list(np.random.default_rng(0).normal(0, 1, 720)))
    argv = ["train", "--csv", str(csv), "--out", str(tmp_path / "line.onnx"), "--epochs", "1"]
    assert main([*argv, "--window", "5000"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("faultcast: error: no fitted part has the 5001 readings one training slice needs")
    assert last.endswith("lower --window (now 5000) below it, or fit on more readings")


def test_train_refuses_a_model_whose_export_misses_parity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = _hourly_csv(tmp_path / "line.csv", list(np.random.default_rng(0).normal(0, 1, 720)))
    monkeypatch.setattr(pipeline, "PARITY_TOLERANCE", -1.0)  # a bound no model keeps
    out = tmp_path / "line.onnx"
    assert main(["train", "--csv", str(csv), "--out", str(out), "--epochs", "1", "--hidden", "8"]) == 2
    err = capsys.readouterr().err  # the progress bar's lines, then the error's one line
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith("faultcast: error: line: the exported step model differs from PyTorch by ")
    assert last.endswith("train again with another --seed")
    assert not out.exists()


def test_load_nab_csv_skips_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("timestamp,value\n2024-01-01 00:00:00,1.5\n".encode("utf-8-sig"))
    series = load_nab_csv(path)
    assert series.values[:, 0].tolist() == [1.5]


def test_replay_refuses_an_unusable_topic_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--csv", str(tmp_path / "x.csv"), "--stream", "s", "--topic", ""]) == 2
    assert "replay: --topic '': readings_topic must be a topic name" in capsys.readouterr().err


def test_a_fenced_run_exits_3_which_the_unit_does_not_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fenced(_config: object) -> None:
        raise FencedError("another running consumer has group_instance_id 'plant-a'")

    monkeypatch.setattr("daemon.config.load_config", fenced)
    assert main(["run", "--config", str(tmp_path / "config.yaml")]) == 3
    assert "faultcast: error: another running consumer" in capsys.readouterr().err
    unit = (REPO / "deploy" / "faultcast.service").read_text()
    assert "\nRestartPreventExitStatus=3\n" in unit


def test_leave_needs_a_static_member(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: [{name: m, path: m.onnx}]\n")
    assert main(["leave", "--config", str(config)]) == 2
    assert "kafka.client.group_instance_id is not set" in capsys.readouterr().err
