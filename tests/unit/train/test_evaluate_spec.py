"""`faultcast evaluate spec`: a model trained on one's own recordings, scored on their labelled faults."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.cli import main as cli_main
from daemon.errors import DataError, UsageError
from train.backtest import StreamResult
from train.evaluate import main
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
    assert (tmp_path / "spec_press-1.png").stat().st_size > 10_000


def test_a_fault_is_credited_only_to_an_alert_that_starts_for_it() -> None:
    labels = np.zeros(40, dtype=bool)
    labels[[*range(5, 8), *range(20, 25), *range(30, 35)]] = True
    firing = np.zeros(40, dtype=bool)
    firing[18:27] = True  # an alert from row 18: 2 readings before the second fault, over it
    result = StreamResult("s", np.arange(40.0), np.zeros(40), firing, [_fired(18), _fired(32)])
    # The first fault lies before row 10, not counted; the second is met by an alert started before it
    assert meet(labels, result, first=10, lead=0) == Faults(2, [2], 1)
    # With a fault head's horizon of 3, an alert 2 readings early detects it, 2 readings early
    assert meet(labels, result, first=10, lead=3) == Faults(2, [-2, 2], 0)


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
