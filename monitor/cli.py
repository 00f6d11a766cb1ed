"""The ``sla-monitor`` command line: one subcommand per job.

* ``replay``  — the engine over a JSONL file (the oracle; also a batch checker);
* ``check``   — validates policy files and exits (CI for policy changes);
* ``worker``, ``topics``, ``demo``, ``broker`` — the live Faust worker and its tooling
  (monitor.live);
* ``bench``   — throughput and memory figures (BENCHMARKS.md).

argparse (standard library) parses the options: the CLI is small and this keeps start-up fast.
Every error sla-monitor raises on purpose is a :class:`monitor.errors.SlaMonitorError`, printed
as one line with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

import orjson

from monitor import __version__
from monitor.errors import InvalidEvent, SlaMonitorError
from monitor.events import Event
from monitor.live import cli as live  # options and entry points only: Faust loads in cmd_<name>
from monitor.replay import ReplayStats
from monitor.timeutil import MICROS_PER_SECOND, parse_rfc3339

if TYPE_CHECKING:
    from monitor.policy.model import Policy

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args.command
    try:
        return command(args)
    except SlaMonitorError as exc:
        print(f"sla-monitor: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sla-monitor", description="Event-streaming SLA monitor for customer service."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    replay = sub.add_parser("replay", help="replay a JSONL file of events; print SLA events")
    replay.add_argument("file", help="JSONL file of input events, or - for stdin")
    _policies_arg(replay)
    replay.add_argument(
        "--until", type=_instant, help="advance the clock to this RFC 3339 instant at the end"
    )
    replay.add_argument(
        "--progress", action="store_true", help="show a progress bar on stderr (large files)"
    )
    replay.add_argument(
        "--escalations",
        action="store_true",
        help="also emit contract 002 6.2 escalation facts (kind escalation), as the live "
        "worker does on sla.escalations",
    )
    replay.add_argument(
        "--kpis",
        metavar="FILE",
        help="also write the KPIs (availability, FCR, CSAT per tenant, channel and month; "
        "contracts 004 3.3-3.5, 001 3.2-3.3) to FILE as JSONL",
    )
    replay.set_defaults(command=cmd_replay)

    check = sub.add_parser("check", help="validate policy files and exit")
    _policies_arg(check)
    check.set_defaults(command=cmd_check)

    bench = sub.add_parser(
        "bench", help="measure replay throughput and state size (--live: the worker on a broker)"
    )
    bench.add_argument("--hours", type=float, default=24.0, help="hours of generated traffic")
    bench.add_argument("--scale", type=float, default=20.0, help="traffic multiplier")
    bench.add_argument(
        "--live",
        action="store_true",
        help="measure the live worker instead: backlog throughput against a bare aiokafka "
        "consumer, and breach detection delay (embedded broker unless --broker)",
    )
    bench.add_argument("--broker", help="with --live: a Kafka bootstrap address to use instead")
    bench.add_argument(
        "--kafka",
        action="store_true",
        help="with --live: start real Apache Kafka (needs Java) instead of the embedded broker",
    )
    bench.add_argument(
        "--events", type=int, help="with --live: backlog size in events (e.g. 1000000)"
    )
    bench.add_argument(
        "--recovery",
        type=int,
        metavar="N",
        help="with --live: instead, N open sessions: memory per session, and the time from a "
        "SIGKILLed worker's restart to its first breach",
    )
    bench.add_argument(
        "--scale-out",
        action="store_true",
        help="with --live: also two worker processes on the same backlog, against one",
    )
    bench.add_argument("--partitions", type=int, default=4, help="with --live: partitions")
    bench.add_argument(
        "--store", default="rocksdb://", help="with --live: the worker's table store"
    )
    bench.set_defaults(command=cmd_bench)

    _add_live_commands(sub)
    _add_report_command(sub)  # issue 8: contract accounting
    return parser


def _add_report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from monitor.accounting import cli as accounting  # noqa: PLC0415

    report = sub.add_parser(
        "report", help="the monthly compliance report (002 3.3): HTML, JSON, CSV or XLSX"
    )
    accounting.add_report_args(report)
    _policies_arg(report)
    report.set_defaults(command=accounting.cmd_report)


def _policies_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policies",
        metavar="PATH",
        help="policy file or directory (default: the bundled deploy/policies)",
    )


def _instant(text: str) -> int:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_live_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The live commands: their options and entry points are in :mod:`monitor.live.cli`."""
    for name, help_text in (
        ("worker", "run the Faust worker (Kafka in, SLA events out)"),
        ("topics", "create the Kafka topics, or check existing ones match"),
        ("demo", "embedded broker + worker + realistic traffic, until Ctrl-C"),
        ("broker", "a development broker in the foreground: Tansu, or Apache Kafka (--kafka)"),
    ):
        parser = sub.add_parser(name, help=help_text)
        getattr(live, f"add_{name}_args")(parser)
        parser.set_defaults(command=getattr(live, f"cmd_{name}"))


