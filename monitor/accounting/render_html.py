"""The report for people: one self-contained HTML file (inline CSS and SVG charts, no script,
nothing fetched at view time). Jinja2 (autoescaping) fills the template below; charts come
from :mod:`monitor.accounting.charts`. Called by :func:`monitor.accounting.cli.render`.
"""

# ruff: noqa: E501 - the HTML template keeps its lines whole
from __future__ import annotations

from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup

from monitor.accounting import charts
from monitor.accounting.labels import labeler
from monitor.accounting.report import Report
from monitor.timeutil import format_rfc3339

_TEMPLATE = """<!DOCTYPE html>
<html lang="{{ 'zh-CN' if lang == 'zh' else 'en' }}">
<head><meta charset="utf-8"><title>{{ L.title }} {{ r.month }}</title>
<style>
body{font-family:"Noto Sans CJK SC","Noto Sans",system-ui,sans-serif;margin:24px;color:#1a202c}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;border-bottom:2px solid #2b6cb0;margin-top:28px}
h3{font-size:15px;margin:18px 0 6px} .meta{color:#4a5568;margin-bottom:12px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:right}
th{background:#edf2f7} td.l,th.l{text-align:left} tr.sub td{color:#4a5568}
.bad{color:#c53030;font-weight:bold} .ok{color:#276749} .charts{display:flex;flex-wrap:wrap;gap:12px}
.charts svg{max-width:560px;height:auto} .note{color:#975a16}
.kpi{display:inline-block;border:1px solid #cbd5e0;border-radius:6px;padding:6px 12px;margin:0 8px 8px 0}
.kpi b{display:block;font-size:20px}
</style></head>
<body>
<h1>{{ L.title }} — {{ r.month }}</h1>
<div class="meta">{{ L.due }}: <b id="due-date">{{ r.due_date or "—" }}</b>
 ({{ L.due_note.format(n=r.due_working_days, clause=r.due_clause) }})</div>
{% for n in r.notes %}<p class="note">{{ n }}</p>{% endfor %}
{% for t in tenants %}
<section class="tenant" id="tenant-{{ t.r.tenant }}">
<h2>{{ L.tenant }}: {{ t.r.tenant }}</h2>
{% for n in t.r.notes %}<p class="note">{{ n }}</p>{% endfor %}
{% if t.r.empty %}<p class="empty">{{ L.empty }}</p>{% else %}
<div>
<span class="kpi">{{ L.requests }}<b>{{ t.requests }}</b></span>
<span class="kpi">{{ L.compliance }}<b>{{ t.compliance }}</b></span>
<span class="kpi">{{ L.breached }}<b class="bad">{{ t.breached }}</b></span>
<span class="kpi">{{ L.ledger }}<b id="penalty-total">{{ t.r.ledger.total_text() or '0' }}</b></span>
<span class="kpi">{{ L.escalations }}<b>{{ t.r.escalations|length }}</b></span>
</div>
<div class="charts">{{ t.daily }}{{ t.distribution }}{{ t.causes }}</div>
<h3>{{ L.summary }}</h3>
<table class="metrics"><tr><th class="l">{{ L.subject_type }}</th><th class="l">{{ L.metric }}</th>
<th class="l">{{ L.channel }}</th><th class="l">{{ L.period }}</th><th>{{ L.targets }}</th>
<th>{{ L.requests }}</th><th>{{ L.met }}</th><th>{{ L.breached }}</th><th>{{ L.compliance }}</th>
<th>{{ L.mean }}</th><th>{{ L.p90 }}</th></tr>
{% for row in t.r.rows %}<tr class="{{ '' if row.period == 'all' else 'sub' }}">
<td class="l">{{ L[row.subject_type] }}</td><td class="l">{{ L[row.metric] }}</td>
<td class="l">{{ row.channel }}</td><td class="l">{{ L[row.period] }}</td>
<td>{{ row.targets_seconds|map('int')|join(', ') }}</td>
<td>{{ row.figures.requests }}</td><td>{{ row.figures.met }}</td>
<td class="{{ 'bad' if row.figures.breached else '' }}">{{ row.figures.breached }}</td>
<td>{{ pct(row.figures.compliance) }}</td><td>{{ num(row.figures.mean_seconds) }}</td>
<td>{{ num(row.figures.p90_seconds) }}</td></tr>{% endfor %}
</table>
<h3>{{ L.causes }}</h3>
<table class="causes"><tr>{% for c, n in t.r.causes.items() %}<th>{{ L[c] }}</th>{% endfor %}</tr>
<tr>{% for c, n in t.r.causes.items() %}<td>{{ n }}</td>{% endfor %}</tr></table>
<h3>{{ L.presence }}</h3>
<table class="presence"><tr><th class="l">{{ L.channel }}</th><th>{{ L.agents }}</th>
<th>{{ L.agent_hours }}</th><th>{{ L.uncovered }}</th></tr>
{% for p in t.r.presence %}<tr><td class="l">{{ p.channel }}</td><td>{{ p.agents }}</td>
<td>{{ num(p.online_agent_hours) }}</td>
<td class="{{ 'bad' if p.uncovered_working_hours else '' }}">{{ num(p.uncovered_working_hours) }}</td></tr>
{% endfor %}</table>
<h3>{{ L.kpis }}</h3>
{% if not t.r.kpis_known %}<p class="note">{{ L.kpis_unknown }}</p>
{% elif not t.r.kpis %}<p>{{ L.kpis_none }}</p>
{% else %}<div class="charts">{{ t.kpis }}</div>
<table class="kpis"><tr><th class="l" rowspan="2">{{ L.channel }}</th>
<th colspan="4">{{ L.availability }}</th><th colspan="3">{{ L.fcr }}</th>
<th colspan="2">{{ L.csat_mean }}</th><th colspan="2">{{ L.csat_good }}</th><th rowspan="2">{{ L.ratings }}</th></tr>
<tr><th>%</th><th>{{ L.objective }}</th><th>{{ L.service_hours }}</th><th>{{ L.down_minutes }}</th>
<th>%</th><th>{{ L.target }}</th><th>{{ L.first_contact }} / {{ L.solved }}</th>
<th>{{ L.csat_mean }}</th><th>{{ L.target }}</th><th>%</th><th>{{ L.target }}</th></tr>
{% for k in t.r.kpis %}{% set v = k.verdicts() %}<tr data-channel="{{ k.channel or '' }}">
<td class="l">{{ k.channel or L.no_channel }}</td>
<td class="{{ verdict(v.availability) }}" data-kpi="availability">{{ pct3(k.availability) }}</td>
<td>{{ pct3(k.targets.availability) }}</td><td>{{ num(k.service_seconds / 3600) }}</td><td>{{ num(k.unavailable_seconds / 60) }}</td>
<td class="{{ verdict(v.first_contact_resolution) }}" data-kpi="fcr">{{ pct(k.fcr) }}</td>
<td>{{ pct(k.targets.first_contact_resolution) }}</td><td>{{ k.first_contact }} / {{ k.solved }}</td>
<td class="{{ verdict(v.csat_mean) }}" data-kpi="csat_mean">{{ num2(k.csat_mean) }}</td><td>{{ num2(k.targets.csat_mean) }}</td>
<td class="{{ verdict(v.csat_good_share) }}" data-kpi="csat_good">{{ pct(k.csat_good_share) }}</td>
<td>{{ pct(k.targets.csat_good_share) }}</td><td>{{ k.ratings }}</td></tr>
{% endfor %}</table>{% endif %}
<h3>{{ L.escalations }}</h3>
{% if t.r.escalations %}<table class="escalations"><tr><th class="l">{{ L.rule }}</th>
<th class="l">{{ L.clause }}</th><th class="l">{{ L.tripped_at }}</th>
<th class="l">{{ L.explanation_due }}</th><th class="l">{{ L.evidence }}</th></tr>
{% for e in t.r.escalations %}<tr><td class="l">{{ L[e.rule] if e.rule in L else e.rule }} #{{ e.ordinal }}</td>
<td class="l">{{ e.clause }}</td><td class="l">{{ when(e.tripped_at, t.tz) }}</td>
<td class="l"><b>{{ e.explanation_due or e.due_note }}</b></td>
<td class="l">{% if e.days %}{% for d in e.days %}{{ d.day }}: {{ '%.3f'|format(d.mean_ratio) }}{{ '; ' if not loop.last }}{% endfor %}{% else %}{{ e.sla_ids|length }} × {{ L.breached }}{% endif %}</td></tr>
{% endfor %}</table>{% else %}<p>{{ L.none }}</p>{% endif %}
<h3>{{ L.ledger }}</h3>
<table class="ledger"><tr><th class="l">{{ L.session }}</th><th class="l">{{ L.channel }}</th>
<th class="l">{{ L.deadline }}</th><th class="l">{{ L.cause }}</th><th class="l">{{ L.clause }}</th>
<th>{{ L.amount }}</th></tr>
{% for row in t.r.ledger.rows %}<tr><td class="l">{{ row.subject_id }}</td><td class="l">{{ row.channel }}</td>
<td class="l">{{ when(row.deadline, t.tz) }}</td><td class="l">{{ L[row.cause] if row.cause in L else row.cause }}</td>
<td class="l">{{ row.clause }}</td><td>{{ '%.2f'|format(row.amount) }} {{ row.currency }}</td></tr>{% endfor %}
<tr><th class="l" colspan="5">{{ L.total }}</th><th>{{ t.r.ledger.total_text() or '0' }}</th></tr>
</table>
<p>{{ L.retracted }}: {{ t.r.ledger.retracted }} · {{ L.open_targets }}: {{ t.r.open_targets }}</p>
{% endif %}
</section>
{% endfor %}
</body></html>
"""


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def _pct3(value: float | None) -> str:
    """Availability needs three decimals: 99.9 % against 99.89 % is a missed objective."""
    return "–" if value is None else f"{100 * value:.3f}%"


