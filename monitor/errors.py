"""The one exception hierarchy of sla-monitor.

Everything the package raises on purpose derives from :class:`SlaMonitorError`, so a caller
(the CLI, the worker) can tell "the input or the configuration is wrong" from a bug.
"""

from __future__ import annotations


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


class InvalidEvent(SlaMonitorError):
    """An input event failed validation. ``reason`` is precise enough to fix the producer."""

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class RejectedEvent(SlaMonitorError):
    """A valid event the engine cannot apply (for example a message for an unknown session)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
