"""Backtests run the daemon's own path; SKAB metrics and the NAB evaluation plumbing are exact."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from daemon.engine import HostEngine
from daemon.errors import ModelError
from daemon.processor import Processor
from tests.support import NAB, write_model
from train.backtest import backtest, config_for, records
from train.calibrate import alert_rows
from train.evaluate import main
from train.evaluate_nab import NabOptions, nab_files, score_nab, write_nab_csvs
from train.evaluate_skab import SkabOptions, evaluate_skab, skab_metrics, skab_summary
from train.export_check import step_through
from train.fit import FitConfig
from train.pipeline import train_series
from train.series import Series
from train.train_spec import TrainSpec

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
ALERTING = {"fire_after": 2, "resolve_after": 3, "cooldown_s": 0.0}


def _series(name: str, seed: int, rows: int = 400, start: float = 1.7e9) -> Series:
    """A temperature-like walk with two bursts that a random model scores far above its threshold."""
    rng = np.random.default_rng(seed)
    values = 70 + np.cumsum(rng.normal(0, 0.3, rows))
    values[150:170] += 40
    values[300:305] -= 30
    ts = start + 60.0 * np.arange(rows, dtype=np.float64)
    return Series(name, ts, values.astype(np.float32)[:, None], ("temp_c",))


def test_backtest_scores_equal_the_bare_onnx_model_and_alerts_equal_the_processor(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    streams = [_series("a", 1), _series("b", 2, start=1.7e9 + 30)]  # interleaved in time
    bt = backtest(model, streams, ALERTING)
    assert bt.rejected == 0 and bt.dropped == 0 and bt.threshold == 3.0
    proto = onnx.load(str(model))
    for s in streams:
        expected = step_through(proto, s.values).score
        got = bt.streams[s.name]
        np.testing.assert_allclose(got.score, expected, atol=1e-6, rtol=0)
        assert got.alerts and got.onsets.sum() >= 2  # both bursts fire
    # The same records through a Processor of our own, one record per poll: the same alert records.
    processor = Processor(config_for(model, ALERTING), {"backtest": HostEngine(model, 4)})
    emitted = [a for r in records(streams) for a in processor.process([r]).alerts]
    for s in streams:
        assert [a for a in emitted if a["stream"] == s.name] == bt.streams[s.name].alerts


def test_firing_state_runs_from_each_firing_alert_to_its_resolution(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    s = _series("a", 3)
    result = backtest(model, [s], ALERTING).streams["a"]
    expected = np.zeros(len(s), dtype=bool)
    start = None
    for alert in result.alerts:
        row = alert["source"]["offset"]
        if alert["state"] == "firing" and start is None:
            start = row
        elif alert["state"] == "resolved":
            assert start is not None
            expected[start:row] = True
            start = None
    if start is not None:
        expected[start:] = True
    np.testing.assert_array_equal(result.firing, expected)
    # The alert state machine's own rule: it fires on the fire_after-th reading at or above the threshold.
    first = int(np.flatnonzero(result.onsets)[0])
    assert np.all(result.score[first - 1 : first + 1] >= 3.0)


def test_rows_the_daemon_drops_are_not_scored(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m.onnx")
    s = _series("a", 4, rows=50)
    ts = s.ts.copy()
    ts[10] = ts[9]  # a repeated timestamp, as in NAB's ec2_request_latency file
    bt = backtest(model, [Series("a", ts, s.values, s.channels)])
    assert bt.dropped == 1 and np.isnan(bt.streams["a"].score[10])
    assert np.isfinite(np.delete(bt.streams["a"].score, 10)).all()


def test_a_peak_gated_model_alerts_once_as_an_excursion_rises(tmp_path: Path) -> None:
    """Trained with a peak gate, a model's alerts fire on the first reading over the threshold (its
    metadata says so) and stay up while the excursion lasts; its score passes the threshold only on
    readings that beat the one before."""
    series = _series("a", 4, rows=1500)
    # 100 readings of swings the forecaster cannot follow, after the adaptive warm-up
    series.values[1200:1300, 0] += 15.0 * (-1.0) ** np.arange(100)
    spec = TrainSpec("gated", fit_fraction=0.3, adapt=0.02, peak_half_life=50.0)
    report = train_series(series, spec, FitConfig(epochs=3, hidden=8), tmp_path / "m.onnx", progress=False)
    assert report.metadata["thresholds"]["fault"]["alerting"]["fire_after"] == 1
    assert report.metadata["score"]["peak_half_life"] == 50.0
    result = backtest(report.model_path, [series], {"cooldown_s": 0.0}).streams["a"]
    assert np.flatnonzero(result.onsets & (np.arange(1500) >= 1200)).tolist() == [1200]
    # The gated score drops to 0 after the excursion's first readings; the ungated one holds the alert up.
    alerting = report.metadata["thresholds"]["fault"]["alerting"]
    gated_only = alert_rows(np.nan_to_num(result.score), report.threshold, alerting)[0]
    assert result.firing[1200:1215].all() and result.firing[1200:1300].sum() > gated_only[1200:1300].sum()
    score = np.nan_to_num(result.score)
    above = np.flatnonzero(score > report.threshold)
    assert 1200 in above and all(score[t] > score[t - 1] for t in above)


def _climb_then_jump() -> Series:
    """A stream that climbs past its range over readings 1200-1299, a little at a time, then jumps past
    the range the climb left (by a tenth of it) at reading 1300 and stays there."""
    series = _series("a", 4, rows=1500)
    v = series.values[:, 0]
    width = v[:1200].max() - v[:1200].min()
    v[1200:1300] += np.linspace(0.0, v[:1200].max() - v[1199] + 0.5 * width, 100, dtype=np.float32)
    v[1300:] = v[:1300].max() + 0.1 * (v[:1300].max() - v[:1300].min())
    return series


def test_a_range_checked_model_alerts_at_the_cap_when_a_reading_leaves_the_range(tmp_path: Path) -> None:
    """A reading past the stream's range widened by the tolerance scores the cap and alerts; a climb that
    moves the range a little at a time does not."""
    series = _climb_then_jump()
    spec = TrainSpec("ranged", fit_fraction=0.3, adapt=0.02, peak_half_life=50.0, range_tolerance=0.05)
    report = train_series(series, spec, FitConfig(epochs=3, hidden=8), tmp_path / "m.onnx", progress=False)
    assert report.metadata["score"]["range_tolerance"] == 0.05
    result = backtest(report.model_path, [series], {"cooldown_s": 0.0}).streams["a"]
    capped = np.flatnonzero(result.score == 100.0)
    assert 1300 in capped and result.onsets[1300]
    fired = [a for a in result.alerts if a["state"] == "firing" and a["score"] == 100.0]
    assert fired and fired[0]["peak"] == 100.0  # the alert reports the break, not the ungated score
    assert not np.isin(np.arange(1200, 1300), capped).any()  # the climb widened the range as it went


def test_a_creep_checked_model_alerts_on_the_climb_the_range_check_lets_pass(tmp_path: Path) -> None:
    """Through the daemon's path, the creep check alerts at the cap while the climb is under way, on a
    reading the range check alone leaves unflagged, and not again within its lag. The alert then ends
    as a range break's does: the forecaster follows the climb, so the ungated score stays low."""
    series = _climb_then_jump()
    spec = TrainSpec(
        "crept", fit_fraction=0.3, adapt=0.02, peak_half_life=50.0, range_tolerance=0.05, range_creep=50
    )
    report = train_series(series, spec, FitConfig(epochs=3, hidden=8), tmp_path / "m.onnx", progress=False)
    assert report.metadata["score"]["range_creep"] == 50
    result = backtest(report.model_path, [series], {"cooldown_s": 0.0}).streams["a"]
    climbing = np.flatnonzero(result.score[1200:1300] == 100.0) + 1200
    assert len(climbing) >= 1 and np.diff(climbing).min(initial=51) > 50
    assert result.onsets[climbing[0]]


