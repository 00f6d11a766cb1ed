"""A 6.2 explanation due in working days that runs into a year the business calendar does not
know yet (a trip in late December, before the State Council publishes next year's holidays).

The trip is emitted all the same, with ``explanation_due: null`` and a ``due_note`` naming the
year and the override file to add (monitor.accounting.escalation, ``_escalation``): not
dead-lettered, which would lose the trip, and not guessed from weekdays. With an override file
for the year, the date is computed.
"""

from __future__ import annotations

from pathlib import Path

from monitor import schemas
from monitor.accounting.escalation import Escalator, TenantState, escalation_from_dict
from monitor.policy import load_policy_set
from monitor.policy.loader import BUNDLED_POLICIES
from monitor.sla_event import Kind, SlaEvent
from tests.accounting.known_month import BEIJING
from tests.accounting.test_escalation_cleanup import chat

DEC_28 = 1_798_387_200_000_000  # 2026-12-28T00:00:00+08:00, a Monday


def policies(tmp: Path, overrides: bool) -> Path:
    """The bundled policies, online-chat's explanation counted in working days."""
    folder = tmp / ("with-2027" if overrides else "plain")
    folder.mkdir()
    for source in BUNDLED_POLICIES.glob("*.yaml"):
        text = source.read_text()
        if source.name == "online-chat.yaml":
            assert "    explain_days: calendar" in text
            text = text.replace("    explain_days: calendar", "    explain_days: working")
            if overrides:  # outside the folder: every YAML file in it is a policy
                calendar = tmp / "cn-2027.yaml"
                calendar.write_text('years: [2027]\nholidays: ["2027-01-01"]\nworking_days: []\n')
                text = text.replace(
                    "  unknown_dates: error", f"  unknown_dates: error\n  overrides: {calendar}"
                )
        (folder / source.name).write_text(text)
    return folder


def three_breaches() -> list[SlaEvent]:
    """Three unanswered first responses of 28 Dec (10:00, 11:00, 12:00): one breach_count trip."""
    return [chat(Kind.BREACH, f"S-dec-{i}", DEC_28 + (10 + i) * 3_600_000_000) for i in range(3)]


def trip(folder: Path) -> dict[str, object]:
    escalator, state = Escalator(load_policy_set(str(folder))), TenantState()
    out = [e for fact in three_breaches() for e in escalator.apply(state, fact)]
    assert len(out) == 1
    fact = out[0].to_dict(BEIJING)
    schemas.validator("escalation.schema.json").validate(fact)
    assert escalation_from_dict(fact).to_dict(BEIJING) == fact  # the report reads it back
    return fact


def test_unknown_year_gives_the_trip_without_a_due_date_and_says_why(tmp_path: Path) -> None:
    fact = trip(policies(tmp_path, overrides=False))
    assert fact["rule"] == "breach_count"
    assert fact["tripped_at"] == "2026-12-28T12:03:00+08:00"
    assert fact["explanation_due"] is None
    assert (fact["due_days"], fact["due_kind"]) == (7, "working")
    note = str(fact["due_note"])
    assert "2027" in note, note
    assert "overrides file" in note, note


def test_an_override_file_for_the_year_gives_the_date(tmp_path: Path) -> None:
    fact = trip(policies(tmp_path, overrides=True))
    # 29, 30, 31 Dec; 1 Jan a holiday, 2-3 Jan a weekend; 4, 5, 6, 7 Jan: the 7th working day.
    assert fact["explanation_due"] == "2027-01-07"
    assert "due_note" not in fact
