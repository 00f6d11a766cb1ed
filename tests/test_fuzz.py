"""Fuzzing at scale (issue 10): hostile input at the decoder and at the engine, zero crashes.

Three properties over at least 11,000 generated hostile inputs in CI (8,000 records at the
decoder, 1,600 events at the engine, 1,500 records among good traffic; Hypothesis,
derandomized, so CI replays the same corpus every run). ``SLA_FUZZ_EXAMPLES=N`` scales them
all (the CI value is 10,000; ``SLA_FUZZ_EXAMPLES=1000000`` runs a hundred times as many):

* **decoder** (:func:`monitor.validation.parse_event`, what the live worker and replay call
  on every record): invalid UTF-8, deep or huge JSON, numbers as timestamps, far-past and
  far-future dates, surrogates, NUL bytes in ids, wrong types, tombstones and empty values
  each give an :class:`InvalidEvent` whose ``code`` is the precise :class:`Reason` and whose
  text is non-empty; nothing else escapes;
* **engine** (:class:`monitor.engine.SlaEngine`, through replay: the oracle the worker is
  tested against): schema-valid events with hostile values (ids with NUL bytes, any
  instant the decoder accepts, years the business calendar does not know, events before
  their subject, repeats, odd status sequences) are applied or refused with a
  :class:`RejectedEvent` / :class:`CalendarError` and a code; a refusal leaves the subject's
  record as it was; every fact serialises as the worker publishes it;
* **isolation**: hostile records interleaved with a known-good hour of traffic leave the good
  subjects' facts exactly as a clean replay gives them.

Schema-valid hostile events in the isolation test are dated no later than the good traffic:
a valid event moves event time even when the engine then refuses it (README, "Event time":
the clock is the largest ``occurred_at`` seen; the worker observes it before the engine runs
too). One refused ``message.sent`` dated 2099 in the good hour changes 15 of its 64 final
verdicts in replay (the deadlines open then fire at once; later ones never fire, the clock
being past them). That is the skewed-producer-clock scenario, open on issue 10, not a decoding
fault; far-future and unknown-year instants are fuzzed by the first two properties.

The live counterpart (the worker dead-letters every hostile record with a reason and a code,
and still emits replay's facts for the good ones) is ``tests/live/test_worker.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monitor import schemas
from monitor.engine import SlaEngine
from monitor.errors import InvalidEvent, Reason
from monitor.policy import load_policy_set
from monitor.sla_event import SlaEvent
from monitor.timeutil import MAX_INSTANT
from monitor.traffic import generate
from monitor.validation import MAX_EVENT_BYTES, parse_event
from monitor.vocabulary import EventType
from tests.fuzzing import Pipeline

# Every test's example count scales with $SLA_FUZZ_EXAMPLES (CI: 10,000). Examples are lists
# of records: Hypothesis spends milliseconds on each example, so one record per example made
# the CI corpus take minutes.
SCALE = int(os.environ.get("SLA_FUZZ_EXAMPLES", "10000")) / 10_000


def examples(ci: int) -> int:
    """The example count of a test whose CI count is ``ci``, scaled."""
    return max(1, round(ci * SCALE))


def fuzz_settings(count: int) -> settings:
    """Reproducible (derandomized, no example database) and untimed: CI sees one corpus."""
    return settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


BEIJING = timezone(timedelta(hours=8))
GOOD_START = datetime(2026, 10, 8, 9, 0, tzinfo=BEIJING)
# The bundled policies: every contract (chat 002, tickets 000/004, 001, 003 tiers and appeals,
# 004 KPIs), PRC calendar with unknown_dates: error, so unknown years really are refused.
TENANTS = ("acme", "contract-001", "contract-003", "contract-004")


@pytest.fixture(scope="module")
def engine() -> SlaEngine:
    return SlaEngine(load_policy_set())


# --- hostile values -------------------------------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "session.started": {"session_id": "S-1", "channel": "web", "priority": "urgent"},
    "message.sent": {"session_id": "S-1", "sender": "agent"},
    "session.closed": {"session_id": "S-1"},
    "session.rated": {"session_id": "S-1", "score": 4},
    "ticket.created": {"ticket_id": "T-1", "channel": "email", "priority": "P1"},
    "ticket.comment": {"ticket_id": "T-1", "author": "agent", "public": True},
    "ticket.priority_changed": {"ticket_id": "T-1", "priority": "P3"},
    "ticket.status_changed": {"ticket_id": "T-1", "status": "pending"},
    "ticket.transferred": {"ticket_id": "T-1", "channel": "web", "designated": True},
    "ticket.appealed": {"ticket_id": "T-1"},
    "ticket.rated": {"ticket_id": "T-1", "score": 2},
    "channel.status": {"channel": "web", "status": "down"},
}
assert set(VALID) == set(EventType)  # a new event type must be fuzzed too


def template(event_type: str, at: str = "2026-10-08T08:00:00+08:00") -> dict[str, Any]:
    return {"event_id": "e-1", "type": event_type, "occurred_at": at, "tenant": "acme"} | VALID[
        event_type
    ]


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
# Text with what producers get wrong: NUL and control bytes, lone surrogates, odd Unicode.
hostile_text = st.text(
    st.characters(codec=None, exclude_categories=()), min_size=0, max_size=40
) | st.sampled_from(["", "\x00", "S-1\x00", "\ud800", "\udfff", "\ufeff", "\u202e", " ", "\n"])


def _offset(minutes: int) -> str:
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}"


# Any RFC 3339 shape from year 0 to 9999 with any offset: far past, far future, years the
# PRC calendar has no data for, and the edges of datetime itself (year 1, year 9999).
rfc3339_any_year = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: (
        f"{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{_offset(off)}"
    ),
    st.one_of(st.integers(0, 9999), st.sampled_from([1, 1969, 1970, 2003, 2027, 8999, 9999])),
    st.integers(1, 12),
    st.integers(1, 31),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 60),
    st.sampled_from(["", ".5", ".999999"]),
    st.sampled_from([0, 0, 480, -60, 840, -720, 1439, -1439]),
)
hostile_timestamps = st.one_of(
    rfc3339_any_year,
    st.integers(min_value=-(2**63), max_value=2**64),  # epoch seconds or millis, as numbers
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "2026-10-08T10:00:00",  # naive
            "2026-10-08",
            "1791888000",
            "1791888000000",
            "2026-10-08 10:00:00+08:00",
            "2026-10-08T10:00:00+08:00\n",
            "２０２６-10-08T10:00:00Z",
            "",
        ]
    ),
    hostile_text,
)


@dataclass(frozen=True)
class Record:
    """A hostile record and the dead-letter codes it may get (empty: it may be valid)."""

    value: bytes | None
    codes: frozenset[Reason]
    what: str

    def __repr__(self) -> str:  # a failing example stays readable (values reach 256 KiB)
        value = self.value if self.value is None or len(self.value) < 300 else self.value[:300]
        return f"Record({value!r}{'...' if value != self.value else ''}, {self.what!r})"


def _encode(obj: object, ascii_only: bool) -> bytes:
    # json, not orjson: orjson refuses to write lone surrogates, and producers do send them
    # (as \ud800 escapes, or CESU-8 bytes that are not UTF-8).
    return json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def mutated_events(draw: st.DrawFn) -> Record:
    """A valid event with one field made hostile, and the code that field must produce."""
    event_type = draw(st.sampled_from(sorted(VALID)))
    obj = template(event_type)
    how = draw(st.sampled_from(["drop", "value", "text", "timestamp"]))
    field = "occurred_at" if how == "timestamp" else draw(st.sampled_from(sorted(obj)))
    codes: frozenset[Reason] = frozenset()  # a hostile value may still be a valid one
    if how == "drop":
        del obj[field]
        if not (field == "priority" and event_type == "session.started"):  # optional
            codes = frozenset({Reason.MISSING_FIELD})
    elif how == "value":
        obj[field] = draw(json_values)
    elif how == "text":
        obj[field] = draw(hostile_text)
    else:
        obj[field] = draw(hostile_timestamps)
    ascii_only = draw(st.booleans())
    return Record(_encode(obj, ascii_only), codes, f"{how} {field} of {event_type}")


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@st.composite
def raw_records(draw: st.DrawFn) -> Record:
    """Records that are not events at all, each with the code it must get."""
    kind = draw(
        st.sampled_from(
            ["bytes", "utf8", "deep", "huge", "truncated", "scalar", "tombstone", "empty", "type"]
        )
    )
    good = orjson.dumps(template(draw(st.sampled_from(sorted(VALID)))))
    if kind == "bytes":
        return Record(draw(st.binary(max_size=300)), frozenset(), "random bytes")
    if kind == "utf8":  # invalid UTF-8 inside an otherwise valid event
        bad = draw(st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"]))
        cut = good.index(b'"e-1"') + 2
        return Record(good[:cut] + bad + good[cut:], frozenset({Reason.JSON}), "invalid UTF-8")
    if kind == "deep":
        depth = draw(st.integers(1, 5000))
        shape = draw(st.sampled_from(["array", "object"]))
        # orjson refuses more than 1024 levels; a shallower object just lacks its fields.
        code = Reason.MISSING_FIELD if shape == "object" and depth <= 1024 else Reason.JSON
        return Record(_nested(depth, shape), frozenset({code}), f"{depth} deep {shape}")
    if kind == "huge":
        size = draw(st.integers(MAX_EVENT_BYTES - 300, 4 * MAX_EVENT_BYTES))
        pad = draw(st.sampled_from(["x", "\u4e2d", "[0,", "\\u0000"]))
        value = good[:-1] + b',"pad":"' + (pad * size).encode()[:size] + b'"}'
        # Up to the limit a big event is still an event (or, cut mid-character, not JSON).
        codes = frozenset({Reason.TOO_LARGE}) if len(value) > MAX_EVENT_BYTES else frozenset()
        return Record(value, codes, f"{len(value)} bytes")
    if kind == "truncated":
        cut = draw(st.integers(0, len(good) - 1))
        return Record(good[:cut], frozenset({Reason.JSON}), "truncated JSON")
    if kind == "scalar":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return Record(_encode(value, True), frozenset({Reason.JSON}), "not an object")
    if kind == "tombstone":
        return Record(None, frozenset({Reason.TOMBSTONE}), "tombstone")
    if kind == "empty":
        blank = draw(st.sampled_from([b"", b" ", b"\n", b"\x00", b"\xef\xbb\xbf", b"null"]))
        return Record(blank, frozenset({Reason.JSON}), "empty value")
    unknown = draw(hostile_text.filter(lambda t: t not in VALID))
    obj = orjson.loads(good) | {"type": unknown}
    codes = {Reason.UNKNOWN_TYPE, Reason.SCHEMA}  # schema: longer than a type may be
    if any("\ud800" <= c <= "\udfff" for c in unknown):
        codes = {Reason.JSON}  # a lone surrogate is no Unicode text: orjson refuses it
    return Record(_encode(obj, True), frozenset(codes), f"type {unknown!r}")


@st.composite
def precise_records(draw: st.DrawFn) -> Record:
    """Valid events with exactly one precise defect, and the one code it must get."""
    event_type = draw(st.sampled_from(sorted(VALID)))
    obj = template(event_type)
    defect = draw(st.sampled_from(["number_at", "out_of_range", "naive", "nul_type"]))
    if defect == "number_at":
        obj["occurred_at"] = draw(st.integers(0, 2**53) | st.floats(0, 1e18))
        return Record(_encode(obj, True), frozenset({Reason.SCHEMA}), "numeric occurred_at")
    if defect == "out_of_range":
        year = draw(st.sampled_from([1, 1000, 1969, 9000, 9999]))
        obj["occurred_at"] = f"{year:04}-06-01T00:00:00Z"
        return Record(_encode(obj, True), frozenset({Reason.TIMESTAMP}), f"year {year}")
    if defect == "naive":
        obj["occurred_at"] = obj["occurred_at"][:19]
        return Record(_encode(obj, True), frozenset({Reason.TIMESTAMP}), "naive")
    obj["type"] = event_type + "\x00"
    return Record(_encode(obj, True), frozenset({Reason.UNKNOWN_TYPE}), "NUL in type")


hostile_records = st.one_of(raw_records(), mutated_events(), precise_records())


# --- 1. the decoder -------------------------------------------------------------------------


def test_the_decoder_dead_letters_every_hostile_record_with_its_code(engine: SlaEngine) -> None:
    seen = 0
    codes: set[Reason] = set()

    @fuzz_settings(examples(800))
    @given(st.lists(hostile_records, min_size=10, max_size=10))
    def decode(records: list[Record]) -> None:
        nonlocal seen
        pipeline = Pipeline(engine)
        for record in records:
            seen += 1
            letter = pipeline.decode(record.value)
            if letter is None:  # a valid event after all
                assert not record.codes, record
                continue
            codes.add(letter.code)
            if record.codes:
                assert letter.code in record.codes, (record, letter)

    decode()
    print(f"fuzz: {seen} hostile records at the decoder, codes {sorted(codes)}")
    assert seen >= 10 * examples(800)
    # The corpus reaches every code the decoder and the tombstone check can give.
    expected = {
        Reason.JSON,
        Reason.TOO_LARGE,
        Reason.UNKNOWN_TYPE,
        Reason.MISSING_FIELD,
        Reason.TIMESTAMP,
        Reason.SCHEMA,
        Reason.TOMBSTONE,
    }
    assert codes >= expected, expected - codes


# --- 2. the engine --------------------------------------------------------------------------

# "web" is also a channel: channel.status and a ticket named like it share a store key.
subject_ids = st.sampled_from(
    ["S-1", "S-2", "T-1", "T-2", "web", "\x00", "S-1\x00", "\ud7ff", "x" * 256]
)
# Instants the decoder accepts, from the epoch to just before 9000: the PRC calendar knows
# only some years of them (unknown_dates: error), so most are refused with code calendar.
valid_instants = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis adds the time zone
        max_value=datetime(8999, 12, 30),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, BEIJING, timezone(timedelta(hours=-12))]),
    ).map(lambda d: d.isoformat()),
    st.integers(0, 90 * 86400).map(
        lambda s: (GOOD_START + timedelta(seconds=s)).isoformat()  # inside known years
    ),
    st.sampled_from(["1970-01-01T00:00:00Z", "8999-12-31T23:59:59.999999Z"]),
)


@st.composite
def valid_hostile_events(draw: st.DrawFn, subjects: st.SearchStrategy[str]) -> bytes:
    event_type = draw(st.sampled_from(sorted(VALID)))
    obj = template(event_type, draw(valid_instants))
    subject = draw(subjects)
    for key in ("session_id", "ticket_id"):
        if key in obj:
            obj[key] = subject
    obj["event_id"] = draw(st.sampled_from(["e-1", "e-2", "e-3", "\x00", "e\x00"]))
    obj["tenant"] = draw(st.sampled_from([*TENANTS, "\x00", "contract-003\x00"]))
    for key, values in (
        ("priority", ["P1", "P2", "P3", "P4"] if "ticket_id" in obj else ["urgent", "normal"]),
        ("status", ["open", "pending", "on_hold", "solved", "closed"]),
        ("sender", ["customer", "agent", "bot", "system"]),
        ("author", ["customer", "agent", "bot"]),
        ("score", [1, 3, 5, 5.0]),
        ("public", [True, False]),
        ("designated", [True, False]),
        ("channel", ["web", "email", "\x00", "c" * 64]),
    ):
        if key in obj:
            obj[key] = draw(st.sampled_from(values))
    if event_type == "channel.status":  # its status is up/down, its channel its subject
        obj["status"] = draw(st.sampled_from(["up", "down"]))
        obj["channel"] = subject
    return _encode(obj, draw(st.booleans()))


# Found by a long run (SLA_FUZZ_EXAMPLES=50000), kept as an example CI always runs: a channel
# named like a ticket shares its store key ("t:web"), and the engine met a channel.status with
# that ticket's record (a KeyError that stopped `sla-monitor replay`).
COLLIDING = [
    orjson.dumps(template("ticket.created") | {"ticket_id": "web"}),
    orjson.dumps(template("channel.status") | {"event_id": "e-2", "channel": "web"}),
    orjson.dumps(template("ticket.comment") | {"event_id": "e-3", "ticket_id": "web"}),
    orjson.dumps(template("channel.status") | {"event_id": "e-4", "channel": "web"}),
]


def test_the_engine_applies_or_refuses_hostile_valid_events(engine: SlaEngine) -> None:
    seen = 0
    codes: set[Reason] = set()

    @fuzz_settings(examples(400))
    @given(st.lists(valid_hostile_events(subject_ids), min_size=4, max_size=10))
    @example(COLLIDING)
    def run(records: list[bytes]) -> None:
        nonlocal seen
        pipeline = Pipeline(engine)
        for record in records:
            seen += 1
            letter = pipeline.feed(record)
            if letter is not None:
                codes.add(letter.code)
        # Every open clock runs out: deadlines near the top of the range still format.
        pipeline.finish(MAX_INSTANT - 1)

    run()
    print(f"fuzz: {seen} hostile valid events at the engine, codes {sorted(codes)}")
    assert seen >= 4 * examples(400)
    assert {Reason.CALENDAR, Reason.UNKNOWN_SUBJECT} <= codes, codes


# --- 3. isolation: good traffic keeps its facts ---------------------------------------------


def good_traffic() -> list[bytes]:
    """An hour of realistic traffic of every tenant's contract (monitor.traffic)."""
    events = generate(GOOD_START, 1.0, seed=11, tenants=TENANTS)
    return [orjson.dumps(e) for e in events]


