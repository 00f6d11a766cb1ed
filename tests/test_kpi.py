"""KPIs of contracts 004 3.3-3.5 and 001 3.2-3.3: availability over service time, first-contact
resolution, CSAT; their events, metrics, Prometheus rules, and a generated month whose answer is
known by construction."""

from __future__ import annotations

import random
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor import validation
from monitor.cli import main
from monitor.engine import SlaEngine
from monitor.errors import InvalidEvent
from monitor.events import Event
from monitor.kpi import KpiRow, KpiTracker, by_quarter, monthly_kpis
from monitor.kpi.metrics import KpiMetrics
from monitor.policy import load_policy_set
from monitor.replay import Replay
from tests.factories import t
from tests.test_metrics import metric_names

BJ = ZoneInfo("Asia/Shanghai")
PROM_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
TENANT = "contract-004"
_ids = iter(range(10**9))


def stamp(at: str) -> str:
    """RFC 3339 from Beijing local 'YYYY-MM-DD HH:MM[:SS]'; full RFC 3339 passes through."""
    if "T" in at:
        return at
    return at.replace(" ", "T") + (":00" if len(at) == 16 else "") + "+08:00"


def raw(type_: str, at: str, tenant: str = TENANT, **fields: Any) -> dict[str, Any]:
    head = {"event_id": f"k{next(_ids)}", "type": type_, "occurred_at": stamp(at)}
    return head | {"tenant": tenant} | fields


def parsed(*objs: dict[str, Any]) -> list[Event]:
    return [validation.event_from_dict(o) for o in objs]


