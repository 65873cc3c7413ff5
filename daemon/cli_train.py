"""`faultcast train` and `faultcast export`: their options, and the checks made before any fitting."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.cli_args import writable
from daemon.errors import UsageError


def _cmd_train(args: argparse.Namespace) -> int:
    from train.congestion import CongestionSpec
    from train.fault import FaultSpec
    from train.fit import FitConfig
    from train.pipeline import train_series
    from train.run_folder import write_run
    from train.series import load_nab_csv
    from train.train_dataset import HeadSplit, train_dataset
    from train.train_spec import TrainSpec, score_options

    score = score_options(args, "train")
    writable(args.out, "train: --out")
    if args.run_dir:
        writable(args.run_dir, "train: --run-dir", folder=True)
    try:  # every option checked before any data is read
        config = FitConfig(
            hidden=args.hidden,
            layers=args.layers,
            cell=args.cell,
            dropout=args.dropout,
            window=args.window,
            epochs=args.epochs,
            lr=args.lr,
            seed=args.seed,
        )
        # Named once the data says what it is; --fit-fraction is used only with --csv.
        ahead = {"horizon": args.congestion_horizon, "step_s": args.congestion_step_s}
        given = {k: v for k, v in ahead.items() if v is not None}
        congestion = CongestionSpec(args.congestion, **given) if args.congestion else None
        unnamed = TrainSpec(
            "",
            version=args.version,
            fit_fraction=args.fit_fraction,
            baseline=args.baseline,
            scale_floor=args.scale_floor,
            clock=args.clock,
            congestion=congestion,
            fault=None if args.fault_horizon is None else FaultSpec(args.fault_horizon),
            **score,
        )
    except ValueError as exc:
        raise UsageError(f"train: {exc}") from exc
    if congestion is None and given:
        raise UsageError("train: --congestion-horizon and --congestion-step-s need --congestion CHANNEL")
    if unnamed.fault is not None and args.spec is None:
        raise UsageError("train: --fault-horizon needs labelled data: --spec with label_columns")
    if args.spec is not None:
        spec = replace(unnamed, name=args.name or Path(args.spec).stem)
        split = HeadSplit(args.fit_rows, args.val_rows)
        report = train_dataset(args.spec, args.root, args.streams, split, spec, config, args.out)
    else:
        series = load_nab_csv(args.csv, args.channel)
        spec = replace(unnamed, name=args.name or series.name)
        report = train_series(series, spec, config, args.out)
    if args.run_dir:
        write_run(report, args.run_dir)
    # The thresholds alerts follow, by kind (the anomaly score's is on record only, with a fault head).
    kinds = report.metadata["thresholds"].items()
    thresholds = {kind: t["threshold"] for kind, t in kinds if kind != "anomaly"}
    summary: dict[str, object] = {"model": str(report.model_path), "thresholds": thresholds}
    if spec.season is not None:  # what --season auto found (null: none) is not on the command line
        summary["season"] = report.metadata["score"]["season"]
    print(json.dumps(summary | {"parity_max_abs": report.parity_max_abs, "best_epoch": report.best_epoch}))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from train.run_folder import export_run

    writable(args.out, "export: --out")
    gap = export_run(args.run_dir, args.out)
    print(json.dumps({"model": str(args.out), "parity_max_abs": gap}))
    return 0


def add_train_commands(sub: Any) -> None:
    """Adds ``train`` and ``export`` to the ``faultcast`` subcommands (argparse's subparsers action)."""
    train = sub.add_parser(
        "train",
        help="train a model on a CSV series and export its ONNX step model; `train compare`: LSTM/GRU/RNN",
        description="Fit a recurrent forecaster on the first --fit-fraction of a "
        "timestamp,value CSV (or, with --spec, on the first --fit-rows of every stream a dataset spec "
        "reads), calibrate its alert threshold, export the ONNX step model.",
    )
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, help="series file (NAB layout: timestamp,value)")
    source.add_argument(
        "--spec",
        help="dataset spec: a shipped name (skab, nab_realKnownCause, ...) or a YAML path "
        "(docs/dataset-spec.md)",
    )
    train.add_argument("--root", type=Path, default=Path("."), help="with --spec: the data root it reads")
    train.add_argument("--streams", default="*", help="with --spec: which streams (shell pattern on names)")
    train.add_argument(
        "--fit-rows", type=int, default=400, help="with --spec: each stream's rows to fit (default 400)"
    )
    train.add_argument(
        "--val-rows", type=int, default=120, help="with --spec: of those, the last to validate (default 120)"
    )
    train.add_argument("--baseline", type=int, default=0, help="readings that set each stream's own offsets")
    train.add_argument(
        "--scale-floor",
        type=float,
        help="with --baseline: the baseline's second half also sets the stream's own score scale, never "
        "below this (e.g. 1.0)",
    )
    train.add_argument(
        "--adapt",
        type=float,
        help="score each stream against its own recent scores at this rate (e.g. 0.01; 0: off)",
    )
    train.add_argument(
        "--peak-half-life",
        type=float,
        help="score only readings that beat the stream's recent peak, which halves every N readings; 0: off",
    )
    train.add_argument(
        "--range-tolerance",
        help="with --adapt and --peak-half-life: a reading outside the stream's range so far, widened by "
        "this share of it on each side, scores the cap (e.g. 0.05; default: off)",
    )
    train.add_argument(
        "--range-creep",
        help="with --range-tolerance: a new low or high beyond the range the stream held lately (followed "
        "with a lag of N readings) by that tolerance scores the cap, at most once every N readings "
        "(e.g. 100; default: off)",
    )
    train.add_argument(
        "--season",
        help="with --adapt and --peak-half-life: compare the last period of readings (auto: the daily or "
        "weekly rhythm the training data shows, or N readings) with every one of the stream's recent past; "
        "default: off",
    )
    train.add_argument("--clock", action="store_true", help="time of day as an input (daily rhythms)")
    train.add_argument(
        "--congestion",
        metavar="CHANNEL",
        help="add a congestion head: quantile forecasts of this load channel --congestion-horizon "
        "readings ahead, with a limit from the training data (the daemon's congestion alerts)",
    )
    train.add_argument(
        "--congestion-horizon", type=int, help="readings ahead the load is forecast (default 6)"
    )
    train.add_argument(
        "--congestion-step-s",
        type=float,
        help="the readings' interval in seconds, which the horizon counts in (default 300)",
    )
    train.add_argument(
        "--fault-horizon",
        type=int,
        metavar="N",
        help="with --spec and its anomaly labels: add a fault head, the probability that a labelled "
        "fault starts within the next N readings (fault alerts then follow it)",
    )
    train.add_argument("--out", type=Path, required=True, help="where to write the .onnx model")
    train.add_argument("--name", help="model name (default: the file's name)")
    train.add_argument("--version", default="1", help="model version (default: 1)")
    train.add_argument("--channel", default="value", help="channel name the readings will carry")
    train.add_argument(
        "--fit-fraction",
        type=float,
        default=0.15,
        help="leading share of the series to learn from (default 0.15, NAB's probation period)",
    )
    train.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    train.add_argument("--hidden", type=int, default=32)
    train.add_argument("--layers", type=int, default=1, help="recurrent layers, 1-3 (default 1)")
    train.add_argument(
        "--dropout", type=float, default=0.1, help="between layers and on the last one's output (default 0.1)"
    )
    train.add_argument("--lr", type=float, default=3e-3, help="AdamW's learning rate (default 0.003)")
    train.add_argument(
        "--window", type=int, default=48, help="readings back-propagation runs through (default 48)"
    )
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--seed", type=int, default=7)
    train.add_argument("--run-dir", type=Path, help="folder for the run's metadata and per-epoch metrics")
    train.set_defaults(func=_cmd_train)

    export = sub.add_parser(
        "export",
        help="rebuild the ONNX step model from a training run folder (e.g. after upgrading faultcast)",
        description="Rebuild the single-step ONNX model from the weights a `faultcast train --run-dir` "
        "folder holds, check it (ONNX checker, parity with PyTorch on the run's held-out readings) and "
        "write it.",
    )
    export.add_argument("--run-dir", type=Path, required=True, help="the folder `train --run-dir` wrote")
    export.add_argument("--out", type=Path, required=True, help="where to write the .onnx model")
    export.set_defaults(func=_cmd_export)
