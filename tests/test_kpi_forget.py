"""KpiTracker.forget: a subject swept out by retention leaves nothing behind in the tracker
but the monthly counts it fed (the live worker's memory stays flat: tests/live/test_soak.py).
"""

from __future__ import annotations

from monitor.events import Event
from monitor.kpi import KpiTracker
from monitor.policy import load_policy_set
from monitor.validation import event_from_dict
from monitor.vocabulary import SubjectType

TENANT = "contract-004"  # service-sla: tickets with FCR and CSAT targets


def event(type_: str, at: str, **fields: object) -> Event:
    return event_from_dict(
        {"event_id": f"{type_}{at}{fields}", "type": type_, "occurred_at": at, "tenant": TENANT}
        | fields
    )


def test_forget_drops_the_subjects_and_keeps_the_counts() -> None:
    tracker = KpiTracker(load_policy_set())
    for e in (
        event("session.started", "2026-10-08T10:00:00+08:00", session_id="S-1", channel="web"),
        event("ticket.created", "2026-10-08T10:00:00+08:00", ticket_id="T-1", channel="email",
              priority="P2"),
        event("ticket.comment", "2026-10-08T10:05:00+08:00", ticket_id="T-1", author="agent",
              public=True),
        event("ticket.status_changed", "2026-10-08T10:06:00+08:00", ticket_id="T-1",
              status="solved"),
    ):  # fmt: skip
        tracker.observe(e)
    before = [r.to_dict() for r in tracker.rows()]
    assert set(tracker.quality.sessions) == {"S-1"}
    assert set(tracker.quality.tickets) == {"T-1"}

    tracker.forget(SubjectType.CHAT_SESSION, "S-1")
    tracker.forget(SubjectType.TICKET, "T-1")
    tracker.forget(SubjectType.TICKET, "T-never-seen")  # a no-op

    assert tracker.quality.sessions == {}
    assert tracker.quality.tickets == {}
    assert [r.to_dict() for r in tracker.rows()] == before  # the ticket's FCR still counts
    assert any(r.to_dict()["first_contact_resolution"]["solved"] == 1 for r in tracker.rows())
