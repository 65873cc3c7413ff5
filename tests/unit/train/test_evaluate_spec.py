"""`faultcast evaluate spec`: a model trained on one's own recordings, scored on their labelled faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.cli import main as cli_main
from daemon.errors import DataError, UsageError
from train.backtest import StreamResult
from train.evaluate import main
from train.evaluate_report import BoolArray, png_path
from train.evaluate_spec import Faults, evaluate_spec, meet

SPEC = "files: ['*.csv']\ntimestamp: {column: t, format: epoch}\nchannels: [vib, temp]\n"
FAULTS = {"press-1": [range(400, 450)], "press-2": [range(400, 450), range(600, 650)]}


def _recordings(folder: Path) -> None:
    """Presses read every 10 s: normal, then labelled faults (both channels jump) at FAULTS' rows. A third
    file, known normal, has no label column."""
    rng = np.random.default_rng(1)
    for name in (*FAULTS, "normal-1"):
        rows = ["t,vib,temp,fault" if name in FAULTS else "t,vib,temp"]
        for i in range(800):
            fault = any(i in r for r in FAULTS.get(name, []))
            vib, temp = rng.normal(1.0, 0.05) + 3.0 * fault, 60 + rng.normal(0, 0.2) + 8.0 * fault
            rows.append(f"{i * 10},{vib:.4f},{temp:.3f}" + (f",{int(fault)}" if name in FAULTS else ""))
        (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def presses(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The recordings, their spec and a model trained from the command line on their first 300 rows."""
    root = tmp_path_factory.mktemp("presses")
    _recordings(root)
    spec = root / "presses.yaml"
    spec.write_text(SPEC + "label_columns: {anomaly: fault}\n")
    model = root / "presses.onnx"
    train = ["train", "--spec", str(spec), "--root", str(root), "--fit-rows", "300", "--val-rows", "80"]
    assert cli_main([*train, "--epochs", "3", "--hidden", "8", "--out", str(model)]) == 0
    return root, spec, model


def test_labelled_faults_after_the_trained_rows_are_found_soon_after_they_start(
    presses: tuple[Path, Path, Path],
) -> None:
    root, spec, model = presses
    result = evaluate_spec(str(spec), root, "*", model, first=300, alerting={"cooldown_s": 0.0})
    names = [s.labelled.series.name for s in result.streams]
    assert names == ["normal-1", "press-1", "press-2"]  # the unlabelled file counts as all normal
    assert [(f.labelled, len(f.delays), f.already_firing) for f in result.faults] == [
        (0, 0, 0),
        (1, 1, 0),
        (2, 2, 0),
    ]
    # fire after the model's calibrated count of readings (3): a jump of many deviations fires then
    assert all(0 <= d <= 5 for f in result.faults for d in f.delays)
    pooled = result.pooled
    assert pooled.tp + pooled.fp + pooled.fn + pooled.tn == 3 * 500
    # A one-step forecaster alarms as a fault starts and quiets as it learns the new level: a fault's
    # first rows alarm, few normal ones do.
    assert pooled.tp >= 3 * 3 and pooled.far < 10.0
    assert result.policy.cooldown_s == 0.0 and result.rejected == 0 and result.dropped == 0