def test_skab_metrics_on_a_hand_made_case() -> None:
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    truth = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    m = skab_metrics(pred, truth)
    assert (m.tp, m.fp, m.fn, m.tn) == (3, 1, 2, 4)
    assert m.f1 == 3 / (3 + (2 + 1) / 2)  # 2/3
    assert m.far == 100 * 1 / 5
    assert m.mar == 100 * 2 / 5
    assert (m + m).f1 == m.f1 and (m + m).tp == 6


def test_nab_evaluation_on_one_small_file_scores_and_writes_nab_csvs(tmp_path: Path) -> None:
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "name: one\nfiles: [data/realKnownCause/rogue_agent_key_hold.csv]\nchannels: [value]\n"
        "stream_name: '{stem}'\nwindows: {path: labels/combined_windows.json}\n"
    )
    o = NabOptions(fit=FitConfig(epochs=2, hidden=8))
    files = nab_files(NAB, str(spec), o, tmp_path / "models")
    assert len(files) == 1 and files[0].fit_rows == 282  # NAB's probation: 15% of 1882 rows
    scores = score_nab(files, "score")
    assert [s.profile.name for s in scores] == ["standard", "reward_low_FP_rate", "reward_low_FN_rate"]
    assert all(-100.0 <= s.normalised <= 100.0 for s in scores)
    write_nab_csvs(files, scores, "score", tmp_path / "results", "faultcast")
    folder = tmp_path / "results" / "faultcast"
    with (folder / "realKnownCause" / "faultcast_rogue_agent_key_hold.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1882 and all(0.0 <= float(r["anomaly_score"]) < 1.0 for r in rows)
    assert {r["label"] for r in rows} == {"0", "1"}
    for s in scores:
        with (folder / f"faultcast_{s.profile.name}_scores.csv").open() as f:
            table = list(csv.DictReader(f))
        assert [r["File"] for r in table] == ["realKnownCause/rogue_agent_key_hold.csv", ""]
        assert float(table[0]["Threshold"]) == s.best.threshold  # the swept one, as upstream writes it
        assert float(table[0]["Score"]) == s.best.score and table[1]["Detector"] == "Totals"


def test_evaluate_nab_command_writes_a_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "name: one\nfiles: [data/realKnownCause/rogue_agent_key_hold.csv]\nchannels: [value]\n"
        "stream_name: '{stem}'\nwindows: {path: labels/combined_windows.json}\n"
    )
    monkeypatch.chdir(tmp_path)  # a report folder given relative to where the command runs, as the docs do
    argv = ["nab", "--root", str(NAB), "--spec", str(spec), "--report", "reports/r"]
    assert main([*argv, "--epochs", "2", "--hidden", "8", "--seed", "11"]) == 0
    report = tmp_path / "reports" / "r"
    summary = (report / "summary.md").read_text()
    # data/nab holds no results folder, and one file is no whole category the shipped numbers cover
    assert "Published detectors: none for this file" in summary and "ARTime" not in summary
    assert "seed=11," in summary  # the seed the models were trained with
    assert (report / "nab_rogue_agent_key_hold.png").stat().st_size > 10_000