class Kpis:
    """Replay with a KPI tracker and its metrics on a fresh registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.policies = load_policy_set()
        self.tracker = KpiTracker(self.policies, KpiMetrics(self.registry))
        self.replay = Replay(SlaEngine(self.policies), self.tracker)

    def feed(self, *objs: dict[str, Any]) -> Kpis:
        for event in parsed(*objs):
            self.replay.feed(event)
        return self

    def until(self, at: str) -> Kpis:
        self.replay.advance_to(t(at))
        return self

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"tenant": TENANT} | labels)

    def row(self, channel: str, month: str) -> KpiRow:
        (found,) = [r for r in self.tracker.rows() if (r.channel, r.month) == (channel, month)]
        return found


# --- events ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "path", "reason"),
    [
        (raw("ticket.rated", "2026-10-08 10:00", ticket_id="T", score=0), "score", "minimum"),
        (raw("ticket.rated", "2026-10-08 10:00", ticket_id="T", score=6), "score", "maximum"),
        (raw("ticket.rated", "2026-10-08 10:00", ticket_id="T", score="5"), "score", "integer"),
        (raw("session.rated", "2026-10-08 10:00", session_id="S", score=True), "score", "integer"),
        (raw("session.rated", "2026-10-08 10:00", session_id="S"), "score", "missing"),
        (raw("channel.status", "2026-10-08 10:00", channel="web", status="open"), "status", "up"),
        (raw("channel.status", "2026-10-08 10:00", status="up"), "channel", "missing"),
        (
            raw("ticket.appealed", "2026-10-08T10:00:00", ticket_id="T"),
            "occurred_at",
            "no UTC offset",
        ),
    ],
)
def test_invalid_new_events_have_a_precise_reason(
    obj: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validation.parse_event(orjson.dumps(obj))
    assert caught.value.path == path
    assert reason in str(caught.value)


def test_new_events_parse() -> None:
    rated, status = parsed(
        raw("ticket.rated", "2026-10-08 10:00", ticket_id="T", score=5.0),
        raw("channel.status", "2026-10-08 10:00", channel="phone", status="down"),
    )
    assert rated.score == 5
    assert (status.subject_id, status.channel, status.channel_status) == ("phone", "phone", "down")


# --- availability (004 3.3) --------------------------------------------------------------------


def test_an_outage_straddling_the_end_of_service_time_counts_only_inside_it() -> None:
    # 004 policy: service 09:00-18:00 on working days; Thu 2026-10-08.
    k = Kpis().feed(
        raw("channel.status", "2026-10-08 08:00", channel="phone", status="up"),
        raw("channel.status", "2026-10-08 17:30", channel="phone", status="down"),
        raw("channel.status", "2026-10-08 18:30", channel="phone", status="up"),
    )
    k.until("2026-10-09 00:00")
    row = k.row("phone", "2026-10")
    assert (row.service_seconds, row.unavailable_seconds) == (9 * 3600, 30 * 60)
    assert row.availability == pytest.approx(1 - 1800 / 32400)
    assert k.sample("sla_channel_service_seconds_total", channel="phone") == 9 * 3600
    assert k.sample("sla_channel_unavailable_seconds_total", channel="phone") == 30 * 60
    assert k.sample("sla_channel_up", channel="phone") == 1
    assert k.registry.get_sample_value("sla_availability_objective", {"tenant": TENANT}) == 0.999
    assert row.verdicts()["availability"] is False  # 99.07 % < 99.9 %


def test_an_outage_on_a_holiday_costs_nothing_and_months_split() -> None:
    k = Kpis().feed(
        raw("channel.status", "2026-10-01 00:00", channel="web", status="down"),  # holiday
        raw("channel.status", "2026-10-07 23:00", channel="web", status="up"),
        raw("channel.status", "2026-10-30 17:00", channel="web", status="down"),  # Fri
        raw("channel.status", "2026-11-02 10:00", channel="web", status="up"),  # Mon
    )
    k.until("2026-11-03 00:00")
    october, november = k.row("web", "2026-10"), k.row("web", "2026-11")
    assert october.unavailable_seconds == 3600  # Fri 17:00-18:00 only
    assert november.unavailable_seconds == 3600  # Mon 09:00-10:00
    assert november.service_seconds == 9 * 3600  # counted to 11-03 00:00: Monday 11-02 only


def test_a_channel_status_out_of_time_order_is_rejected() -> None:
    k = Kpis().feed(
        raw("channel.status", "2026-10-08 10:00", channel="web", status="up"),
        raw("channel.status", "2026-10-08 11:00", channel="web", status="down"),
        raw("channel.status", "2026-10-08 10:30", channel="web", status="up"),
    )
    ((_, reason),) = k.replay.rejections
    assert "older than the time already accounted" in reason


def test_without_a_tracker_a_channel_status_is_rejected_clearly() -> None:
    replay = Replay(SlaEngine(load_policy_set()))
    replay.feed(*parsed(raw("channel.status", "2026-10-08 10:00", channel="web", status="up")))
    ((_, reason),) = replay.rejections
    assert "no SLA clock" in reason


# --- FCR and CSAT -----------------------------------------------------------------------------


def ticket_events(tid: str, channel: str, day: str, replies: int, **extra: Any) -> list[Any]:
    out = [raw("ticket.created", f"{day} 10:00", ticket_id=tid, channel=channel, priority="P3")]
    for n in range(replies):
        out.append(
            raw("ticket.comment", f"{day} 10:1{n}", ticket_id=tid, author="agent", public=True)
        )
    out.append(raw("ticket.status_changed", f"{day} 11:00", ticket_id=tid, status="solved"))
    if extra.get("reopen"):
        out.append(raw("ticket.status_changed", f"{day} 12:00", ticket_id=tid, status="open"))
        out.append(raw("ticket.status_changed", f"{day} 13:00", ticket_id=tid, status="solved"))
    return out


def test_first_contact_resolution_counts_single_reply_tickets_never_reopened() -> None:
    k = Kpis().feed(
        *ticket_events("A", "email", "2026-10-08", 1),  # first contact
        *ticket_events("B", "email", "2026-10-08", 2),  # two replies
        *ticket_events("C", "email", "2026-10-08", 0),  # no agent reply
        *ticket_events("D", "email", "2026-10-08", 1, reopen=True),  # reopened
        raw("ticket.comment", "2026-10-08 10:20", ticket_id="A", author="agent", public=False),
    )
    row = k.row("email", "2026-10")
    assert (row.solved, row.first_contact, row.fcr) == (4, 1, 0.25)
    assert k.sample("sla_tickets_solved_total", channel="email") == 4
    assert k.sample("sla_first_contact_resolved_total", channel="email") == 2
    assert k.sample("sla_first_contact_reopened_total", channel="email") == 1
    assert row.verdicts()["first_contact_resolution"] is False


def test_ratings_count_once_and_only_for_known_subjects() -> None:
    first = raw("ticket.rated", "2026-10-08 12:00", ticket_id="A", score=5)
    k = Kpis().feed(
        *ticket_events("A", "email", "2026-10-08", 1),
        first,
        first,  # a repeat (same event_id): ignored
        raw("ticket.rated", "2026-10-08 12:05", ticket_id="A", score=3),
        raw("ticket.rated", "2026-10-08 12:05", ticket_id="NOPE", score=1),  # rejected
        raw("session.started", "2026-10-08 12:00", session_id="S", channel="wechat"),
        raw("session.rated", "2026-10-08 12:10", session_id="S", score=4),
    )
    email, wechat = k.row("email", "2026-10"), k.row("wechat", "2026-10")
    assert (email.ratings, email.csat_mean, email.csat_good_share) == (2, 4.0, 0.5)
    assert (wechat.ratings, wechat.csat_mean) == (1, 4.0)
    assert k.replay.stats.duplicates == 1
    assert len(k.replay.rejections) == 1
    assert k.sample("sla_ratings_total", channel="email", score="5") == 1
    assert k.sample("sla_rating_points_total", channel="email") == 8


def test_an_accepted_appeal_undoes_a_first_contact_resolution() -> None:
    k = Kpis().feed(
        *[e | {"tenant": "contract-003"} for e in ticket_events("A", "email", "2026-10-08", 1)],
        raw("ticket.appealed", "2026-10-09 10:00", tenant="contract-003", ticket_id="A"),
    )
    (row,) = [r for r in k.tracker.rows() if r.tenant == "contract-003"]
    assert (row.solved, row.first_contact) == (1, 0)


# --- a generated month with a known answer ----------------------------------------------------

# October 2026 under the statutory reading: National Day 10-01..07 off, Saturday 10-10 a
# make-up working day. The working days, written out from the State Council's notice:
OCTOBER_WORKING_DAYS = [8, 9, 10, 12, 13, 14, 15, 16, 19, 20, 21, 22, 23, 26, 27, 28, 29, 30]
# Outages of the phone channel (local times) and the service minutes each costs (09-18):
OUTAGES = [
    ("2026-10-05 10:00", "2026-10-05 12:00", 0),  # a holiday
    ("2026-10-10 17:00", "2026-10-10 17:30", 30),  # the make-up Saturday: service time
    ("2026-10-12 10:00", "2026-10-12 10:45", 45),
    ("2026-10-18 10:00", "2026-10-18 12:00", 0),  # a Sunday
    ("2026-10-19 10:00", "2026-10-19 10:45", 45),
    ("2026-10-26 10:00", "2026-10-26 10:45", 45),
    ("2026-10-30 17:50", "2026-10-31 09:30", 10),  # straddles the end of service time
]
CHANNELS = ("web", "email", "phone")


def generate_month(seed: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """October's events for tenant contract-004 and, by construction, each channel's KPIs."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    expected = {c: {"solved": 0, "fcr": 0, "ratings": 0, "points": 0, "good": 0} for c in CHANNELS}
    for n in range(240):
        channel = rng.choice(CHANNELS)
        day = rng.choice(OCTOBER_WORKING_DAYS)
        start = datetime(2026, 10, day, 9, tzinfo=BJ) + timedelta(minutes=rng.randrange(400))
        replies = rng.choice((0, 1, 1, 1, 2, 3))
        reopen = rng.random() < 0.2
        at = start

        def later(minutes: int) -> str:
            nonlocal at
            at += timedelta(minutes=minutes)
            return at.isoformat()

        tid = f"G{n}"
        events.append(
            raw("ticket.created", later(0), ticket_id=tid, channel=channel, priority="P3")
        )
        for _ in range(replies):
            events.append(
                raw("ticket.comment", later(7), ticket_id=tid, author="agent", public=True)
            )
        events.append(
            raw("ticket.comment", later(1), ticket_id=tid, author="customer", public=True)
        )
        events.append(raw("ticket.status_changed", later(5), ticket_id=tid, status="solved"))
        if reopen:
            events.append(raw("ticket.status_changed", later(30), ticket_id=tid, status="open"))
            events.append(
                raw("ticket.comment", later(5), ticket_id=tid, author="agent", public=True)
            )
            events.append(raw("ticket.status_changed", later(5), ticket_id=tid, status="closed"))
        expected[channel]["solved"] += 1
        expected[channel]["fcr"] += replies == 1 and not reopen
        if rng.random() < 0.6:
            score = rng.choice((1, 2, 3, 4, 4, 5, 5, 5))
            events.append(raw("ticket.rated", later(60), ticket_id=tid, score=score))
            expected[channel]["ratings"] += 1
            expected[channel]["points"] += score
            expected[channel]["good"] += score >= 4
    for channel in ("phone", "web"):
        events.append(
            raw("channel.status", "2026-10-01T00:00:00+08:00", channel=channel, status="up")
        )
    for down, up, _ in OUTAGES:
        events.append(raw("channel.status", down, channel="phone", status="down"))
        events.append(raw("channel.status", up, channel="phone", status="up"))
    events.sort(key=lambda e: datetime.fromisoformat(e["occurred_at"]))  # stable: ties keep order
    service = len(OCTOBER_WORKING_DAYS) * 9 * 3600
    down = sum(minutes for _, _, minutes in OUTAGES) * 60
    totals = {c: {k: float(v) for k, v in e.items()} for c, e in expected.items()}
    totals["phone"] |= {"service": service, "down": down}
    totals["web"] |= {"service": service, "down": 0}
    return events, totals


