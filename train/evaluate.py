"""`faultcast evaluate`: NAB, SKAB, congestion and own-data backtests on the daemon's code path."""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from daemon.cli_args import bounded, writable
from train import evaluate_report as rep
from train.evaluate_congestion import (
    CongestionOptions,
    congestion_plots,
    congestion_summary,
    evaluate_congestion,
)
from train.evaluate_nab import (
    MAPPINGS,
    NAB_HIDDEN,
    NabOptions,
    nab_files,
    nab_plots,
    nab_summary,
    score_nab,
    write_nab_csvs,
)
from train.evaluate_skab import (
    SkabOptions,
    evaluate_skab,
    labelled_plots,
    score_skab,
    skab_plots,
    skab_summary,
)
from train.evaluate_spec import evaluate_spec, spec_summary
from train.fit import FitConfig
from train.nab_published import published_for
from train.train_spec import score_options


def run_nab(args: argparse.Namespace, command: str, folder: Path) -> str:
    fit = FitConfig(epochs=args.epochs or 60, hidden=args.hidden or NAB_HIDDEN, seed=args.seed)
    score = score_options(
        args, "evaluate nab", NabOptions.range_tolerance, NabOptions.season, NabOptions.range_creep
    )
    o = NabOptions(
        fit=fit,
        smoothing=args.smoothing or NabOptions.smoothing,
        mapping=args.mapping,
        fit_on=args.fit_on,
        clock=args.clock,
        **score,
    )
    started = time.perf_counter()
    files = nab_files(Path(args.root), args.spec, o, folder / "models")
    results = {m: score_nab(files, m) for m in MAPPINGS}
    seconds = time.perf_counter() - started
    write_nab_csvs(files, results[o.mapping], o.mapping, folder / "results", o.detector)
    nab_plots(files, folder)
    published = published_for(Path(args.root), {f.key: f.windows for f in files})
    return nab_summary(files, results, o, command, seconds, published)


def run_skab(args: argparse.Namespace, command: str, folder: Path) -> str:
    o = SkabOptions(fit=FitConfig(epochs=args.epochs or 30, hidden=args.hidden or 32, seed=args.seed))
    if args.setup == "brief":  # the anomaly-free run in fitting and validation, as first specified
        o = replace(o, fit_normal=True, val_normal=True, head_val=0, baseline=400)
    alerting = {**o.alerting, "fire_after": args.fire_after, "resolve_after": args.resolve_after}
    o = replace(o, threshold_scale=args.threshold_scale, alerting=alerting, smoothing=args.smoothing or 0.1)
    o = replace(
        o, baseline=o.baseline if args.baseline is None else args.baseline, scale_floor=args.scale_floor
    )
    result = evaluate_skab(Path(args.root), o, folder / "models", args.model)
    tests = [s.labelled for s in result.streams]
    calibrated = score_skab(tests, result.train, replace(o, threshold_scale=1.0, alerting={})).pooled
    skab_plots(result, folder)
    row = [
        "calibrated threshold, the daemon's default alerting",
        calibrated.f1,
        calibrated.far,
        calibrated.mar,
    ]
    return skab_summary(result, command) + "\n\n" + rep.table(["same model", "F1", "FAR %", "MAR %"], [row])


def run_congestion(args: argparse.Namespace, command: str, folder: Path) -> str:
    o = CongestionOptions()
    fit = replace(
        o.fit, epochs=args.epochs or o.fit.epochs, hidden=args.hidden or o.fit.hidden, seed=args.seed
    )
    o = replace(o, fit=fit)
    streams = evaluate_congestion(Path(args.root), o, folder / "models")
    congestion_plots(streams, folder)
    return congestion_summary(streams, o, command)