UNTIL = (GOOD_START + timedelta(days=30)).astimezone(UTC)
GOOD_FROM = int(GOOD_START.timestamp()) * 1_000_000


def not_after_the_good_start(value: bytes | None) -> bool:
    """False for a valid event dated after the good traffic begins (see the module doc)."""
    if value is None:
        return True
    try:
        return parse_event(value).occurred_at <= GOOD_FROM
    except InvalidEvent:
        return True


def facts_of(pipeline: Pipeline, subjects: set[str]) -> list[SlaEvent]:
    """The facts about ``subjects``, in order (every field compared: ids, kinds, instants)."""
    return [fact for fact in pipeline.facts if fact.subject_id in subjects]


@st.composite
def early_valid_events(draw: st.DrawFn) -> bytes:
    """Schema-valid hostile events on subjects of their own, dated before the good traffic
    (see the module doc): the engine applies them, or refuses them (unknown subject, years
    the calendar lacks)."""
    raw = draw(valid_hostile_events(st.sampled_from(["X-1", "X-2", "X\x00"])))
    obj = json.loads(raw.decode("utf-8", "surrogatepass"))
    latest = GOOD_START.astimezone(UTC).replace(tzinfo=None)
    when = draw(
        st.datetimes(min_value=datetime(1970, 1, 2), max_value=latest)  # noqa: DTZ001
    )
    obj["occurred_at"] = when.isoformat() + "Z"
    if obj["type"] == "channel.status":
        obj["channel"] = "X-channel"
    return _encode(obj, True)