def test_the_cool_down_in_force_can_hide_a_fault_and_the_report_says_what_it_was(
    presses: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, spec, model = presses
    # press-2's second fault starts 2,000 s after its first: inside the daemon's default hour of cool-down
    result = evaluate_spec(str(spec), root, "press-2", model, first=300)
    assert result.policy.cooldown_s == 3600.0
    [faults] = result.faults
    assert faults.labelled == 2 and len(faults.delays) == 1
    argv = ["spec", "--spec", str(spec), "--root", str(root), "--model", str(model), "--from", "300"]
    assert main([*argv, "--cooldown-s", "0", "--report", str(tmp_path)]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "cool-down 0 s" in summary and "| pooled | 1500 |" in summary and "| 3/3 |" in summary
    # An unlabelled file has no miss rate to give, and its 500 rows count
    assert "| normal-1 | 500 | - |" in summary and (tmp_path / "spec_press-1.png").stat().st_size > 10_000
    delays = [
        d
        for f in evaluate_spec(str(spec), root, "*", model, 300, {"cooldown_s": 0.0}).faults
        for d in f.delays
    ]
    assert f"| 3/3 | {float(np.median(delays)):g} | 0 |" in summary
    # Asked to fire later, alerts come later by as much
    later = evaluate_spec(str(spec), root, "*", model, 300, {"cooldown_s": 0.0, "fire_after": 6})
    assert later.policy.fire_after == 6
    assert [d for f in later.faults for d in f.delays] == [d + 3 for d in delays]
    assert main([*argv, "--cooldown-s", "0", "--fire-after", "6", "--report", str(tmp_path)]) == 0
    assert "fire after 6, resolve after" in (tmp_path / "summary.md").read_text()
    for flag, value in [("--fire-after", "0"), ("--cooldown-s", "-5")]:
        with pytest.raises(SystemExit):
            main([*argv, flag, value])


def _result(n: int, alerts: list[tuple[int, int]]) -> StreamResult:
    """A backtest of ``n`` rows whose alerts are up over the given (first, last) rows."""
    firing = np.zeros(n, dtype=bool)
    for a, b in alerts:
        firing[a : b + 1] = True
    return StreamResult("s", np.arange(float(n)), np.zeros(n), firing, [_fired(a) for a, _ in alerts])


def _labels(n: int, *faults: range) -> BoolArray:
    labels = np.zeros(n, dtype=bool)
    for f in faults:
        labels[list(f)] = True
    return labels


def test_a_fault_is_credited_only_to_an_alert_that_starts_for_it() -> None:
    labels = _labels(40, range(5, 8), range(20, 25), range(30, 35))
    result = _result(40, [(18, 26), (32, 33)])  # one from 2 readings before the second fault, over it
    # The first fault lies before row 10, not counted; the second is met by an alert started before it
    assert meet(labels, result, first=10, lead=0) == Faults(2, [2], 1)
    # With a fault head's horizon of 3, an alert 2 readings early detects it, 2 readings early; with 1, not
    assert meet(labels, result, first=10, lead=3) == Faults(2, [-2, 2], 0)
    assert meet(labels, result, first=10, lead=1) == Faults(2, [2], 1)


def test_an_alert_over_before_a_fault_or_claimed_by_another_is_not_credited() -> None:
    # An alert over before the fault starts is neither a detection nor one still up
    assert meet(_labels(30, range(15, 21)), _result(30, [(8, 12)]), first=0, lead=5) == Faults(1, [], 0)
    # One alert, inside the first fault, is not credited to the second as well
    two = _labels(40, range(10, 16), range(20, 30))
    assert meet(two, _result(40, [(12, 14)]), first=0, lead=10) == Faults(2, [2], 0)
    # A fault that spans the first row counted is not counted, nor credited with the alert it had
    assert meet(two, _result(40, [(12, 14), (22, 25)]), first=12, lead=10) == Faults(1, [2], 0)
    # An early warning before the first row counted is not credited
    assert meet(_labels(40, range(20, 30)), _result(40, [(18, 19)]), first=20, lead=5) == Faults(1, [], 0)


def _fired(row: int) -> dict[str, object]:
    return {"kind": "fault", "state": "firing", "id": f"a{row}", "source": {"offset": row}}


def test_recordings_without_any_label_or_rows_to_count_are_refused(
    presses: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, spec, model = presses
    unlabelled = tmp_path / "plain.yaml"
    unlabelled.write_text(SPEC)
    with pytest.raises(DataError, match="has anomaly labels"):
        evaluate_spec(str(unlabelled), root, "*", model)
    with pytest.raises(UsageError, match="--from -1: give the first row to count"):
        evaluate_spec(str(spec), root, "*", model, first=-1)
    with pytest.raises(UsageError, match="--from 800: no stream has a row from there on"):
        evaluate_spec(str(spec), root, "*", model, first=800)
    argv = ["spec", "--spec", str(spec), "--root", str(root), "--model", str(model)]
    report = tmp_path / "report"
    with pytest.raises(UsageError, match="--from 800"):
        main([*argv, "--from", "800", "--report", str(report)])
    assert not report.exists()  # a refused run leaves no empty report behind
    (tmp_path / "taken").write_text("")
    with pytest.raises(UsageError, match=r"--report .*taken is a file, not a folder"):
        main([*argv, "--from", "300", "--report", str(tmp_path / "taken" / "report")])


def test_streams_whose_ids_differ_only_by_a_slash_get_plots_of_their_own(tmp_path: Path) -> None:
    names = ["line/1", "line_1", "line%2F1", "line%1"]
    paths = {png_path(tmp_path, "spec_", name) for name in names}
    assert len(paths) == len(names) and all(p.parent == tmp_path for p in paths)
