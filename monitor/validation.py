"""Raw input (a Kafka message value, a JSONL line) to a validated :class:`~monitor.events.Event`.

Called by the Kafka consumer and by replay for every input event, so it sits on the hot path
(replay targets 100k events/s in one process). Two paths, one source of truth:

* The **fast path** checks a well-formed event against a per-type plan compiled once from
  ``schemas/events/*.schema.json`` by :mod:`monitor.event_plans` (type, length bounds, enums,
  patterns, required, defaults) and builds the record. It only answers "valid" or "no".
* When the fast path says no, the **slow path** runs the full draft 2020-12 validator on the
  same schema files to produce a precise reason and path for :class:`InvalidEvent`.

The compiler refuses a schema it cannot check exactly (:class:`ConfigError`), so an edited
schema cannot silently loosen the fast path. ``tests/test_validation.py`` checks, with
Hypothesis, that both paths agree.

One rule is not expressible as a pattern: the timestamp must be a real instant (no month 13,
no 25:00). Both paths apply :func:`monitor.timeutil.parse_rfc3339` after the schema.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from jsonschema.exceptions import ValidationError

from monitor import schemas
from monitor.errors import InvalidEvent, Reason
from monitor.event_plans import (
    RFC3339_PATTERN,
    SLOTS,
    BoolField,
    EnumField,
    Field,
    IntField,
    Plan,
    compile_plans,
)
from monitor.events import AGENT_STATUS, AgentPresence, AgentStatus, Event
from monitor.timeutil import parse_rfc3339

MAX_EVENT_BYTES: Final = 64 * 1024
"""Larger raw events are rejected before parsing: no producer needs more, and a runaway one
must not make the consumer allocate without bound."""

_MISSING: Final = object()
_RFC3339: Final = re.compile(RFC3339_PATTERN)
_OCCURRED_AT: Final = SLOTS["occurred_at"]
_new_event: Final = tuple.__new__
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO: Final = timedelta(microseconds=1)

# Compiled lazily on first use, so importing this module never touches the file system;
# reload_schemas() resets it.
_plans: dict[str, Plan] | None = None


def reload_schemas() -> None:
    """Recompiles the fast-path tables from the schema directory (after changing it)."""
    global _plans  # noqa: PLW0603 - one module-level cache, reset on purpose
    schemas.clear_cache()
    _plans = None


def parse_event(raw: bytes | str) -> Event:
    """Parses and validates one raw input event. Raises :class:`InvalidEvent`.

    Called by the Kafka consumer (message value) and by replay (one JSONL line).
    """
    size = len(raw)
    if size > MAX_EVENT_BYTES or (isinstance(raw, str) and size * 4 > MAX_EVENT_BYTES):
        _check_size(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _undecodable(raw, exc) from None
    event = _fast_path(obj)  # event_from_dict, written out: one call less per event
    if event is None:
        raise explain(obj)
    return event


def event_from_dict(obj: object) -> Event:
    """Validates an already-decoded JSON value and builds the record. Raises InvalidEvent.

    :func:`parse_event` for callers that decode the JSON themselves (the report's input
    sources, tests); parse_event spells these lines out rather than call it, one call less per
    event.
    """
    event = _fast_path(obj)
    if event is None:
        raise explain(obj)
    return event


def explain(obj: object) -> InvalidEvent:
    """The precise reason why ``obj`` is not a valid event, from the full schema validator.

    Only called when the fast path rejected ``obj``; slow (about a millisecond), which is fine
    for the rare bad event.
    """
    if not isinstance(obj, dict):
        return InvalidEvent(f"expected a JSON object, got {_json_type(obj)}", code=Reason.JSON)
    errors = list(schemas.validator(schemas.ENVELOPE).iter_errors(obj))
    if errors:
        return min((_describe(e) for e in errors), key=lambda d: d[0])[1]
    try:
        parse_rfc3339(obj["occurred_at"])
    except ValueError as exc:
        return InvalidEvent(str(exc), "occurred_at", code=Reason.TIMESTAMP)
    # Unreachable unless the table compiler and the schema disagree; the Hypothesis test in
    # tests/test_validation.py exists to keep it that way.
    return InvalidEvent(
        "the schema accepts this event but the fast path does not (a bug)", code=Reason.INTERNAL
    )


# --- fast path ------------------------------------------------------------------------------


def _fast_path(obj: object) -> Event | None:
    """The record if ``obj`` is valid, else None. Never raises; allocates nothing on errors.

    This is the hot loop of replay, hence the flat tuples instead of attribute lookups.
    """
    if not isinstance(obj, dict):
        return None
    plans = _plans if _plans is not None else _compile_plans()
    event_type = obj.get("type")
    if not isinstance(event_type, str):  # also keeps unhashable values away from plans.get
        return None
    plan = plans.get(event_type)
    if plan is None:
        return None
    template, strings, enums, booleans, integers, optional, instant = plan
    args: list[Any] = list(template)
    # Required properties: get() gives None for an absent one, and None fails every check.
    for name, slot, lo, hi, patterns in strings:
        value = obj.get(name)
        if not isinstance(value, str) or not lo <= len(value) <= hi:
            return None
        if patterns:
            for pattern in patterns:
                if pattern.search(value) is None:
                    return None
        if slot >= 0:
            args[slot] = value
    for name, slot, accepted in enums:
        value = obj.get(name)
        # isinstance first: an unhashable value (a list) must not reach the dict lookup.
        if not isinstance(value, str):
            return None
        value = accepted.get(value)  # what the record stores; never None
        if value is None:
            return None
        if slot >= 0:
            args[slot] = value
    for name, slot in booleans:
        value = obj.get(name)
        if value is not True and value is not False:
            return None
        if slot >= 0:
            args[slot] = value
    if integers:  # ratings only; a test is cheaper than entering an empty loop
        for number in integers:
            value = _integer(number, obj.get(number.name))
            if value is None:
                return None
            if number.slot >= 0:
                args[number.slot] = value
    for field in optional:  # rare: the template already holds their defaults
        value = obj.get(field.name, _MISSING)
        if value is not _MISSING:
            value = _check(field, value)
            if value is _MISSING:
                return None
            if field.slot >= 0:
                args[field.slot] = value
    at = instant(args[_OCCURRED_AT])
    if at is None:
        return None
    args[_OCCURRED_AT] = at
    return _new_event(Event, args)  # Event._make without its length check: args fits


def _integer(field: IntField, value: object) -> int | None:
    """The value of an integer property, or None when it is not one in range."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not field.low <= value <= field.high:  # bool is no integer
        return None
    return value


