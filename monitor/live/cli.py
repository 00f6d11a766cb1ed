"""Entry points of ``sla-monitor worker``, ``topics``, ``demo`` and ``broker``.

Who calls what: :mod:`monitor.cli` adds one subparser per command, calls
``add_<name>_args(parser)`` to declare its options and dispatches to ``cmd_<name>(args)``,
which returns the exit code. Errors sla-monitor raises on purpose (ConfigError, PolicyError)
propagate to :func:`monitor.cli.main`, which prints them as one line with exit code 2.

Every option has an environment variable (``SLA_`` + the setting name, see
:mod:`monitor.live.config`); the command line wins over the environment, which wins over the
config file.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from typing import Any

from monitor.errors import ConfigError
from monitor.live.config import Settings, load_settings


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (also $SLA_CONFIG)")
    parser.add_argument(
        "--broker", metavar="HOST:PORT[,...]", help="Kafka bootstrap servers ($SLA_BROKER)"
    )
    parser.add_argument(
        "--partitions", type=int, help="partitions of every co-partitioned topic ($SLA_PARTITIONS)"
    )


def add_worker_args(parser: argparse.ArgumentParser) -> None:
    _common_args(parser)
    parser.add_argument(
        "--policies", metavar="PATH", help="policy file or directory ($SLA_POLICIES)"
    )
    parser.add_argument("--store", help="rocksdb:// (default) or memory:// ($SLA_STORE)")
    parser.add_argument("--data-dir", metavar="DIR", help="local table state ($SLA_DATA_DIR)")
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus port, 0 = off ($SLA_METRICS_PORT)"
    )
    parser.add_argument("--log-level", help="debug, info, warning... ($SLA_LOG_LEVEL)")


def add_topics_args(parser: argparse.ArgumentParser) -> None:
    _common_args(parser)
    parser.add_argument(
        "--check", action="store_true", help="only check; create nothing (exit 2 on mismatch)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for the broker (60)"
    )


def add_demo_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second (60: a 3-minute chat target takes 3 s)",
    )
    parser.add_argument("--seed", type=int, default=7, help="traffic generator seed (7)")
    parser.add_argument(
        "--rate",
        type=float,
        default=1.0,
        help="traffic multiplier over a normal day's peak load (1.0)",
    )
    parser.add_argument("--partitions", type=int, default=4, help="topic partitions (4)")
    parser.add_argument(
        "--metrics-port", type=int, default=9108, help="Prometheus port, 0 = off (9108)"
    )
    parser.add_argument(
        "--policies", metavar="PATH", help="policy file or directory (default: bundled)"
    )
    parser.add_argument("--port", type=int, default=0, help="embedded broker port (0: a free one)")
    parser.add_argument(
        "--start",
        metavar="RFC3339",
        help="simulated start instant, e.g. 2026-10-09T09:00:00+08:00 (default: now)",
    )
    parser.add_argument(
        "--warnings", action=argparse.BooleanOptionalAction, default=True,
        help="print near-breach warnings too (default: yes)",
    )  # fmt: skip


def add_broker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka",
        action="store_true",
        help="real Apache Kafka (needs Java 17+; Maven fetches the jars the first time) "
        "instead of the embedded Tansu broker",
    )
    parser.add_argument("--port", type=int, default=9092, help="listener port (9092)")
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="with --kafka: keep the broker's data here, across restarts (default: a temporary "
        "folder, removed on exit)",
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The settings for a command: config file < environment < command-line options."""
    overrides: dict[str, Any] = {}
    for name in ("broker", "partitions", "policies", "store", "data_dir", "metrics_port",
                 "log_level"):  # fmt: skip
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return load_settings(getattr(args, "config", None), overrides=overrides)


def cmd_worker(args: argparse.Namespace) -> int:
    """Runs the Faust worker until SIGTERM/SIGINT."""
    from monitor.live.worker import run_worker  # noqa: PLC0415 - Faust is heavy to import

    run_worker(settings_from_args(args))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Creates missing topics and checks existing ones; prints one line per topic."""
    from monitor.live.topics import ensure_topics  # noqa: PLC0415

    settings = settings_from_args(args)
    report = asyncio.run(ensure_topics(settings, create=not args.check, timeout=args.timeout))
    for line in report.lines():
        print(line)
    sys.stdout.flush()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Embedded broker, topics, worker and live traffic, until Ctrl-C."""
    from monitor.live.demo import run_demo  # noqa: PLC0415

    return run_demo(
        speed=args.speed,
        seed=args.seed,
        rate=args.rate,
        partitions=args.partitions,
        metrics_port=args.metrics_port,
        policies=args.policies,
        port=args.port or None,
        show_warnings=args.warnings,
        start=args.start,
    )


def cmd_broker(args: argparse.Namespace) -> int:
    """A development broker in the foreground until Ctrl-C or SIGTERM.

    Prints ``bootstrap: HOST:PORT`` on stdout once clients can connect (scripts wait for that
    line), everything else on stderr.
    """
    from monitor.live.broker import EmbeddedBroker  # noqa: PLC0415
    from monitor.live.kafka import KafkaBroker  # noqa: PLC0415

    server: EmbeddedBroker | KafkaBroker
    if args.kafka:
        server = KafkaBroker(args.port, data_dir=args.data_dir)
    elif args.data_dir:
        raise ConfigError(
            "--data-dir needs --kafka: the embedded Tansu broker keeps its data in memory only"
        )
    else:
        server = EmbeddedBroker(args.port)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    print(f"starting {server.name} on 127.0.0.1:{args.port} ...", file=sys.stderr)
    server.start()
    try:
        print(f"bootstrap: {server.bootstrap}", flush=True)
        if isinstance(server, KafkaBroker):
            print(f"data: {server.data_dir}  log: {server.log_path}", file=sys.stderr)
        while not stopping.wait(0.5):
            if not server.running:
                raise ConfigError(f"the {server.name} broker exited on its own")
    finally:
        print(f"stopping {server.name} ...", file=sys.stderr)
        if isinstance(server, KafkaBroker):
            server.remove()  # stops it; deletes the data only when it was a temporary folder
        else:
            server.stop()
    return 0