@pytest.mark.skipif(
    not (SHARED / "SKAB").is_dir(), reason=f"SKAB data not found at {SHARED} (GPL: not vendored)"
)
def test_skab_evaluation_pools_the_test_parts_of_every_valve1_file(tmp_path: Path) -> None:
    result = evaluate_skab(SHARED, SkabOptions(fit=FitConfig(epochs=2, hidden=8)), tmp_path)
    assert len(result.streams) == 16
    pooled = result.pooled
    rows = sum(len(s.labelled) - 400 for s in result.streams)
    assert pooled.tp + pooled.fp + pooled.fn + pooled.tn == rows
    assert 0.0 <= pooled.f1 <= 1.0 and 0.0 <= pooled.far <= 100.0
    assert result.threshold == pytest.approx(0.8 * result.train.threshold)
    summary = skab_summary(result, "faultcast evaluate skab")
    assert "Readings the daemon path refused: 0; dropped: 0." in summary
    assert "Knobs: hidden=8" in summary  # trained in this run: its fitting knobs are listed
    # a model retrained with the next seed after a parity failure names the seed that trained it
    meta = result.train.metadata
    retried = {**meta, "training": {**meta["training"], "fit": {**meta["training"]["fit"], "seed": 8}}}
    summary = skab_summary(replace(result, train=replace(result.train, metadata=retried)), "faultcast")
    assert "seed=8," in summary and "seed=7," not in summary


@pytest.mark.skipif(
    not (SHARED / "SKAB").is_dir(), reason=f"SKAB data not found at {SHARED} (GPL: not vendored)"
)
def test_skab_evaluation_refuses_a_model_whose_channels_the_files_lack(tmp_path: Path) -> None:
    model = write_model(tmp_path / "temperature.onnx")
    with pytest.raises(ModelError, match=r"reads temp_c, which the SKAB files do not have \(they have accel"):
        evaluate_skab(SHARED, SkabOptions(), tmp_path, model)