def _check(field: Field, value: object) -> object:
    """What the record stores for a present optional property; _MISSING if it is invalid.

    The same checks as the fast path's loops over required properties."""
    if isinstance(field, BoolField):
        return value if value is True or value is False else _MISSING
    if isinstance(field, IntField):
        number = _integer(field, value)
        return _MISSING if number is None else number
    if not isinstance(value, str):
        return _MISSING
    if isinstance(field, EnumField):
        return field.accepted.get(value, _MISSING)
    if not field.min_len <= len(value) <= field.max_len:
        return _MISSING
    if any(pattern.search(value) is None for pattern in field.patterns):
        return _MISSING
    return value


def _instant(text: str) -> int | None:
    """The instant of a timestamp the schema pattern accepted; None if it names no real time.

    The pattern guarantees the shape and the offset; fromisoformat rejects impossible dates
    and times (month 13, 25:00, second 60). Integer division keeps microseconds exact.
    """
    try:
        return (datetime.fromisoformat(text) - _EPOCH) // _MICRO
    except ValueError:
        return None


# "YYYY-MM-DDThh:mm" -> (its offset as written, the instant the minute starts, the length of
# a timestamp of it without a fraction), for _instant_by_minute. Bounded; cleared when full.
_minutes: dict[str, tuple[str, int, int]] = {}
_MINUTES_KEPT: Final = 4096
# Seconds as written -> microseconds; fromisoformat accepts 00-59, the pattern allows 00-99.
_SECONDS: Final = {f"{s:02}": s * 1_000_000 for s in range(60)}


