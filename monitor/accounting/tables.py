"""The report's tables as rows of cells, shared by the CSV and XLSX renderers (finance's
forms): summary, causes, presence, escalations, the service-quality KPIs (004 3.3-3.5) and
the penalty ledger, per tenant."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

from monitor.accounting.report import Report
from monitor.timeutil import format_rfc3339

Cell = str | int | float | None


def tables(report: Report, labels: dict[str, str]) -> Iterator[tuple[str, list[list[Cell]]]]:
    """(table name, rows with a header row first), for every table of the report."""
    L = labels
    summary: list[list[Cell]] = [
        [
            L["tenant"],
            L["subject_type"],
            L["metric"],
            L["channel"],
            L["period"],
            L["requests"],
            L["met"],
            L["breached"],
            L["compliance"],
            L["mean"],
            L["p90"],
        ]
    ]
    causes: list[list[Cell]] = [[L["tenant"], L["cause"], L["breached"]]]
    presence: list[list[Cell]] = [
        [L["tenant"], L["channel"], L["agents"], L["agent_hours"], L["uncovered"]]
    ]
    escalations: list[list[Cell]] = [
        [
            L["tenant"],
            "escalation_id",
            L["rule"],
            L["clause"],
            L["tripped_at"],
            L["explanation_due"],
            L["evidence"],
        ]
    ]
    ledger: list[list[Cell]] = [
        [
            L["tenant"],
            "sla_id",
            L["session"],
            L["channel"],
            L["metric"],
            L["deadline"],
            L["cause"],
            L["clause"],
            L["amount"],
            L["currency"],
        ]
    ]
    kpis: list[list[Cell]] = [
        [
            L["tenant"],
            L["channel"],
            L["availability"],
            f"{L['availability']} {L['objective']}",
            L["service_hours"],
            L["down_minutes"],
            L["fcr"],
            f"{L['fcr']} {L['target']}",
            L["solved"],
            L["first_contact"],
            L["csat_mean"],
            f"{L['csat_mean']} {L['target']}",
            L["csat_good"],
            f"{L['csat_good']} {L['target']}",
            L["ratings"],
        ]
    ]
    for t in report.tenants:
        tz = ZoneInfo(t.timezone)
        for k in t.kpis:
            g = k.targets
            kpis.append(
                [
                    t.tenant,
                    k.channel,
                    k.availability,
                    g.availability,
                    k.service_seconds / 3600,
                    k.unavailable_seconds / 60,
                    k.fcr,
                    g.first_contact_resolution,
                    k.solved,
                    k.first_contact,
                    k.csat_mean,
                    g.csat_mean,
                    k.csat_good_share,
                    g.csat_good_share,
                    k.ratings,
                ]
            )
        for r in t.rows:
            f = r.figures
            summary.append(
                [
                    t.tenant,
                    r.subject_type,
                    r.metric,
                    r.channel,
                    r.period,
                    f.requests,
                    f.met,
                    f.breached,
                    f.compliance,
                    f.mean_seconds,
                    f.p90_seconds,
                ]
            )
        causes.extend([t.tenant, c, n] for c, n in t.causes.items())
        presence.extend(
            [t.tenant, p.channel, p.agents, p.online_agent_hours, p.uncovered_working_hours]
            for p in t.presence
        )
        for e in t.escalations:
            evidence = (
                " ".join(e.sla_ids)
                if e.sla_ids
                else "; ".join(f"{d.day}={d.mean_ratio}" for d in e.days)
            )
            escalations.append(
                [
                    t.tenant,
                    e.escalation_id,
                    e.rule,
                    e.clause,
                    format_rfc3339(e.tripped_at, tz),
                    e.explanation_due or e.due_note,
                    evidence,
                ]
            )
        for row in t.ledger.rows:
            ledger.append(
                [
                    t.tenant,
                    row.sla_id,
                    row.subject_id,
                    row.channel,
                    row.metric,
                    format_rfc3339(row.deadline, tz),
                    row.cause,
                    row.clause,
                    row.amount,
                    row.currency,
                ]
            )
        for currency, total in sorted(t.ledger.totals.items()):
            ledger.append(
                [t.tenant, None, L["total"], None, None, None, None, None, total, currency]
            )
    yield "summary", summary
    yield "causes", causes
    yield "presence", presence
    yield "escalations", escalations
    yield "kpis", kpis
    yield "ledger", ledger
