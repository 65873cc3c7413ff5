"""One console script: `faultcast --help` and every subcommand's help explain themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.cli import main


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


def test_config_errors_exit_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("models: [{name: m, path: m.onnx}]\nkafka: {bootstrap_server: x}\n")
    assert main(["run", "--config", str(config), "--check"]) == 2
    assert "did you mean 'bootstrap_servers'" in capsys.readouterr().err