def _instant_by_minute(text: str) -> int | None:
    """:func:`_instant` for timestamps that must match :data:`RFC3339_PATTERN`, which this
    checks too (the compiler drops the pattern from the field when it uses this).

    The regular expression and the datetime arithmetic are half of the fast path's time, yet
    the events of one minute differ only in their seconds and fraction: plain digits that
    fromisoformat accepts whatever they are, except a second of 60 or more. So each minute
    is checked and parsed once, the exact way, and each event of it only checks and adds its
    own seconds and fraction.
    """
    # Layout: [0:16] "YYYY-MM-DDThh:mm", [16] ":", [17:19] seconds, then "." and 1 to 6
    # digits or nothing, then the offset: "Z", "+hh:mm" or "-hh:mm". A remembered minute and
    # offset passed the pattern; ending with that offset, the text has exactly that offset
    # ("$" would let a trailing newline through, but no remembered offset ends with one).
    minute = _minutes.get(text[:16])
    # (Slices, not indexing, here and below: they cannot raise on a short text.)
    if minute is None or not text.endswith(minute[0]) or text[16:17] != ":":
        return _remember_minute(text)
    seconds = _SECONDS.get(text[17:19])  # two ASCII digits, 00 to 59
    if seconds is None:
        return _remember_minute(text)  # rejects it, the exact way
    offset, start, plain = minute
    if len(text) == plain:
        return start + seconds
    fraction = text[19 : len(text) - len(offset)]
    digits = fraction[1:]
    if fraction[:1] != "." or len(digits) > 6 or not (digits.isascii() and digits.isdigit()):
        return _remember_minute(text)
    return start + seconds + int(digits.ljust(6, "0"))


def _remember_minute(text: str) -> int | None:
    """:func:`_instant_by_minute` the exact way, remembering where the minute starts."""
    if _RFC3339.search(text) is None:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    instant: int = (at - _EPOCH) // _MICRO
    if len(_minutes) >= _MINUTES_KEPT:
        _minutes.clear()
    offset = "Z" if text[-1] == "Z" else text[-6:]
    start = instant - at.second * 1_000_000 - at.microsecond
    _minutes[text[:16]] = (offset, start, 19 + len(offset))
    return instant


def _compile_plans() -> dict[str, Plan]:
    """Compiles the per-type plans (once; see reload_schemas)."""
    global _plans  # noqa: PLW0603 - fills the module-level cache
    _plans = compile_plans(_instant, _instant_by_minute)
    return _plans


# --- slow path: reasons ---------------------------------------------------------------------


def _check_size(raw: bytes | str) -> None:
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            f"event is {size} bytes, over the limit of {MAX_EVENT_BYTES} bytes",
            code=Reason.TOO_LARGE,
        )


