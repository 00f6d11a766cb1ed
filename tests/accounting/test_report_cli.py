"""``sla-monitor report`` as a person and a finance team use it: bad input gets a clear error,
the HTML is looked at in a real headless Chromium (Debian's ``chromium``, CJK fonts from
``fonts-noto-cjk``; both installed by ``make tools``), CSV and XLSX carry the ledger."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from matplotlib import image
from openpyxl import load_workbook

from tests.accounting.known_month import known_month

ROOT = Path(__file__).resolve().parents[2]
UNTIL = "2026-11-01T12:00:00+08:00"


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "monitor.cli", *args], capture_output=True, cwd=ROOT, check=False
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("report")
    events = work / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in known_month().events))
    facts = work / "facts.jsonl"
    done = run("replay", "--escalations", "--until", UNTIL, str(events))
    assert done.returncode == 0, done.stderr
    facts.write_bytes(done.stdout)
    return facts, events


def test_an_unknown_month_format_is_a_clear_error(sources: tuple[Path, Path]) -> None:
    done = run("report", "--month", "10/2026", str(sources[0]))
    assert done.returncode == 2
    assert b"--month '10/2026': expected YYYY-MM" in done.stderr


def test_a_source_that_is_not_sla_facts_is_named_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"hello": 1}\n')
    done = run("report", "--month", "2026-10", str(bad))
    assert done.returncode == 2
    assert f"{bad}:1: not an SLA fact".encode() in done.stderr
    broken = tmp_path / "y.jsonl"
    broken.write_text('{"kind": "breach", "sla_id": "x"}\n')
    done = run("report", "--month", "2026-10", str(broken))
    assert done.returncode == 2
    assert f"{broken}:1: metric: missing".encode() in done.stderr


def test_a_tenant_with_no_data_gets_an_empty_report_that_says_so(
    sources: tuple[Path, Path],
) -> None:
    done = run(
        "report", "--month", "2026-10", "--tenant", "nobody", "--format", "json", str(sources[0])
    )
    assert done.returncode == 0, done.stderr
    (tenant,) = orjson.loads(done.stdout)["tenants"]
    assert tenant["empty"] is True
    assert "no SLA facts, agent statuses or escalations for nobody in 2026-10" in tenant["notes"]
    done = run("report", "--month", "2026-09", "--tenant", "nobody", str(sources[0]))
    assert done.returncode == 0
    assert b"No data for this tenant and month." in done.stdout


def test_csv_and_xlsx_carry_the_ledger_and_its_total(
    sources: tuple[Path, Path], tmp_path: Path
) -> None:
    breaches = sum(1 for s in known_month().sessions if s.outcome == "breach")
    done = run("report", "--month", "2026-10", "--format", "csv", *map(str, sources))
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout.decode("utf-8-sig"))))
    start = rows.index(["# ledger"])
    ledger = rows[start + 2 :]
    assert len(ledger) == breaches + 1
    assert ledger[-1][2] == "Total"
    assert float(ledger[-1][8]) == 100.0 * breaches
    out = tmp_path / "r.xlsx"
    done = run(
        "report",
        "--month",
        "2026-10",
        "--format",
        "xlsx",
        "--lang",
        "zh",
        "--out",
        str(out),
        *map(str, sources),
    )
    assert done.returncode == 0, done.stderr
    book = load_workbook(out)
    assert book.sheetnames == ["summary", "causes", "presence", "escalations", "kpis", "ledger"]
    sheet = book["ledger"]
    assert sheet.max_row == breaches + 2
    assert sheet.cell(sheet.max_row, 3).value == "合计"
    assert sheet.cell(sheet.max_row, 9).value == 100.0 * breaches
    assert book["escalations"].max_row == 1 + 15


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM, "chromium missing: `make tools` installs Debian's chromium"
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            *args,
        ],
        capture_output=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_html_report_as_chromium_shows_it(
    sources: tuple[Path, Path], tmp_path: Path, lang: str
) -> None:
    page = tmp_path / f"report-{lang}.html"
    done = run(
        "report", "--month", "2026-10", "--lang", lang, "--out", str(page), *map(str, sources)
    )
    assert done.returncode == 0, done.stderr
    html = page.read_text(encoding="utf-8")
    # Self-contained: nothing to fetch at view time (namespace URIs are names, not fetched).
    for fetch in ('src="http', 'href="http', "url(http", "<script", "<link", "@import"):
        assert fetch not in html, fetch
    dom = chromium("--dump-dom", page.as_uri()).stdout.decode()
    assert '<b id="due-date">2026-11-06</b>' in dom
    assert '<b id="penalty-total">4,200.00 CNY</b>' in dom
    assert dom.count("<svg") == 3
    words = ("达标率", "服务人员在线情况", "违约金明细") if lang == "zh" else ("Compliance",)
    for word in words:
        assert word in dom
    shot = tmp_path / f"report-{lang}.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1800", page.as_uri())
    pixels = image.imread(str(shot))
    assert pixels.shape[:2] == (1800, 1280)
    rgb = (pixels[:, :, :3] * 255).round()
    blue = ((abs(rgb - [0x2B, 0x6C, 0xB0]) <= 2).all(axis=2)).sum()  # the charts' bars
    red = ((abs(rgb - [0xC5, 0x30, 0x30]) <= 2).all(axis=2)).sum()  # causes, threshold lines
    assert blue > 5000, blue
    assert red > 500, red
    if lang == "zh":
        fonts = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=True
        )
        assert "Noto Sans CJK" in fonts.stdout, "fonts-noto-cjk missing: `make tools`"
