"""The exported ONNX step model must reproduce PyTorch, and training must be reproducible."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
import torch

from daemon.app import load_engines
from daemon.cli import main as cli_main
from daemon.config import parse_config
from daemon.errors import DataError, ModelError, ParityError, UsageError
from daemon.model_file import BASELINE_INPUT, METADATA_KEY
from tests.support import MACHINE_TEMPERATURE
from train import pipeline
from train.evaluate_skab import fit_retrying
from train.export import build_step_model, save
from train.export_check import parity, step_through
from train.fit import FitConfig, fit
from train.model import Forecaster, ModelShape
from train.pipeline import PARITY_TOLERANCE, TrainReport
from train.run_folder import export_run, write_run
from train.score import (
    ScoreParams,
    ScoreSettingError,
    StreamOutputs,
    adaptive_score,
    creeping_breaks,
    range_breaks,
    stream_scores,
)
from train.series import load_nab_csv
from train.train_spec import ScoreOptions, score_options


@pytest.mark.parametrize(
    ("cell", "layers", "baseline", "heads", "scale_floor"),
    [
        ("lstm", 1, 0, False, None),
        ("lstm", 2, 0, False, None),
        ("gru", 2, 0, False, None),
        ("rnn", 1, 0, False, None),
        ("lstm", 1, 400, False, None),
        ("lstm", 1, 400, True, None),
        ("gru", 2, 0, True, None),
        ("lstm", 1, 400, False, 0.5),
        ("lstm", 1, 0, False, 0.5),
        ("gru", 1, 301, True, 1.0),
    ],
)
def test_step_model_reproduces_the_full_sequence_over_2000_steps(
    cell: str, layers: int, baseline: int, heads: bool, scale_floor: float | None
) -> None:
    torch.manual_seed(0)
    quantiles = (0.5, 0.9) if heads else ()
    shape = ModelShape(3, 16, layers, cell, clock=heads, quantiles=quantiles, load=1, fault=heads)  # type: ignore[arg-type]
    model = Forecaster(shape).eval()
    params = ScoreParams(
        mean=(1.0, -2.0, 0.5),
        std=(2.0, 1.0, 0.25),
        resid_std=(0.3, 0.2, 0.5),
        baseline=baseline,
        scale_floor=scale_floor,
    )
    rng = np.random.default_rng(1)
    x = (np.cumsum(rng.normal(0, 0.3, (2000, 3)), axis=0) + np.array([1.0, -2.0, 0.5])).astype(np.float32)
    ts = 1.7e9 + 300.0 * np.arange(2000) + rng.uniform(0, 30, 2000)
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["a", "b", "c"]})
    onnx.checker.check_model(proto, full_check=True)
    assert parity(model, params, proto, x, ts) <= PARITY_TOLERANCE
    stepped = step_through(proto, x, ts)
    scores = stepped.score
    assert np.all(scores[: params.first_scored] == 0) and np.all(scores[params.first_scored :] > 0)
    assert stepped.congestion.shape == (2000, len(quantiles))
    assert stepped.fault.shape == ((2000,) if heads else (0,))
    inputs = [i.name for i in proto.graph.input]
    assert inputs == ["x", "state", "baseline_readings", *(["ts"] if heads else [])]


def test_clock_inputs_change_what_the_step_model_says() -> None:
    """The time of day reaches the forecast: the same readings at other hours forecast otherwise."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(1, 8, clock=True, quantiles=(0.5,))).eval()
    params = ScoreParams(mean=(10.0,), std=(2.0,), resid_std=(0.5,))
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["occ"]})
    x = np.full((50, 1), 10.0, dtype=np.float32)
    night = step_through(proto, x, 1.7e9 + 60.0 * np.arange(50)).congestion
    noon = step_through(proto, x, 1.7e9 + 43200 + 60.0 * np.arange(50)).congestion
    assert np.abs(night - noon).max() > 1e-3


def test_trained_model_carries_its_contract_and_passed_parity(machine_model: TrainReport) -> None:
    proto = onnx.load(str(machine_model.model_path))
    meta = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    assert meta["features"] == ["temp_c"] and meta["cell"] == "lstm"
    assert meta["thresholds"]["fault"]["threshold"] == machine_model.threshold
    fault = meta["thresholds"]["fault"]
    assert fault["alerting"] == {"resolve_ratio": 0.8, "fire_after": 3, "resolve_after": 6}
    assert fault["validation_alerts"] == 0  # calibrated to stay quiet on the validation split
    assert [i.name for i in proto.graph.input] == ["x", "state", "baseline_readings"]
    assert [o.name for o in proto.graph.output] == ["score", "contrib", "next_state"]
    # h, c, then base, pred and the smoothed error (for the channel shares) per channel, level, steps
    assert meta["state_width"] == 2 * 32 + 3 * 1 + 2
    assert machine_model.parity_max_abs <= PARITY_TOLERANCE


