"""``sla-monitor report``: the monthly compliance report (contract 002 3.3).

Wired into :mod:`monitor.cli` (``_add_report_command``). Reads the sources
(:mod:`monitor.accounting.source`), builds the model (:mod:`monitor.accounting.report`) and
writes one format: ``html`` (for people, self-contained), ``json`` (machine form,
``schemas/report.schema.json``), ``csv`` (the ledger and the tables for finance, one file)
or ``xlsx`` (one sheet per table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.accounting.report import Month, build_report
from monitor.accounting.source import read_sources

FORMATS = ("html", "json", "csv", "xlsx")


def add_report_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="JSONL of SLA facts (sla-monitor replay --escalations output; may "
        "also hold agent.status and input events, which the service-quality KPIs are "
        "measured from), or kafka: (the configured broker's sla.outcomes, sla.breaches, "
        "sla.escalations, agents, chat.sessions and tickets)",
    )
    parser.add_argument("--month", required=True, help="the month to report, YYYY-MM")
    parser.add_argument("--tenant", help="only this tenant (default: every tenant in the sources)")
    parser.add_argument("--lang", choices=("en", "zh"), default="en", help="labels' language")
    parser.add_argument("--format", choices=FORMATS, default="html", help="output format")
    parser.add_argument(
        "--out", metavar="PATH", help="output file (default: stdout; xlsx needs it)"
    )
    parser.add_argument("--config", help="with kafka:: a settings file (as sla-monitor worker)")
    parser.add_argument("--broker", help="with kafka:: bootstrap servers")


def cmd_report(args: argparse.Namespace) -> int:
    from monitor.accounting.report import ReportError  # noqa: PLC0415
    from monitor.policy import load_policy_set  # noqa: PLC0415

    month = Month.parse(args.month)
    policies = load_policy_set(args.policies)
    settings = None
    if any(s.startswith("kafka:") for s in args.sources):
        from monitor.live.config import load_settings  # noqa: PLC0415

        settings = load_settings(args.config, overrides={"broker": args.broker})
    inputs = read_sources(args.sources, settings)
    report = build_report(inputs, policies, month, args.tenant)
    if args.format == "xlsx" and not args.out:
        raise ReportError("--format xlsx writes a binary workbook: give --out FILE.xlsx")
    data = render(report, args.format, args.lang)
    if args.out:
        Path(args.out).write_bytes(data)
        print(
            f"report: {args.out} ({args.format}, {len(report.tenants)} tenant(s))", file=sys.stderr
        )
    else:
        sys.stdout.buffer.write(data)
    for tenant in report.tenants:
        for note in tenant.notes:
            print(f"report: {tenant.tenant}: {note}", file=sys.stderr)
    return 0


def render(report: object, fmt: str, lang: str) -> bytes:
    """The report in ``fmt`` (one renderer module per format, imported on use)."""
    from monitor.accounting.report import Report  # noqa: PLC0415

    assert isinstance(report, Report)
    if fmt == "json":
        from monitor.accounting.render_json import render_json  # noqa: PLC0415

        return render_json(report)
    if fmt == "csv":
        from monitor.accounting.render_csv import render_csv  # noqa: PLC0415

        return render_csv(report, lang)
    if fmt == "xlsx":
        from monitor.accounting.render_xlsx import render_xlsx  # noqa: PLC0415

        return render_xlsx(report, lang)
    from monitor.accounting.render_html import render_html  # noqa: PLC0415

    return render_html(report, lang)
