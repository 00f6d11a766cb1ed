"""The monthly report's service-quality KPIs (004 3.3-3.5, 001 3.2-3.3, issue 9) against the
known-answer KPI month of tests/test_kpi.py: availability over service time, first-contact
resolution and CSAT per channel, in every format, and what a report says without KPI inputs.

The expected figures are the generator's, counted as it builds the events, never the monitor's.
The events file also holds a repeated rating and a rating of a ticket nobody created: the engine
refuses both, so the report must not count them (it replays the events with a KPI tracker).
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from openpyxl import load_workbook

from monitor import schemas
from monitor.cli import main
from tests.test_kpi import CHANNELS, TENANT, generate_month, raw

ROOT = Path(__file__).resolve().parents[2]
UNTIL = "2026-11-01T00:00:00+08:00"
Expected = dict[str, dict[str, float]]


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Expected]:
    work = tmp_path_factory.mktemp("kpis")
    objs, expected = generate_month(seed=4)
    rating = next(o for o in objs if o["type"] == "ticket.rated")
    objs += [
        rating,  # the same event_id again: a duplicate, counted once
        raw("ticket.rated", "2026-10-20 10:00", ticket_id="NOBODY", score=1),  # rejected
        {"type": "ticket.rated", "event_id": "bad", "occurred_at": "2026-10-20T10:00:00"},
    ]
    events = work / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    facts = work / "facts.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", "--until", UNTIL, str(events)],
        capture_output=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    facts.write_bytes(done.stdout)
    return facts, events, expected


def report(out: Path, *args: str) -> Path:
    assert main(["report", "--month", "2026-10", "--out", str(out), *args]) == 0
    return out


def kpis_of(document: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    (tenant,) = [t for t in document["tenants"] if t["tenant"] == TENANT]
    return {k["channel"]: k for k in tenant["kpis"]}


def test_the_json_report_carries_the_known_kpis_per_channel(
    month: tuple[Path, Path, Expected], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    facts, events, expected = month
    out = report(tmp_path / "r.json", "--format", "json", str(facts), str(events))
    document = orjson.loads(out.read_bytes())
    schemas.validator("report.schema.json").validate(document)
    kpis = kpis_of(document)
    assert set(kpis) == set(CHANNELS)  # no row for the unknown ticket's rating
    for channel, want in expected.items():
        k = kpis[channel]
        fcr, csat, avail = k["first_contact_resolution"], k["csat"], k["availability"]
        assert (fcr["solved"], fcr["first_contact"]) == (want["solved"], want["fcr"]), channel
        assert fcr["value"] == pytest.approx(want["fcr"] / want["solved"])
        assert csat["ratings"] == want["ratings"], channel
        assert csat["mean"] == pytest.approx(want["points"] / want["ratings"])
        assert csat["good_share"] == pytest.approx(want["good"] / want["ratings"])
        assert avail["service_seconds"] == want.get("service", 0), channel
        assert avail["unavailable_seconds"] == want.get("down", 0), channel
        # the contract's targets beside each figure (service-sla.yaml, tenant contract-004)
        assert (avail["objective"], fcr["target"]) == (0.999, 0.75)
        assert (csat["target_mean"], csat["target_good_share"]) == (4.0, 0.85)
    phone = kpis["phone"]
    assert phone["availability"]["value"] == pytest.approx(1 - 175 / (162 * 60))
    assert phone["verdicts"]["availability"] is False  # 98.2 % < 99.9 %
    assert kpis["web"]["availability"]["value"] == 1.0
    assert kpis["web"]["verdicts"]["availability"] is True
    assert kpis["email"]["availability"]["value"] is None  # no channel.status: not measured
    assert "skipped 1 invalid input event(s)" in capsys.readouterr().err


def test_the_html_report_shows_the_kpi_table_in_the_contract_s_terms(
    month: tuple[Path, Path, Expected], tmp_path: Path
) -> None:
    facts, events, expected = month
    zh = report(tmp_path / "zh.html", "--lang", "zh", str(facts), str(events)).read_text()
    for term in ("服务质量指标", "可用率", "首次接触解决率", "客户满意度", "满意度好评率"):
        assert term in zh, term
    en = report(tmp_path / "en.html", str(facts), str(events)).read_text()
    section = en[en.index("<h3>Service quality") : en.index('<table class="kpis">')]
    assert section.count("<svg") == 1  # the chart: each KPI per channel against its target
    table = en[en.index('<table class="kpis">') :]
    table = table[: table.index("</table>")]
    phone = table[table.index('data-channel="phone"') :]
    phone = phone[: phone.index("</tr>")]
    assert 'class="bad" data-kpi="availability">98.200%' in phone
    want = expected["phone"]
    assert f"{int(want['fcr'])} / {int(want['solved'])}" in phone
    assert f">{want['points'] / want['ratings']:.2f}<" in phone
    assert 'class="ok" data-kpi="availability">100.000%' in table  # web: never down


def test_csv_and_xlsx_carry_the_kpi_table(
    month: tuple[Path, Path, Expected], tmp_path: Path
) -> None:
    facts, events, expected = month
    text = report(tmp_path / "r.csv", "--format", "csv", str(facts), str(events))
    rows = list(csv.reader(io.StringIO(text.read_text(encoding="utf-8-sig"))))
    start = rows.index(["# kpis"])
    header, *body = rows[start + 1 : rows.index(["# ledger"])]
    by_channel = {r[1]: dict(zip(header, r, strict=True)) for r in body}
    assert set(by_channel) == set(CHANNELS)
    assert float(by_channel["phone"]["Unavailable (min)"]) == 175
    assert int(by_channel["email"]["Solved"]) == expected["email"]["solved"]
    book = load_workbook(report(tmp_path / "r.xlsx", "--format", "xlsx", str(facts), str(events)))
    sheet = [list(r) for r in book["kpis"].iter_rows(values_only=True)]
    assert sheet[0][:3] == ["Tenant", "Channel", "Availability"]
    phone = next(r for r in sheet if r[1] == "phone")
    assert phone[2] == pytest.approx(1 - 175 / (162 * 60))


def test_without_kpi_inputs_the_report_says_so(
    month: tuple[Path, Path, Expected], tmp_path: Path
) -> None:
    facts, events, _ = month
    # SLA facts only: the KPIs cannot be measured, and the report says why.
    out = report(tmp_path / "a.json", "--format", "json", str(facts))
    document = orjson.loads(out.read_bytes())
    (tenant,) = document["tenants"]
    assert (tenant["kpis_known"], tenant["kpis"]) == (False, [])
    assert any("input events (channel.status" in n for n in tenant["notes"]), tenant["notes"]
    html = report(tmp_path / "a.html", str(facts)).read_text()
    assert "Not measured: the input events were not among the sources." in html
    # The inputs, but a month they do not cover: an empty KPI section, no crash.
    args = ("--month", "2026-09", "--tenant", TENANT)
    out = tmp_path / "b.json"
    assert main(["report", *args, "--format", "json", "--out", str(out), str(events)]) == 0
    (tenant,) = orjson.loads(out.read_bytes())["tenants"]
    assert (tenant["kpis_known"], tenant["kpis"], tenant["empty"]) == (True, [], True)
    assert (
        f"no KPI inputs (channel statuses, solved tickets, ratings) for {TENANT} in 2026-09"
        in (tenant["notes"])
    )
    out = tmp_path / "b.html"
    assert main(["report", *args, "--lang", "zh", "--out", str(out), str(events)]) == 0
    assert "本月无该客户的数据" in out.read_text()