def test_same_seed_gives_identical_weights() -> None:
    series = load_nab_csv(MACHINE_TEMPERATURE, "temp_c")
    z = ((series.values[:1500] - series.values[:1000].mean()) / series.values[:1000].std()).astype(np.float32)
    config = FitConfig(epochs=3, hidden=8)
    first = fit(z[:1000], z[1000:], config, progress=False).model.state_dict()
    second = fit(z[:1000], z[1000:], config, progress=False).model.state_dict()
    other = fit(z[:1000], z[1000:], FitConfig(epochs=3, hidden=8, seed=8), progress=False).model.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_run_folder_holds_metadata_metrics_loss_curves_and_validation_plots(
    machine_model: TrainReport, tmp_path: Path
) -> None:
    write_run(machine_model, tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == machine_model.history
    assert json.loads((tmp_path / "metadata.json").read_text())["name"] == "machine-temperature"
    png = b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "loss.png").read_bytes()[:8] == png
    [scored] = machine_model.validation  # one validation segment: the end of the fitted part
    assert len(scored.score) == len(scored.segment.series)
    validated = scored.score[scored.segment.score_from :]
    assert validated.max() * 1.5 <= machine_model.threshold * (1 + 1e-6)  # the headroom rule held
    name = scored.segment.series.name.replace("/", "_")
    assert (tmp_path / f"validation_0_{name}.png").read_bytes()[:8] == png


