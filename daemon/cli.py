"""The `faultcast` command: one name, a subcommand per job."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from daemon import __version__
from daemon.cli_args import bounded
from daemon.cli_train import add_train_commands
from daemon.errors import FaultcastError, FencedError, UsageError

log = logging.getLogger("faultcast")


def _cmd_run(args: argparse.Namespace) -> int:
    from daemon.app import build_service, load_engines
    from daemon.checkpoint import check_folder
    from daemon.config import load_config
    from daemon.logs import setup
    from daemon.runtime import ModelRuntime

    config = load_config(args.config)
    setup(config.logging.level, config.logging.format)
    if args.check:
        check_folder(config)
        engines = load_engines(config)
        for name, engine in engines.items():
            # What producers must send, and the thresholds in force: the config's where it sets them.
            kinds = ModelRuntime(name, engine, config).kinds
            thresholds = ", ".join(
                f"{kind} {k.policy.threshold:.4g}"
                + "".join(f"; {pattern} {policy.threshold:.4g}" for pattern, policy in k.overrides)
                for kind, k in kinds.items()
            )
            print(
                f"ok: model {name} v{engine.info.version}: channels {', '.join(engine.info.features)}; "
                f"thresholds {thresholds}"
            )
        print(f"ok: {args.config} is valid")
        return 0
    service = build_service(config)
    service.install_signal_handlers()
    service.run()
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from daemon.config import KafkaConfig
    from daemon.kafka_io import CLOSE_TIMEOUT_S, close_producer, ensure_topics, make_producer
    from daemon.replay import replay
    from train.dataset import load_matching
    from train.series import load_nab_csv

    try:
        kafka = KafkaConfig(bootstrap_servers=args.bootstrap, readings_topic=args.topic)
    except ValueError as exc:
        raise UsageError(f"replay: --topic {args.topic!r}: {exc}") from exc
    # Bad data is reported before the broker is waited on.
    if args.csv is not None:
        if not args.stream:
            raise UsageError("replay: --csv needs --stream, the id its readings are keyed by")
        streams = [(args.stream, load_nab_csv(args.csv, args.channel))]
    else:
        chosen, _ = load_matching(args.spec, args.root, args.streams, keep_gaps=True)
        streams = [(s.series.name, s.series) for s in chosen]
    ensure_topics(kafka)
    producer = make_producer(kafka)
    try:
        sent = replay(producer, args.topic, streams, speedup=args.speedup, limit=args.limit)
    finally:
        close_producer(producer, CLOSE_TIMEOUT_S)
    print(f"published {sent} readings of {len(streams)} stream{'s' * (len(streams) != 1)} to {args.topic}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from train.evaluate import main as evaluate_main

    return evaluate_main(list(args.rest))


def _cmd_train_compare(rest: list[str]) -> int:
    from train.compare import main as compare_main

    return compare_main(rest)


def _cmd_demo(args: argparse.Namespace) -> int:
    from daemon.demo import run_demo

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.ERROR)  # its event-loop timing warnings are noise here
    return run_demo(args.config, args.exit_when_done)


def _cmd_leave(args: argparse.Namespace) -> int:
    from daemon.config import load_config
    from daemon.kafka_io import leave_group

    print(leave_group(load_config(args.config).kafka))
    return 0


def _config_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config", type=Path, default=Path("config.yaml"), help="config file (default: config.yaml)"
    )


def parser() -> argparse.ArgumentParser:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    p = argparse.ArgumentParser(
        prog="faultcast", description="Streaming anomaly and fault prediction for sensor streams on Kafka."
    )
    p.add_argument("--version", action="version", version=f"faultcast {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon",
        description="Consume readings, score them, publish "
        "alerts, serve /metrics and /healthz. Stops cleanly on SIGTERM or SIGINT.",
    )
    _config_option(run)
    run.add_argument(
        "--check", action="store_true", help="validate the config and load the models, then exit"
    )
    run.set_defaults(func=_cmd_run)

    leave = sub.add_parser(
        "leave",
        help="take a stopped instance's static membership out of its group",
        description="For an instance with kafka.client.group_instance_id stopped for good: its partitions "
        "move to the other members now, not after kafka.client.session_timeout_ms.",
    )
    _config_option(leave)
    leave.set_defaults(func=_cmd_leave)

    add_train_commands(sub)

    rep = sub.add_parser(
        "replay",
        help="publish recorded series as readings",
        description="Publish each row of a timestamp,value CSV (or of every stream a dataset spec reads, "
        "with all its channels) as a reading (key = stream id) to the readings topic, in time order.",
    )
    replayed = rep.add_mutually_exclusive_group(required=True)
    replayed.add_argument("--csv", type=Path, help="series file (NAB layout: timestamp,value)")
    replayed.add_argument("--spec", help="dataset spec: a shipped name or a YAML path (docs/dataset-spec.md)")
    rep.add_argument("--stream", help="with --csv: stream id (record key)")
    rep.add_argument("--channel", default="value", help="with --csv: the channel name the readings carry")
    rep.add_argument("--root", type=Path, default=Path("."), help="with --spec: the data root it reads")
    rep.add_argument(
        "--streams", default="*", help="with --spec: which streams (shell pattern on names); ids = names"
    )
    rep.add_argument("--topic", default="faultcast.readings")
    rep.add_argument(
        "--bootstrap",
        default=bootstrap,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or 127.0.0.1:9092)",
    )
    rep.add_argument(
        "--speedup",
        type=bounded(float, 0),
        help="pace by the series' clock, this many times faster (default: as fast as possible)",
    )
    rep.add_argument("--limit", type=bounded(int, 0), help="publish only the first N rows")
    rep.set_defaults(func=_cmd_replay)

    evaluate = sub.add_parser(
        "evaluate",
        help="score models on labelled data through the daemon's own path (NAB, SKAB, congestion, spec)",
        description="Backtest on labelled data with the field's scoring rules: `faultcast evaluate nab "
        "--root data/nab --report DIR`, `faultcast evaluate skab --root ../shared/data --report DIR`, "
        "`faultcast evaluate congestion --root data/nab --report DIR`, or on one's own recordings `faultcast "
        "evaluate spec --spec SPEC --root DIR --model MODEL --from N`; `faultcast evaluate nab --help` "
        "lists the options.",
    )
    evaluate.add_argument(
        "rest", nargs=argparse.REMAINDER, help="nab|skab|congestion|spec and that benchmark's arguments"
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    demo = sub.add_parser(
        "demo",
        help="local broker + training + replay + daemon, alerts on screen",
        description="Start the local Kafka broker, train (or reuse) the demo models, replay the shipped "
        "machine-temperature series and a freeway lane's occupancy fast, run the daemon and print its "
        "fault and congestion alerts.",
    )
    _config_option(demo)
    demo.add_argument(
        "--exit-when-done", action="store_true", help="stop once every replayed reading is scored"
    )
    demo.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:2] == ["train", "compare"]:
            # `train compare` takes its own options (train.compare), not those of `train`
            return _cmd_train_compare(argv[2:])
        args = parser().parse_args(argv)
        return int(args.func(args))
    except FaultcastError as exc:
        print(f"faultcast: error: {exc}", file=sys.stderr)
        # systemd's unit does not restart on 3 (RestartPreventExitStatus): a restart would fence the other
        return 3 if isinstance(exc, FencedError) else 2


if __name__ == "__main__":
    sys.exit(main())