def cmd_replay(args: argparse.Namespace) -> int:
    from monitor.engine import SlaEngine  # noqa: PLC0415
    from monitor.policy import load_policy_set  # noqa: PLC0415
    from monitor.replay import Replay, iter_replay  # noqa: PLC0415

    engine = SlaEngine(load_policy_set(args.policies))
    kpis = None
    if args.kpis:
        from monitor.kpi import KpiTracker  # noqa: PLC0415

        kpis = KpiTracker(engine.policies)
    replay = Replay(engine, kpis)
    out = sys.stdout.buffer
    stream = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    with stream:
        events = _read_events(stream, replay.stats, show_progress=args.progress, agents=out)
        facts: Iterator[Any] = iter_replay(replay, events, args.until)
        if args.escalations:
            from monitor.accounting.escalation import Escalator  # noqa: PLC0415
            from monitor.replay import iter_with_escalations  # noqa: PLC0415

            facts = iter_with_escalations(facts, Escalator(engine.policies))
        for fact in facts:
            tz = engine.timezone_of(fact.policy)
            out.write(orjson.dumps(fact.to_dict(tz), option=orjson.OPT_APPEND_NEWLINE))
    out.flush()
    if kpis is not None:
        if replay.clock is not None:
            kpis.advance(replay.clock)
        with open(args.kpis, "wb") as file:
            for row in kpis.rows():
                file.write(orjson.dumps(row.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
    for event, reason in replay.rejections:
        print(f"rejected {event.event_id}: {reason}", file=sys.stderr)
    print(f"replay: {replay.stats.summary()}", file=sys.stderr)
    return 0


def _read_events(
    stream: IO[bytes], stats: ReplayStats, *, show_progress: bool, agents: IO[bytes] | None = None
) -> Iterator[Event]:
    """The valid events of ``stream``; ``agent.status`` lines (issue 8) are validated and
    copied to ``agents`` (replay's output) for the monthly report, not given to the engine."""
    from monitor.validation import parse_agent_status, parse_event  # noqa: PLC0415

    lines: Iterator[bytes] = iter(stream)
    if show_progress:
        from tqdm import tqdm  # noqa: PLC0415

        lines = iter(tqdm(stream, unit=" events", file=sys.stderr))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            # The substring test keeps the hot path as it was for every other line.
            if agents is not None and b'"agent.status"' in line and _is_agent_status(line):
                status = parse_agent_status(line)
                agents.write(orjson.dumps(status.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
                continue
            yield parse_event(line)
        except InvalidEvent as exc:
            stats.invalid += 1
            print(f"invalid event on line {number}: {exc}", file=sys.stderr)


def _is_agent_status(line: bytes) -> bool:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(obj, dict) and obj.get("type") == "agent.status"


def cmd_check(args: argparse.Namespace) -> int:
    from monitor.policy import load_policy_set  # noqa: PLC0415

    policies = load_policy_set(args.policies)
    for policy in policies.policies.values():
        metrics = ", ".join(policy.metrics)
        tenants = ", ".join(sorted(policy.tenants))
        extras = _contract_settings(policy)
        print(
            f"{policy.source}: {policy.name} ({policy.applies_to}; tenants {tenants}): {metrics}"
            + (f"; {extras}" if extras else "")
        )
    return 0


def _contract_settings(policy: Policy) -> str:
    """What `check` adds for the settings of contracts 001, 003 and 004 (only when set)."""
    out = []
    if "/" in policy.working_time.days.name:  # the weekdays reading of 002 1.4
        out.append(f"calendar {policy.working_time.days.name}")
    if policy.escalation is not None:
        day = policy.working_time.working_seconds_per_day * MICROS_PER_SECOND
        unit, size = ("wd", day) if policy.escalation.clock == "working" else ("h", 3600e6)
        tiers = ", ".join(
            f"{t.tier} after {t.after / size:g} {unit}" for t in policy.escalation.tiers
        )
        out.append(f"escalation ({policy.escalation.clause}): {tiers}")
    if policy.appeal is not None:
        days = policy.appeal.within / MICROS_PER_SECOND / 86400
        out.append(f"appeal within {days:g} d {policy.appeal.clock} ({policy.appeal.clause})")
    k = policy.kpis
    for name, value in (
        ("availability", k.availability),
        ("FCR", k.first_contact_resolution),
        ("CSAT mean", k.csat_mean),
        ("CSAT good share", k.csat_good_share),
    ):
        if value is not None:
            out.append(f"{name} >= {value:g}")
    return "; ".join(out)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.live and args.recovery:
        from monitor.live.bench_recovery import run_recovery_bench  # noqa: PLC0415

        return run_recovery_bench(sessions=args.recovery, store=args.store, kafka=args.kafka)
    if args.live:
        from monitor.live.bench import run_live_bench  # noqa: PLC0415 - Faust-side imports

        return run_live_bench(
            hours=args.hours,
            scale=args.scale,
            partitions=args.partitions,
            store=args.store,
            broker=args.broker,
            kafka=args.kafka,
            events=args.events,
            scale_out=args.scale_out,
        )
    from monitor.bench import run_bench  # noqa: PLC0415

    return run_bench(hours=args.hours, scale=args.scale)


if __name__ == "__main__":
    sys.exit(main())