@pytest.mark.parametrize("fixture", ["machine_model", "traffic_model"])
def test_export_rebuilds_the_trained_model_from_its_run_folder(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    report: TrainReport = request.getfixturevalue(fixture)
    write_run(report, tmp_path / "run")
    gap = export_run(tmp_path / "run", tmp_path / "again.onnx")
    assert gap <= PARITY_TOLERANCE
    assert (tmp_path / "again.onnx").read_bytes() == report.model_path.read_bytes()


def test_export_refuses_a_run_whose_model_misses_parity(
    machine_model: TrainReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_run(machine_model, tmp_path / "run")
    monkeypatch.setattr(pipeline, "PARITY_TOLERANCE", -1.0)  # a bound no model keeps
    with pytest.raises(ParityError, match=r"^machine-temperature: .*step model does not reproduce the run"):
        export_run(tmp_path / "run", tmp_path / "again.onnx")
    assert not (tmp_path / "again.onnx").exists()


def test_evaluation_trains_again_with_the_next_seed_only_when_parity_fails() -> None:
    seeds: list[int] = []

    def drifting(fit: FitConfig) -> TrainReport:
        seeds.append(fit.seed)
        raise ParityError("drift")

    with pytest.raises(ParityError):
        fit_retrying(drifting, FitConfig(seed=7))
    assert seeds == [7, 8, 9]
    seeds.clear()

    def unreadable(fit: FitConfig) -> TrainReport:
        seeds.append(fit.seed)
        raise DataError("bad file")

    with pytest.raises(DataError):
        fit_retrying(unreadable, FitConfig(seed=7))
    assert seeds == [7]


def test_export_needs_a_run_folder_with_weights(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train with --run-dir"):
        export_run(tmp_path, tmp_path / "m.onnx")


def test_per_stream_baseline_scales_a_noisier_streams_score_and_its_length_is_configurable(
    tmp_path: Path,
) -> None:
    """The baseline's second half measures the stream's spread; the daemon may set the baseline length."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(features=1, hidden=8)).eval()
    base = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(0.1,), baseline=200)
    rng = np.random.default_rng(0)
    noisy = rng.normal(0, 0.5, (1000, 1)).astype(np.float32)  # 5x the residual spread it was fitted with
    plain = stream_scores(model, torch.from_numpy(noisy), base).score
    scaled = stream_scores(model, torch.from_numpy(noisy), replace(base, scale_floor=1.0)).score
    ratio = (plain[200:] / scaled[200:]).numpy()
    assert np.allclose(ratio, ratio[0]) and ratio[0] > 2.0  # one factor per stream: its own spread
    quiet = stream_scores(model, torch.from_numpy(noisy * 0.01), replace(base, scale_floor=1.0)).score
    quiet_plain = stream_scores(model, torch.from_numpy(noisy * 0.01), base).score
    assert torch.equal(quiet, quiet_plain)  # never more sensitive than the floor allows

    path = tmp_path / "m.onnx"
    proto = build_step_model(model, base, {"name": "m", "version": "1", "features": ["a"]})
    save(proto, path)
    # the daemon's config sets the length: models[].baseline_readings
    config = parse_config(
        {"models": [{"name": "m", "path": str(path), "baseline_readings": 50}]}, tmp_path, {}
    )
    engine = load_engines(config)["m"]
    got = [
        float(engine.step(["s"], noisy[t : t + 1], np.zeros(1, dtype=bool), np.zeros(1)).score[0])
        for t in range(400)
    ]
    expected = stream_scores(model, torch.from_numpy(noisy[:400]), replace(base, baseline=50)).score
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    # A model whose baseline length is fixed inside it (no such input, as before the input existed)
    # cannot take the key: refused at load, before any reading is scored.
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    [length] = [i for i in fixed.graph.input if i.name == BASELINE_INPUT]
    fixed.graph.input.remove(length)
    fixed.graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([200.0], np.float32), BASELINE_INPUT)
    )
    save(fixed, tmp_path / "fixed.onnx")
    with pytest.raises(
        ModelError, match="baseline_readings is set, but this model has no 'baseline_readings'"
    ):
        load_engines(replace(config, models=(replace(config.models[0], path=str(tmp_path / "fixed.onnx")),)))
    unset = replace(config.models[0], path=str(tmp_path / "fixed.onnx"), baseline_readings=None)
    assert load_engines(replace(config, models=(unset,)))["m"].info.baseline_input is False


@pytest.mark.parametrize(("cell", "baseline", "scale_floor"), [("lstm", 0, None), ("gru", 200, 0.5)])
def test_adaptive_score_step_model_matches_the_reference(
    cell: str, baseline: int, scale_floor: float | None
) -> None:
    """The adaptive score (each stream's own moving mean and variance) is state the graph carries."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(2, 16, 1, cell)).eval()  # type: ignore[arg-type]
    params = ScoreParams(
        mean=(1.0, -2.0), std=(2.0, 1.0), resid_std=(0.3, 0.2), baseline=baseline, scale_floor=scale_floor,
        adapt=0.02,
    )  # fmt: skip
    rng = np.random.default_rng(2)
    x = (np.cumsum(rng.normal(0, 0.3, (2000, 2)), axis=0) + np.array([1.0, -2.0])).astype(np.float32)
    x[1500:1510] += 8.0  # a burst the stream has not seen lately
    ts = 1.7e9 + 300.0 * np.arange(2000)
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["a", "b"]})
    onnx.checker.check_model(proto, full_check=True)
    assert parity(model, params, proto, x, ts) <= PARITY_TOLERANCE
    scores = step_through(proto, x, ts).score
    settled = params.first_scored + params.adapt_warmup  # the warm-up counts scored readings only
    assert params.adapt_warmup == 50 and settled == max(baseline, 1) + 50
    assert np.all(scores[:settled] == 0) and scores[settled:].max() > 0
    # A stream fresh out of its baseline does not alarm: its statistics never saw the baseline's zeros.
    assert np.mean(scores[settled:1500] > 4.0) < 0.01
    assert scores[1500:1510].max() > np.quantile(scores[settled:1500], 0.99)
    assert np.mean(scores[settled:] == 0) > 0.2  # below its own mean is 0, not negative


def test_adaptive_statistics_start_as_the_plain_mean_and_variance_of_the_readings_seen() -> None:
    """Until the warm-up ends (one memory, 1 / rate readings) the statistics are those of the readings
    seen, not a moving average started from zero, so the first score after it is not inflated."""
    params = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), adapt=0.01)
    assert params.adapt_warmup == 100
    score = torch.zeros(103)
    score[1:101] = torch.tensor([0.0, 2.0] * 50)  # mean 1, variance 1 (reading 0 is not scored)
    score[101:] = torch.tensor([3.0, 1.0])
    out = adaptive_score(score, params)
    assert torch.all(out[:101] == 0)  # the warm-up
    assert out[101].item() == pytest.approx(2.0, abs=1e-5)  # (3 - 1) / 1
    # one step further the statistics move at the rate: mean 1 + 0.01 * 2, variance 0.99 * (1 + 0.04)
    assert out[102].item() == 0.0  # 1 is below the moved mean


