"""The report as an Excel workbook (openpyxl): one sheet per table, the ledger with its
total. Called by :func:`monitor.accounting.cli.render`."""

from __future__ import annotations

import io

from openpyxl import Workbook
from openpyxl.styles import Font

from monitor.accounting.labels import labeler
from monitor.accounting.report import Report
from monitor.accounting.tables import tables


def render_xlsx(report: Report, lang: str) -> bytes:
    book = Workbook()
    first = True
    for name, rows in tables(report, labeler(lang)):
        sheet = book.active if first else book.create_sheet()
        assert sheet is not None
        first = False
        sheet.title = name
        for row in rows:
            sheet.append(row)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