def check_rows(rows: list[KpiRow], expected: dict[str, dict[str, float]]) -> None:
    october = {r.channel: r for r in rows if r.tenant == TENANT and r.month == "2026-10"}
    assert set(october) == set(CHANNELS)
    for channel, want in expected.items():
        row = october[channel]
        assert (row.solved, row.first_contact) == (want["solved"], want["fcr"]), channel
        assert (row.ratings, row.points, row.good) == (
            want["ratings"],
            want["points"],
            want["good"],
        ), channel
        assert row.service_seconds == want.get("service", 0), channel
        assert row.unavailable_seconds == want.get("down", 0), channel


def test_a_generated_month_gives_its_known_kpis_in_rows_and_metrics() -> None:
    objs, expected = generate_month(seed=4)
    k = Kpis().feed(*objs).until("2026-11-01 00:00")
    assert k.replay.rejections == []
    check_rows(k.tracker.rows(), expected)
    # the pure computation the report calls agrees with the streaming one
    check_rows(monthly_kpis(k.policies, parsed(*objs), t("2026-11-01 00:00")), expected)
    phone = expected["phone"]
    assert phone["down"] == (30 + 3 * 45 + 10) * 60  # of 18 x 9 = 162 service hours
    assert k.row("phone", "2026-10").availability == pytest.approx(1 - 175 / (162 * 60))
    for channel, want in expected.items():
        assert k.sample("sla_tickets_solved_total", channel=channel) == want["solved"]
        net = (k.sample("sla_first_contact_resolved_total", channel=channel) or 0) - (
            k.sample("sla_first_contact_reopened_total", channel=channel) or 0
        )
        assert net == want["fcr"]
        assert k.sample("sla_rating_points_total", channel=channel) == want["points"]
    assert k.sample("sla_channel_service_seconds_total", channel="phone") == phone["service"]
    assert k.sample("sla_channel_unavailable_seconds_total", channel="phone") == phone["down"]