def test_adaptive_statistics_move_at_the_rate_once_it_exceeds_one_over_n() -> None:
    """At rate 0.25: readings 1-4 (1, 3, 1, 3) give mean 2 and variance 1 (their own); reading 5 (5)
    scores (5 - 2) / 1 and moves them by 0.25, not 1/5, to mean 2.75 and variance 0.75 * (1 + 0.25 * 9);
    reading 6 (5) then scores 2.25 / sqrt(2.4375)."""
    params = ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), adapt=0.25)
    out = adaptive_score(torch.tensor([0.0, 1.0, 3.0, 1.0, 3.0, 5.0, 5.0]), params)
    assert out[:5].tolist() == [0.0] * 5
    assert out[5].item() == pytest.approx(3.0, abs=1e-6)
    assert out[6].item() == pytest.approx(2.25 / math.sqrt(2.4375), abs=1e-6)


@pytest.mark.parametrize("rate", [0.0, 1.5, 1e-7])
def test_adaptive_rate_outside_its_range_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="adaptive score's rate"):
        ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), adapt=rate)


@pytest.mark.parametrize(("adapt", "baseline"), [(None, 0), (0.02, 200)])
def test_peak_gate_step_model_matches_the_reference(adapt: float | None, baseline: int) -> None:
    """The gate keeps a score only where it beats the stream's decaying recent peak (one state column)."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(2, 16)).eval()
    common = {"mean": (1.0, -2.0), "std": (2.0, 1.0), "resid_std": (0.3, 0.2), "baseline": baseline}
    params = ScoreParams(**common, adapt=adapt, peak_half_life=20.0)  # type: ignore[arg-type]
    ungated = ScoreParams(**common, adapt=adapt)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    x = (np.cumsum(rng.normal(0, 0.3, (2000, 2)), axis=0) + np.array([1.0, -2.0])).astype(np.float32)
    x[1500:1540] += 8.0  # an excursion that lasts 40 readings
    ts = 1.7e9 + 300.0 * np.arange(2000)
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["a", "b"]})
    onnx.checker.check_model(proto, full_check=True)
    assert parity(model, params, proto, x, ts) <= PARITY_TOLERANCE
    # The graph follows the reference (parity above); the reference shows what the gate does.
    gated = stream_scores(model, torch.from_numpy(x), params, ts).score.numpy()
    plain = stream_scores(model, torch.from_numpy(x), ungated, ts).score.numpy()
    kept = gated > 0
    np.testing.assert_array_equal(gated[kept], plain[kept])  # a kept score is the plain score
    # Kept only where the score rose, to over half the last 20 readings' highest (the peak's half-life);
    # dropped only where some earlier score was at least as high.
    for t in np.flatnonzero(kept):
        assert plain[t] > plain[t - 1] and plain[t] > 0.5 * plain[max(t - 20, 0) : t].max()
    for t in np.flatnonzero(~kept & (plain > 0)):
        assert plain[t] <= plain[:t].max()
    assert kept.sum() < 0.5 * (plain > 0).sum()
    # The excursion's first reading is kept, and it reports the excursion on few readings.
    assert kept[1500] and kept[1500:1540].sum() < 0.5 * (plain[1500:1540] > 0).sum()


def test_a_configured_baseline_length_moves_the_adaptive_and_range_warm_ups_with_it(tmp_path: Path) -> None:
    """The warm-ups count from the stream's first scored reading, which the daemon's baseline_readings
    sets at run time: the step model must follow it, not the baseline it was exported with."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(features=1, hidden=8)).eval()
    params = ScoreParams(
        mean=(0.0,), std=(1.0,), resid_std=(0.1,), baseline=200, adapt=0.02, peak_half_life=20.0,
        range_tolerance=0.05,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.3, (400, 1)).astype(np.float32)
    x[300] = 3.0  # beyond the range: a break once the range check has settled (50 + 150), not before
    path = tmp_path / "m.onnx"
    save(build_step_model(model, params, {"name": "m", "version": "1", "features": ["a"]}), path)
    config = parse_config(
        {"models": [{"name": "m", "path": str(path), "baseline_readings": 50}]}, tmp_path, {}
    )
    engine = load_engines(config)["m"]
    got = np.array(
        [
            float(engine.step(["s"], x[t : t + 1], np.zeros(1, dtype=bool), np.zeros(1)).score[0])
            for t in range(len(x))
        ]
    )
    expected = stream_scores(model, torch.from_numpy(x), replace(params, baseline=50)).score.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got[300] == params.adapt_cap and (got[50:100] == 0).all() and got[100:300].max() > 0


