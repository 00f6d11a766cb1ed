"""The report as CSV for finance: every table one after the other in one file, each headed
by a ``# name`` line (the ledger last). Called by :func:`monitor.accounting.cli.render`."""

from __future__ import annotations

import csv
import io

from monitor.accounting.labels import labeler
from monitor.accounting.report import Report
from monitor.accounting.tables import tables


def render_csv(report: Report, lang: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"# month {report.month}", f"due {report.due_date or 'unknown'}"])
    for name, rows in tables(report, labeler(lang)):
        writer.writerow([f"# {name}"])
        writer.writerows(["" if c is None else c for c in row] for row in rows)
    # UTF-8 with a BOM: spreadsheet programs then read the Chinese labels right.
    return out.getvalue().encode("utf-8-sig")