def test_quarters_sum_the_months_counts() -> None:
    k = Kpis().feed(
        *ticket_events("A", "email", "2026-10-08", 1),
        raw("ticket.rated", "2026-10-08 12:00", ticket_id="A", score=5),
        *ticket_events("B", "email", "2026-11-10", 2),
        raw("ticket.rated", "2026-11-10 12:00", ticket_id="B", score=2),
        *ticket_events("C", "email", "2026-09-08", 1),
    )
    quarters = {r.month: r for r in by_quarter(k.tracker.rows())}
    assert set(quarters) == {"2026-Q3", "2026-Q4"}
    q4 = quarters["2026-Q4"]
    assert (q4.solved, q4.first_contact, q4.ratings, q4.csat_mean, q4.csat_good_share) == (
        2,
        1,
        2,
        3.5,
        0.5,
    )
    assert quarters["2026-Q3"].fcr == 1.0


def test_replay_cli_writes_the_kpi_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    objs, expected = generate_month(seed=9)
    source = tmp_path / "month.jsonl"
    source.write_bytes(b"".join(orjson.dumps(o) + b"\n" for o in objs))
    out = tmp_path / "kpis.jsonl"
    code = main(["replay", str(source), "--until", "2026-11-01T00:00:00+08:00", "--kpis", str(out)])
    assert code == 0
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by_channel = {r["channel"]: r for r in rows if r["month"] == "2026-10"}
    phone = by_channel["phone"]
    assert phone["availability"]["unavailable_seconds"] == expected["phone"]["down"]
    assert phone["availability"]["objective"] == 0.999
    assert phone["first_contact_resolution"]["first_contact"] == expected["phone"]["fcr"]
    assert phone["csat"]["ratings"] == expected["phone"]["ratings"]
    assert phone["verdicts"]["availability"] is False
    assert "0 invalid, 0 rejected" in capsys.readouterr().err


# --- Prometheus rules -------------------------------------------------------------------------


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: run `make test`, which installs Debian's prometheus")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False, cwd=PROM_DIR
    )


def test_kpi_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = _promtool("check", "rules", "kpi-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "kpi-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_kpi_rules_query_only_names_kpi_metrics_register() -> None:
    registry = CollectorRegistry()
    m = KpiMetrics(registry)
    m.channel_status(TENANT, "phone", up=False, objective=0.999)
    m.channel_time(TENANT, "phone", 1, 1)
    m.ticket_solved(TENANT, "email", first_contact=True)
    m.first_contact_undone(TENANT, "email")
    m.rated(TENANT, "email", 5)
    registered = {s.name for family in registry.collect() for s in family.samples}
    groups = yaml.safe_load((PROM_DIR / "kpi-rules.yml").read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    for rule in (r for g in groups for r in g["rules"]):
        expr = rule["expr"]
        for name in metric_names(expr):
            known = recorded if ":" in name else registered
            assert name in known, f"kpi-rules.yml queries {name!r}, which nothing produces"