def _num2(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("ok" if met else "bad")


def render_html(report: Report, lang: str) -> bytes:
    labels = labeler(lang)
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    tenants = []
    for t in report.tenants:
        requests = sum(r.figures.requests for r in t.rows if r.period == "all")
        met = sum(r.figures.met for r in t.rows if r.period == "all")
        tenants.append(
            {
                "r": t,
                "tz": ZoneInfo(t.timezone),
                "requests": requests,
                "breached": requests - met,
                "compliance": _pct(met / requests if requests else None),
                # matplotlib's own SVG output: trusted, not user text
                "daily": Markup(charts.daily_compliance(t, report.compliance_target, labels)),
                "distribution": Markup(charts.distribution(t.first_responses, labels)),
                "causes": Markup(charts.causes(t.causes, labels)),
                "kpis": Markup(charts.kpis(t.kpis, labels)) if t.kpis else "",
            }
            if not t.empty
            else {"r": t}
        )
    html = template.render(
        r=report,
        L=labels,
        lang=lang,
        tenants=tenants,
        pct=_pct,
        pct3=_pct3,
        num=_num,
        num2=_num2,
        verdict=_verdict,
        when=lambda at, tz: format_rfc3339(at, tz).replace("T", " ")[:19],
    )
    return html.encode("utf-8")
