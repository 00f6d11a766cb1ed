"""The pure SLA engine: subject records in, new records and SLA facts out."""

from monitor.engine.deadlines import DeadlineIndex
from monitor.engine.engine import SlaEngine, Step
from monitor.engine.state import ClockPhase, SlaClock, SubjectState, state_key

__all__ = [
    "ClockPhase",
    "DeadlineIndex",
    "SlaClock",
    "SlaEngine",
    "Step",
    "SubjectState",
    "state_key",
]
