"""Tests of the cell comparison and the long-memory probe, on tiny budgets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support import NAB
from train.compare import cells_markdown, compare_cells, main, param_count
from train.fit import FitConfig
from train.memory_probe import CELLS, ProbeConfig, ProbeResult, cue_batch, probe_markdown, run_probe

TINY = ProbeConfig(hidden=16, steps=60, batch=32, lr=1e-2, eval_size=256, seeds=(0,))
SMALL_FILE = NAB / "data" / "realKnownCause" / "rogue_agent_key_hold.csv"


@pytest.fixture(scope="module")
def tiny_probe() -> ProbeResult:
    return run_probe(TINY, (2, 30))


def test_cue_is_only_at_the_start_so_the_answer_needs_memory() -> None:
    x, y = cue_batch(7, 64, torch.Generator().manual_seed(3), noise=1.0)
    assert x.shape == (64, 8, 2)
    assert torch.equal(x[:, 0, 0], 2 * y - 1)  # the cue is the answer's sign ...
    assert torch.count_nonzero(x[:, 1:, 0]) == 0  # ... and appears nowhere after t = 0
    assert 0 < float(y.mean()) < 1


def test_every_cell_learns_a_short_delay(tiny_probe: ProbeResult) -> None:
    for cell in CELLS:
        assert tiny_probe.accuracy[(cell, 2)] > 0.9, cell


def test_a_long_delay_is_harder_and_the_probe_sees_forgetting(tiny_probe: ProbeResult) -> None:
    # Were the cue to leak into later steps, every cell would ace k=30 as easily as k=2.
    acc = tiny_probe.accuracy
    assert all(acc[(cell, 30)] <= acc[(cell, 2)] for cell in CELLS)
    forgot = [cell for cell in CELLS if acc[(cell, 30)] < 0.75]
    assert forgot  # on this budget the GRU (update gate opening at 0.5: state halves per step) fails
    assert all(tiny_probe.forgets_at(cell) == 30 for cell in forgot)
    assert all(tiny_probe.forgets_at(cell) is None for cell in CELLS if cell not in forgot)


def test_probe_is_deterministic(tiny_probe: ProbeResult) -> None:
    again = run_probe(TINY, (2, 30))
    assert again.runs == tiny_probe.runs
    assert torch.get_num_threads() >= 1  # the probe restores the thread count it changed


def test_forgets_at_is_the_first_delay_under_the_limit() -> None:
    result = ProbeResult({("lstm", 5): (1.0,), ("lstm", 10): (0.6, 0.8), ("lstm", 20): (0.9,)})
    assert result.accuracy[("lstm", 10)] == pytest.approx(0.7)
    assert result.forgets_at("lstm") == 10
    assert result.forgets_at("lstm", limit=0.5) is None
    table = probe_markdown(result, (5, 10, 20), cells=("lstm",))
    assert "| LSTM | 1.000 | 0.700 | 0.900 | 10 |" in table


def test_param_counts_order_by_gates() -> None:
    lstm, gru, rnn = (param_count(1, 32, 1, c) for c in ("lstm", "gru", "rnn"))
    head = 32 + 1
    assert (lstm - head, gru - head, rnn - head) == (4 * 1120, 3 * 1120, 1120)  # 4, 3, 1 gate blocks


def test_compare_table_has_every_cell_with_measurements() -> None:
    rows = compare_cells([SMALL_FILE], FitConfig(epochs=2), repeats=2)
    assert [r.cell for r in rows] == ["lstm", "gru", "rnn"]
    assert rows[0].params > rows[1].params > rows[2].params > 0
    for r in rows:
        assert r.file == "rogue_agent_key_hold"
        assert 1 <= r.epochs <= 2
        assert r.val_loss > 0
        assert -200 <= r.nab_calibrated <= r.nab_best <= 100  # the sweep's best is at least any threshold
        assert r.us_per_stream_step_b1000 > 0 and r.us_per_step_b1 > 0 and r.us_per_stream_step_engine > 0
        assert r.parity < 1e-3
    table = cells_markdown(rows).splitlines()
    assert len(table) == 2 + 3
    assert [line.split("|")[2].strip() for line in table[2:]] == ["LSTM", "GRU", "RNN"]


def test_main_rejects_unknown_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--no-such-option"])
    assert exit_info.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err
    assert not (tmp_path / "cell-comparison.md").exists()


def test_main_writes_the_report_and_the_plot(tmp_path: Path) -> None:
    argv = ["--out", str(tmp_path), "--csv", str(SMALL_FILE), "--epochs", "1", "--probe-steps", "5"]
    assert main([*argv, "--delays", "2", "3"]) == 0
    text = (tmp_path / "cell-comparison.md").read_text()
    assert "python -m train.compare --out" in text and "--delays 2 3" in text
    assert "`nproc` = " in text and "| rogue_agent_key_hold | RNN |" in text and "| k=3 |" in text
    assert (tmp_path / "memory-probe.png").read_bytes()[:4] == b"\x89PNG"
