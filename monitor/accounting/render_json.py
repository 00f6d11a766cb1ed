"""The report's machine form: :meth:`Report.to_dict` as JSON (``schemas/report.schema.json``).
Called by :func:`monitor.accounting.cli.render`."""

from __future__ import annotations

import orjson

from monitor.accounting.report import Report


def render_json(report: Report) -> bytes:
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
