"""The one exception hierarchy of sla-monitor.

Everything the package raises on purpose derives from :class:`SlaMonitorError`, so a caller
(the CLI, the worker) can tell "the input or the configuration is wrong" from a bug.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why an input event was dead-lettered, as a machine-readable code.

    Set where the error is raised (``InvalidEvent.code``, ``RejectedEvent.code``,
    ``CalendarError.code``) and used as the ``reason`` label of ``sla_input_invalid_total``
    (:mod:`monitor.metrics`), so an operator can tell a producer bug from a policy gap without
    reading the text. The human text stays in the dead letter's ``reason`` header.
    """

    # InvalidEvent: the bytes are not a valid event (monitor.validation)
    JSON = "json"  # not UTF-8, not JSON, not a JSON object
    TOO_LARGE = "too_large"  # over monitor.validation.MAX_EVENT_BYTES
    UNKNOWN_TYPE = "unknown_type"  # a ``type`` this monitor does not know
    MISSING_FIELD = "missing_field"  # a required field is absent
    TIMESTAMP = "timestamp"  # ``occurred_at`` is not RFC 3339 with an offset
    SCHEMA = "schema"  # any other schema violation (wrong JSON type, enum, length, pattern)
    # RejectedEvent: valid, but the engine cannot apply it (monitor.engine, monitor.policy)
    UNKNOWN_SUBJECT = "unknown_subject"  # no session.started / ticket.created was seen
    DUPLICATE_SUBJECT = "duplicate_subject"  # a second session.started / ticket.created
    NO_POLICY = "no_policy"  # no policy covers the tenant and none is the default
    NO_TARGET = "no_target"  # the policy has no target rule for the subject
    POLICY_UNLOADED = "policy_unloaded"  # a stored subject's policy is no longer loaded
    APPEAL_REJECTED = "appeal_rejected"  # 003 5.1: no window, nothing to appeal, too late
    NOT_FOR_ENGINE = "not_for_engine"  # an event the engine keeps no SLA clock for
    REJECTED = "rejected"  # any other rejection
    # CalendarError: the business calendar cannot answer for a date
    CALENDAR = "calendar"
    # Written by the live worker itself (monitor.live), not by an exception
    MISROUTED = "misrouted"  # wrong topic, or a key that is not the subject id
    TOMBSTONE = "tombstone"  # an empty message value
    INTERNAL = "internal"  # a bug: the event raised something unexpected
    OTHER = "other"  # a reason text no code was given for


class SlaMonitorError(Exception):
    """Root of every error sla-monitor raises on purpose."""


class ConfigError(SlaMonitorError):
    """Start-up configuration (settings, policy files, calendars) is unusable."""


class PolicyError(ConfigError):
    """A policy file is invalid. The message names the file, the field and the problem."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        super().__init__(f"{file}: {field}: {problem}")


class CalendarError(SlaMonitorError):
    """The business calendar cannot answer for a date (no data, and no override)."""

    code = Reason.CALENDAR


class StateError(SlaMonitorError):
    """A stored subject record (a Faust table value) cannot be read: written by an
    incompatible release, or not a record at all. ``key`` is the record's store key (None
    when the caller did not say), ``format`` the format number seen (None: unreadable)."""

    def __init__(self, key: str | None, found: object, expected: int) -> None:
        self.key = key
        self.format = found
        where = "a state record" if key is None else f"the state record of {key!r}"
        seen = "is unreadable" if found is None else f"has format {found!r}"
        super().__init__(
            f"{where} {seen}, but this release reads format {expected}: it was written by "
            "another sla-monitor release (run that one), or the store holds foreign data "
            "(start from an empty store: remove the worker's data directory and its changelog "
            "topic, then let it rebuild from the input)"
        )


class InvalidEvent(SlaMonitorError):
    """An input event failed validation. ``reason`` is precise enough to fix the producer;
    ``code`` says which kind of failure it is (:class:`Reason`)."""

    def __init__(self, reason: str, path: str = "", *, code: Reason = Reason.SCHEMA) -> None:
        self.reason = reason
        self.path = path
        self.code = code
        super().__init__(f"{path}: {reason}" if path else reason)


class RejectedEvent(SlaMonitorError):
    """A valid event the engine cannot apply (for example a message for an unknown session);
    ``code`` says which kind of rejection it is (:class:`Reason`)."""

    def __init__(self, reason: str, *, code: Reason = Reason.REJECTED) -> None:
        self.reason = reason
        self.code = code
        super().__init__(reason)


def yaml_problem(exc: Exception) -> str:
    """A YAML parser error as one line: ``line L, column C: what``.

    PyYAML's own text spans several lines (the context, a quoted source line, a caret), and
    a start-up refusal must be one line (issue 10: ``sla-monitor: error: FILE: FIELD:
    PROBLEM``). Called by the policy loader and the calendar override reader.
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{f'{context}, ' if context else ''}{problem}".split())