def _undecodable(raw: bytes | str, exc: orjson.JSONDecodeError) -> InvalidEvent:
    try:
        if isinstance(raw, bytes):
            raw.decode("utf-8")
        else:
            raw.encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError) as bad:
        return InvalidEvent(f"not UTF-8: {bad.reason} at position {bad.start}", code=Reason.JSON)
    return InvalidEvent(
        f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", code=Reason.JSON
    )


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(error: ValidationError) -> tuple[tuple[int, str], InvalidEvent]:
    """A ranked, readable InvalidEvent for one schema error.

    Rank: a bad ``type`` first (everything else depends on it), then missing fields, then the
    rest by path, so the same event always gets the same reason.
    """
    path = ".".join(str(p) for p in error.absolute_path)
    value: Any = error.instance
    expected: Any = error.validator_value
    keyword = error.validator
    if keyword == "required":
        missing = [p for p in expected if p not in value]
        name = missing[0] if missing else "?"
        what = value.get("type") if isinstance(value, dict) else None
        reason = f"missing (required for {what} events)" if what else "missing (required)"
        return (0 if name == "type" else 1, name), InvalidEvent(
            reason, name, code=Reason.MISSING_FIELD
        )
    rank = 0 if path == "type" else 2
    code = Reason.SCHEMA
    if keyword == "type":
        reason = f"expected {expected}, got {_json_type(value)}"
    elif keyword == "enum" and path == "type":
        reason = f"unknown event type {value!r}"
        code = Reason.UNKNOWN_TYPE
    elif keyword in {"enum", "const"}:
        allowed = expected if keyword == "enum" else [expected]
        reason = f"{value!r} is not one of {', '.join(map(str, allowed))}"
    elif keyword == "maxLength":
        reason = f"too long: {len(value)} characters, at most {expected} allowed"
    elif keyword == "minLength":
        reason = "must not be empty" if expected == 1 else error.message
    elif keyword == "pattern" and path == "occurred_at":
        reason = _timestamp_reason(value)
        code = Reason.TIMESTAMP
    else:
        reason = error.message
    return (rank, path), InvalidEvent(reason, path, code=code)


def _timestamp_reason(text: str) -> str:
    """Why ``text`` is not an RFC 3339 timestamp with offset; naive ones get a clear word."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return (
            f"{text!r} is not an RFC 3339 date-time "
            "(expected YYYY-MM-DDThh:mm:ss[.ffffff] then Z or +hh:mm)"
        )
    if value.tzinfo is None:
        return f"{text!r} has no UTC offset (naive timestamps are ambiguous)"
    return (
        f"{text!r} is not in RFC 3339 form (expected YYYY-MM-DDThh:mm:ss[.ffffff] then Z or +hh:mm)"
    )


__all__ = [
    "MAX_EVENT_BYTES",
    "RFC3339_PATTERN",
    "agent_status_from_dict",
    "event_from_dict",
    "explain",
    "parse_agent_status",
    "parse_event",
    "reload_schemas",
]


# --- agent presence (issue 8) ---------------------------------------------------------------

AGENT_SCHEMA: Final = "events/agent.status.schema.json"


def parse_agent_status(raw: bytes | str) -> AgentStatus:
    """Parses and validates one ``agent.status`` event (topic ``agents``). Raises InvalidEvent.

    The full schema validator, not the fast path's tables: presence changes are rare (a few
    per agent and shift, against hundreds of messages), and ``channels`` is an array, which
    the table compiler does not handle.
    """
    if len(raw) > MAX_EVENT_BYTES:
        _check_size(raw)
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _undecodable(raw, exc) from None
    return agent_status_from_dict(obj)


def agent_status_from_dict(obj: object) -> AgentStatus:
    """Validates a decoded ``agent.status`` object and builds the record."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {_json_type(obj)}", code=Reason.JSON)
    if obj.get("type") != AGENT_STATUS:
        raise InvalidEvent(
            f"{obj.get('type')!r} is not {AGENT_STATUS} (topic agents)",
            "type",
            code=Reason.MISROUTED,
        )
    errors = list(schemas.validator(AGENT_SCHEMA).iter_errors(obj))
    if errors:
        raise min((_describe(e) for e in errors), key=lambda d: d[0])[1]
    try:
        at = parse_rfc3339(obj["occurred_at"])
    except ValueError as exc:
        raise InvalidEvent(str(exc), "occurred_at", code=Reason.TIMESTAMP) from None
    return AgentStatus(
        obj["event_id"],
        at,
        obj["tenant"],
        obj["agent_id"],
        AgentPresence(obj["status"]),
        tuple(obj["channels"]),
    )