def _checked_against(
    model: Forecaster,
    params: ScoreParams,
    other: ScoreParams,
    x: npt.NDArray[np.float32],
    ts: npt.NDArray[np.float64],
) -> tuple[onnx.ModelProto, StreamOutputs, StreamOutputs]:
    """The two-channel step model of ``params`` (checked, and stepped to parity over ``x``), with the
    reference outputs of ``params`` and of ``other`` for comparison."""
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["a", "b"]})
    onnx.checker.check_model(proto, full_check=True)
    assert parity(model, params, proto, x, ts) <= PARITY_TOLERANCE
    values = torch.from_numpy(x)
    return proto, stream_scores(model, values, params, ts), stream_scores(model, values, other, ts)


@pytest.mark.parametrize("baseline", [0, 200])
def test_range_check_step_model_matches_the_reference(baseline: int) -> None:
    """A reading of either channel outside the stream's range so far, widened by the tolerance, scores
    the cap once the stream has settled; the rest score as without the check. The readings sit far from
    zero (a stream's range starts at its first reading, not at its zeroed state) and stay flat until
    after the warm-up (a stream without a range yet has nothing to break)."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(2, 16)).eval()
    common = {"mean": (70.0, -20.0), "std": (2.0, 1.0), "resid_std": (0.3, 0.2), "baseline": baseline}
    params = ScoreParams(**common, adapt=0.02, peak_half_life=20.0, range_tolerance=0.05)  # type: ignore[arg-type]
    unchecked = ScoreParams(**common, adapt=0.02, peak_half_life=20.0)  # type: ignore[arg-type]
    # the range waits three memories of the adaptive statistics, the adaptive score one
    assert (params.range_warmup, params.adapt_warmup) == (150, 50)
    rng = np.random.default_rng(4)
    wave = np.sin(np.arange(2000) / 30.0)[:, None] * np.array([3.0, 1.0]) + rng.normal(0, 0.1, (2000, 2))
    wave[:400] = 0.0  # flat past the warm-up (settled at 151 or 350)
    x = (wave + np.array([70.0, -20.0])).astype(np.float32)
    x[1500, 1] += 3.0  # channel b alone leaves its range, upwards
    x[1700, 0] -= 6.0  # channel a, downwards
    ts = 1.7e9 + 300.0 * np.arange(2000)
    proto, checked, plain = _checked_against(model, params, unchecked, x, ts)
    capped = checked.score.numpy() == params.adapt_cap
    seen_low, seen_high = np.minimum.accumulate(x), np.maximum.accumulate(x)
    width = seen_high[:-1] - seen_low[:-1]
    beyond = (x[1:] > seen_high[:-1] + 0.05 * width) | (x[1:] < seen_low[:-1] - 0.05 * width)
    expected = np.concatenate([[False], (beyond & (width > 0)).any(axis=1)])
    expected[: params.settled] = False
    assert expected[1500] and expected[1700]
    assert not expected[400] and expected[401:460].any()  # no range to break until the flat start ends
    assert expected.sum() < 40  # breaks while the range fills in, then only the two above
    np.testing.assert_array_equal(capped, expected)
    np.testing.assert_array_equal(checked.score.numpy()[~capped], plain.score.numpy()[~capped])
    np.testing.assert_array_equal(checked.hold.numpy(), plain.hold.numpy())
    # Its state: each channel's lowest and highest reading, then the channels' smoothed errors at the end.
    layout = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])["state_layout"]
    names = [(c["name"], c["size"]) for c in layout[-3:]]
    assert names == [("range_low", 2), ("range_high", 2), ("channel_level", 2)]
    assert layout[-1]["offset"] + 2 == proto.graph.input[1].type.tensor_type.shape.dim[1].dim_value


@pytest.mark.parametrize("baseline", [0, 200])
def test_creep_check_flags_a_range_that_moves_a_little_at_a_time(baseline: int) -> None:
    """Both channels drift beyond their range, each new extreme a small step past the last one, so the
    range check never fires: the creep check does, on the ONNX step as in the reference, once a lag at
    most. Channel b drifts down soon after the stream settles, within one lag of its first reading (a
    stream starts ready); channel a climbs for good from reading 1000. Elsewhere the score is the range
    check's."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(2, 16)).eval()
    common = {"mean": (70.0, -20.0), "std": (2.0, 1.0), "resid_std": (0.3, 0.2), "baseline": baseline}
    knobs = {"adapt": 0.02, "peak_half_life": 20.0, "range_tolerance": 0.05}
    params = ScoreParams(**common, **knobs, range_creep=400)  # type: ignore[arg-type]
    ranged = ScoreParams(**common, **knobs)  # type: ignore[arg-type]
    t = np.arange(3000.0)
    a = 2.0 * np.sin(t / 25.0) + 0.0015 * np.clip(t - 1000.0, 0.0, None)
    b = np.sin(t / 40.0 + 1.0) - 0.003 * np.clip(t - 150.0, 0.0, 250.0)
    x = (np.stack([a, b], axis=1) + np.array([70.0, -20.0])).astype(np.float32)
    ts = 1.7e9 + 300.0 * t
    proto, crept, plain = _checked_against(model, params, ranged, x, ts)
    capped = crept.score.numpy() == params.adapt_cap
    assert not (plain.score.numpy() == params.adapt_cap).any()  # no step is a break of the range
    moves = np.flatnonzero(capped)
    assert params.settled <= moves[0] < 400  # b's drift, before a whole lag has passed
    assert (moves[1:] >= 1000).all() and len(moves) >= 5  # a's climb, and nothing while it holds still
    assert (np.diff(moves) >= 400).all()  # a move counts once a lag, not at each new extreme
    np.testing.assert_array_equal(crept.score.numpy()[~capped], plain.score.numpy()[~capped])
    np.testing.assert_array_equal(crept.hold.numpy(), plain.hold.numpy())
    layout = json.loads({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])["state_layout"]
    names = [(c["name"], c["size"]) for c in layout[-6:]]
    assert names == [
        ("range_low", 2),
        ("range_high", 2),
        ("creep_low_gap", 2),
        ("creep_high_gap", 2),
        ("creep_wait", 1),
        ("channel_level", 2),
    ]
    assert layout[-1]["offset"] + 2 == proto.graph.input[1].type.tensor_type.shape.dim[1].dim_value