def run_spec(args: argparse.Namespace, command: str, folder: Path) -> str:
    given = {
        "cooldown_s": args.cooldown_s,
        "fire_after": args.fire_after,
        "resolve_after": args.resolve_after,
    }
    alerting = {k: v for k, v in given.items() if v is not None}
    result = evaluate_spec(args.spec, Path(args.root), args.streams, args.model, args.first, alerting)
    labelled_plots(result.streams, result.policy.threshold, args.first, folder, "spec")
    return spec_summary(result, args.model, args.first, command)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="faultcast evaluate", description=__doc__)
    sub = p.add_subparsers(dest="benchmark", required=True)
    nab = sub.add_parser("nab", help="NAB by NAB's rules: per-file models, one threshold per profile swept")
    nab.add_argument("--root", default="data/nab", help="the NAB folder (data/, labels/)")
    nab.add_argument("--spec", default="nab_realKnownCause", help="dataset spec name or YAML path")
    nab.add_argument("--mapping", choices=MAPPINGS, default="score", help="headline anomaly_score mapping")
    nab.add_argument("--fit-on", choices=("probation", "15%"), default="probation")
    nab.add_argument("--clock", action="store_true", help="time of day as a model input (daily rhythms)")
    nab.add_argument(
        "--adapt",
        type=float,
        default=NabOptions.adapt,
        help="adaptive score's rate (ScoreParams.adapt); 0: off",
    )
    nab.add_argument(
        "--peak-half-life",
        type=float,
        default=NabOptions.peak_half_life,
        help="peak gate: score only new highs over a peak halving every this many readings; 0: off",
    )
    nab.add_argument(
        "--range-tolerance",
        help="range check: a reading beyond the range so far by this share of it scores the cap (default "
        f"{NabOptions.range_tolerance} with --adapt and --peak-half-life on, else off); off: off",
    )
    nab.add_argument(
        "--range-creep",
        help="creep check: a new low or high beyond the range held lately (followed with a lag of this "
        f"many readings) by the range check's tolerance scores the cap, once a lag (default "
        f"{NabOptions.range_creep} with the range check on); off: off",
    )
    nab.add_argument(
        "--season",
        help="season check: each period of readings against the stream's recent ones; auto (the default "
        "with --adapt and --peak-half-life on): the daily or weekly rhythm the file's fitted rows show, "
        "off where none; "
        "off; or the period in readings",
    )
    skab = sub.add_parser("skab", help="SKAB valve1: one model, the daemon's alert state as the prediction")
    skab.add_argument("--root", default="../shared/data", help="the folder holding SKAB/ (GPL: not vendored)")
    skab.add_argument("--setup", choices=("heads", "brief"), default="heads")
    skab.add_argument("--baseline", type=int, help="readings that set a stream's offsets (heads: 200)")
    skab.add_argument("--threshold-scale", type=float, default=0.8, help="x the calibrated threshold")
    skab.add_argument("--model", type=Path, help="score this model (from `faultcast train --spec skab`)")
    skab.add_argument("--scale-floor", type=float, help="per-stream score scale from the baseline (floor)")
    skab.add_argument("--fire-after", type=int, default=3)
    skab.add_argument("--resolve-after", type=int, default=6)
    congestion = sub.add_parser(
        "congestion", help="NAB realTraffic occupancy: congestion warnings against two baselines"
    )
    congestion.add_argument("--root", default="data/nab", help="the NAB folder (data/realTraffic/)")
    own = sub.add_parser(
        "spec", help="a trained model on your own labelled recordings (a dataset spec with anomaly labels)"
    )
    own.add_argument("--spec", required=True, help="dataset spec: a shipped name or a YAML path")
    own.add_argument("--root", default=".", help="the data root the spec reads")
    own.add_argument("--streams", default="*", help="which streams (shell pattern on names)")
    own.add_argument("--model", type=Path, required=True, help="the model to score (`faultcast train`)")
    own.add_argument(
        "--from", dest="first", type=int, default=0, help="count rows from this one on in each stream"
    )
    own.add_argument(
        "--cooldown-s",
        type=bounded(float, 0, inclusive=True),
        help="alert cool-down in seconds (default: the daemon's, 3600)",
    )
    own.add_argument(
        "--fire-after", type=bounded(int, 0), help="readings over the threshold to fire (default: model's)"
    )
    own.add_argument(
        "--resolve-after", type=bounded(int, 0), help="readings under it to resolve (default: model's)"
    )
    own.add_argument("--report", type=Path, help="write summary.md and one PNG per stream here")
    for q in (nab, skab, congestion):
        q.add_argument("--report", type=Path, help="write summary.md, PNGs, models and CSVs here")
        q.add_argument("--epochs", type=int)
        q.add_argument("--hidden", type=int)
        q.add_argument("--seed", type=int, default=FitConfig.seed, help="training seed (default %(default)s)")
    for q in (nab, skab):
        q.add_argument("--smoothing", type=float)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = "faultcast evaluate " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.report:  # checked before any work, and created only once there is something to write
        writable(args.report, "evaluate: --report", folder=True)
    with tempfile.TemporaryDirectory(prefix="faultcast-evaluate-") as tmp:
        folder = args.report or Path(tmp)
        commands = {"nab": run_nab, "skab": run_skab, "congestion": run_congestion, "spec": run_spec}
        run = commands[args.benchmark]
        text = f"# faultcast evaluation\n\n{run(args, command, folder)}\n"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.md").write_text(text, encoding="utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