GOOD = good_traffic()
GOOD_SESSIONS = sorted({str(e["session_id"]) for e in map(json.loads, GOOD) if "session_id" in e})
GOOD_TICKETS = sorted({str(e["ticket_id"]) for e in map(json.loads, GOOD) if "ticket_id" in e})


@st.composite
def refused_on_good_subjects(draw: st.DrawFn) -> bytes | None:
    """A record that must be refused (it has an expected code), aimed at a good session or
    ticket: a producer's broken event for a live subject must leave that subject alone."""
    record = draw(hostile_records.filter(lambda r: bool(r.codes)))
    try:
        obj = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        return record.value
    if not isinstance(obj, dict):
        return record.value
    for key, pool in (("session_id", GOOD_SESSIONS), ("ticket_id", GOOD_TICKETS)):
        if key in obj:
            obj[key] = draw(st.sampled_from(pool))
    return _encode(obj, True)


def test_hostile_records_do_not_change_the_facts_of_good_traffic(engine: SlaEngine) -> None:
    good = GOOD
    subjects = {*GOOD_SESSIONS, *GOOD_TICKETS}
    clean = Pipeline(engine)
    for record in good:
        assert clean.feed(record) is None
    clean.finish(int(UNTIL.timestamp() * 1_000_000))
    expected = facts_of(clean, subjects)
    assert len(expected) > 50  # the good hour produces facts of every kind worth comparing
    seen = 0

    @fuzz_settings(examples(250))
    @given(
        st.lists(
            st.tuples(
                st.integers(0, len(good)),
                st.one_of(
                    hostile_records.map(lambda r: r.value).filter(not_after_the_good_start),
                    refused_on_good_subjects(),
                    early_valid_events(),
                ),
            ),
            min_size=6,
            max_size=15,
        )
    )
    def run(insertions: list[tuple[int, bytes | None]]) -> None:
        nonlocal seen
        stream: list[bytes | None] = list(good)
        for position, record in sorted(insertions, key=lambda p: -p[0]):
            stream.insert(position, record)
        pipeline = Pipeline(engine, serialise=False)  # test 2 checks the serialisation
        hostile_subjects: set[str] = set()
        for record in stream:
            letter = pipeline.feed(record)
            if letter is None and record is not None and record not in good:
                # A hostile record that decodes must be on a subject of its own (or it would
                # rightly change a good subject's facts): records aimed at good subjects are
                # all ones that must be refused.
                hostile_subjects.add(parse_event(record).subject_id)
        seen += len(insertions)
        pipeline.finish(int(UNTIL.timestamp() * 1_000_000))
        assert not hostile_subjects & subjects, hostile_subjects & subjects
        assert facts_of(pipeline, subjects) == expected

    run()
    print(f"fuzz: {seen} hostile records among {len(good)} good events, facts unchanged")
    assert seen >= 6 * examples(250)


# --- the facts are what the schema promises -------------------------------------------------


def test_facts_of_hostile_valid_events_match_the_sla_event_schema(engine: SlaEngine) -> None:
    """A sample (the full validator costs a millisecond a fact): facts born of hostile but
    valid events (NUL ids, year-8999 instants) are still what consumers were promised."""
    validator = schemas.validator(schemas.SLA_EVENT)

    @fuzz_settings(examples(100))
    @given(st.lists(valid_hostile_events(subject_ids), min_size=1, max_size=6))
    def run(records: list[bytes]) -> None:
        pipeline = Pipeline(engine)
        for record in records:
            pipeline.feed(record)
        pipeline.finish(MAX_INSTANT - 1)
        for fact in pipeline.facts:
            if fact.kind == "escalation":
                continue  # schemas/tier-escalation.schema.json, checked in test_schemas
            doc = fact.to_dict(engine.timezone_of(fact.policy))
            errors = [e.message for e in validator.iter_errors(doc)]
            assert not errors, (errors, doc)

    run()