@pytest.mark.parametrize("baseline", [0, 50])
def test_creep_check_fires_once_a_lag_on_a_steady_climb(baseline: int) -> None:
    """Channel a holds still until past the settling, swings a little, then climbs 0.01 a reading for
    good, each step far inside the range check's tolerance: the check fires at every 51st reading (it
    waits 50), on the ONNX step as in the reference. Its first swing away from a single value is not a
    creep: a channel that has shown one value has no range to have moved beyond."""
    torch.manual_seed(0)
    model = Forecaster(ModelShape(2, 16)).eval()
    common = {"mean": (70.0, -20.0), "std": (2.0, 1.0), "resid_std": (0.3, 0.2), "baseline": baseline}
    knobs = {"adapt": 0.02, "peak_half_life": 20.0, "range_tolerance": 0.05}
    params = ScoreParams(**common, **knobs, range_creep=50)  # type: ignore[arg-type]
    t = np.arange(2000.0)
    departs = params.settled + 20
    a = np.where(t < departs, 0.0, 0.3 * np.sin((t - departs) / 5.0))
    a = np.where(t >= departs + 60, 0.3 + 0.01 * (t - departs - 60), a)
    x = (np.stack([a, 0.5 * np.sin(t / 13.0)], axis=1) + np.array([70.0, -20.0])).astype(np.float32)
    ts = 1.7e9 + 300.0 * t
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["a", "b"]})
    assert parity(model, params, proto, x, ts) <= PARITY_TOLERANCE
    values = torch.from_numpy(x)
    moves = np.flatnonzero(creeping_breaks(values, params).numpy())
    climb = moves[moves > departs + 60]
    assert moves[0] > departs + 1  # a's first reading off its one value (departs + 1) is no creep
    assert len(climb) >= 15 and (np.diff(climb) == 51).all()
    assert not range_breaks(values, params).numpy()[climb].any()  # these caps are the creep check's


def test_creep_check_fires_where_a_channel_far_from_zero_moves_as_one_near_it() -> None:
    """The range held lately is kept as its distance inside the range: a channel around 100,000, where
    float32 readings are 0.008 apart, creeps where the same channel around 0 does."""
    t = np.arange(3000.0)
    climb = 2.0 * np.sin(t / 25.0) + 0.0015 * np.clip(t - 1000.0, 0.0, None)
    moves = []
    for offset in (0.0, 1e5):
        params = ScoreParams(
            (offset,), (2.0,), (0.3,), adapt=0.02, peak_half_life=20.0, range_tolerance=0.05, range_creep=400
        )
        x = torch.from_numpy((climb + offset).astype(np.float32)[:, None])
        moves.append(np.flatnonzero(creeping_breaks(x, params).numpy()))
    assert len(moves[0]) == len(moves[1]) >= 4
    assert np.abs(moves[0] - moves[1]).max() <= 1  # a reading apart where rounding moves a crest


def test_creep_check_needs_the_range_check_and_a_lag_of_a_reading() -> None:
    common = {"mean": (0.0,), "std": (1.0,), "resid_std": (1.0,), "adapt": 0.01, "peak_half_life": 50.0}
    with pytest.raises(ScoreSettingError, match=r"creep check \(range_creep\) needs the range check"):
        ScoreParams(**common, range_creep=100)  # type: ignore[arg-type]
    with pytest.raises(ScoreSettingError, match=r"the creep check's lag must lie in \[1, 2\*\*24\] readings"):
        ScoreParams(**common, range_tolerance=0.05, range_creep=0)  # type: ignore[arg-type]


def test_range_check_refuses_a_bad_tolerance_and_needs_the_adaptive_score_and_the_gate() -> None:
    common = {"mean": (0.0,), "std": (1.0,), "resid_std": (1.0,)}
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="must be a finite share of the stream's range"):
            ScoreParams(**common, adapt=0.01, peak_half_life=50.0, range_tolerance=bad)  # type: ignore[arg-type]
    for knobs in ({"adapt": 0.01}, {"peak_half_life": 50.0}):
        with pytest.raises(ValueError, match=r"range check \(range_tolerance\) needs the adaptive score"):
            ScoreParams(**common, **knobs, range_tolerance=0.05)  # type: ignore[arg-type]


def test_peak_gate_half_life_below_one_reading_is_refused() -> None:
    with pytest.raises(ValueError, match="peak gate's half-life"):
        ScoreParams(mean=(0.0,), std=(1.0,), resid_std=(1.0,), peak_half_life=0.5)


def test_train_refuses_a_bad_peak_half_life_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "--csv",
        str(MACHINE_TEMPERATURE),
        "--peak-half-life",
        "0.5",
        "--out",
        str(tmp_path / "m"),
    ]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert "faultcast: error: train: --peak-half-life 0.5: the peak gate's half-life must be >= 1" in err


def test_train_refuses_a_bad_range_tolerance_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--csv", str(MACHINE_TEMPERATURE), "--out", str(tmp_path / "m")]
    assert cli_main([*argv, "--adapt", "0.01", "--range-tolerance", "0.05"]) == 2
    assert (
        "train: the range check (--range-tolerance) needs the adaptive score (--adapt) and the peak gate "
        "(--peak-half-life)" in capsys.readouterr().err
    )
    assert cli_main([*argv, "--adapt", "2", "--peak-half-life", "50"]) == 2
    assert "train: --adapt 2.0: the adaptive score's rate must lie in [1e-5, 1]" in capsys.readouterr().err
    assert cli_main([*argv, "--adapt", "0.01", "--range-tolerance", "wide"]) == 2
    assert "train: --range-tolerance 'wide': give a share" in capsys.readouterr().err


def test_score_options_default_the_range_and_season_checks_only_where_they_can_run() -> None:
    def options(
        adapt: float,
        half_life: float,
        tolerance: str | None,
        season: str | None = None,
        creep: str | None = None,
    ) -> ScoreOptions:
        args = argparse.Namespace(
            adapt=adapt, peak_half_life=half_life, range_tolerance=tolerance, season=season, range_creep=creep
        )
        return score_options(args, "evaluate nab", 0.05, "auto", 100)

    assert options(0.01, 50.0, None) == {
        "adapt": 0.01,
        "peak_half_life": 50.0,
        "range_tolerance": 0.05,
        "range_creep": 100,
        "season": "auto",
    }
    assert options(0.01, 50.0, "off")["range_creep"] is None  # the creep check needs the range check
    assert options(0.0, 50.0, None)["range_creep"] is None
    assert options(0.01, 50.0, "0.1", creep="off")["range_creep"] is None
    assert options(0.01, 50.0, None, creep="48")["range_creep"] == 48
    with pytest.raises(UsageError, match="--range-creep 'slow': give the lag in readings"):
        options(0.01, 50.0, None, creep="slow")
    with pytest.raises(UsageError, match=r"creep check \(--range-creep\) needs the range check \(--range"):
        options(0.01, 50.0, "off", creep="100")
    with pytest.raises(UsageError, match="--range-creep 0: the creep check's lag must lie in"):
        options(0.01, 50.0, None, creep="0")
    assert options(0.0, 50.0, None)["range_tolerance"] is None  # `--adapt 0` turns them off
    assert options(0.0, 50.0, None)["season"] is None
    assert options(0.01, 0.0, None)["range_tolerance"] is None
    assert options(0.01, 50.0, "off")["range_tolerance"] is None
    assert options(0.01, 50.0, "0")["range_tolerance"] == 0.0
    assert options(0.01, 50.0, None, "off")["season"] is None
    assert options(0.01, 50.0, None, "48")["season"] == 48
    with pytest.raises(UsageError, match="evaluate nab: the range check"):
        options(0.0, 50.0, "0.05")  # asked for explicitly, without what it needs
    with pytest.raises(UsageError, match=r"evaluate nab: the season check \(--season\) needs"):
        options(0.0, 50.0, None, "auto")
    with pytest.raises(UsageError, match="--season 'daily': give auto, off or the period"):
        options(0.01, 50.0, None, "daily")
    with pytest.raises(UsageError, match="--season 1: the season check needs a period of at least 2"):
        options(0.01, 50.0, None, "1")


def test_channel_shares_are_smoothed_as_the_score_is() -> None:
    """A channel's share is its part of the squared errors averaged like the score, not of one reading's:
    an alert names the channels that raised the score over the last readings."""
    torch.manual_seed(3)
    model = Forecaster(ModelShape(3, 8)).eval()
    x = torch.from_numpy(np.random.default_rng(3).normal(size=(200, 3)).astype(np.float32))
    x[120, 0] += 25.0  # one reading far off on the first channel
    params = ScoreParams((0.0,) * 3, (1.0,) * 3, (1.0,) * 3, smoothing=1.0)
    instant = stream_scores(model, x, params)
    # Without smoothing the score is the RMS of the errors, so each reading's squared errors are known.
    sq = instant.contrib.numpy() * 3 * instant.score.numpy()[:, None] ** 2
    smoothed = stream_scores(model, x, replace(params, smoothing=0.1))
    level, expected = np.zeros(3), np.zeros_like(sq)
    for t in range(1, len(sq)):
        level = 0.1 * sq[t] + 0.9 * level
        expected[t] = level / (level.sum() + 1e-12)
    np.testing.assert_allclose(smoothed.contrib.numpy(), expected, atol=1e-5)
    # In the readings after it the first channel still leads, though their own errors say otherwise.
    after = [t for t in range(121, 131) if instant.contrib[t].argmax() != 0]
    assert after and all(smoothed.contrib[t].argmax() == 0 for t in after)


@pytest.mark.parametrize("burst", [1e3, 1e4])
def test_scores_and_shares_keep_their_parity_when_small_errors_follow_a_burst(burst: float) -> None:
    """Unsmoothed, a reading's score and shares are of its own errors alone, however large the last were."""
    torch.manual_seed(5)
    model = Forecaster(ModelShape(2, 8)).eval()
    params = ScoreParams((0.0, 0.0), (1.0, 1.0), (1.0, 1.0), smoothing=1.0)
    x = np.zeros((80, 2), dtype=np.float32)
    x[20] = [burst, burst * 2 / 3]  # then readings the model forecasts well
    proto = build_step_model(model, params, {"name": "t", "version": "1", "features": ["a", "b"]})
    assert parity(model, params, proto, x) <= PARITY_TOLERANCE


def test_score_setting_errors_name_settings_the_callers_way() -> None:
    error = ScoreSettingError("{smoothing}{value}: out of range for {adapt}", 2.0)
    assert str(error) == "smoothing=2.0: out of range for adapt"
    assert error.naming({"adapt": "--adapt"}, " ") == "smoothing 2.0: out of range for --adapt"
    with pytest.raises(KeyError, match="adpt"):
        ScoreSettingError("{adpt}{value}: a field ScoreParams does not have", 1.0)
