"""The schema -> plan compiler behind :mod:`monitor.validation`'s fast path.

Reads ``schemas/events/*.schema.json`` (through :mod:`monitor.schemas`) and compiles, per event
type, a :class:`Plan`: the record's template, and its properties grouped by JSON type with
every constraint worked out once (type, length bounds, enums, patterns, required, defaults).
It accepts only the schema keywords it implements and refuses a schema that uses any other
(:class:`ConfigError`), so an edited schema cannot silently loosen the fast path.

Caller: :mod:`monitor.validation`, on its first event and after ``reload_schemas()``; it
keeps the plans and hands in the timestamp converters (they are the fast path's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

from referencing._core import Resolver

from monitor import schemas
from monitor.errors import ConfigError
from monitor.events import Event
from monitor.vocabulary import (
    CHANNEL_EVENT_TYPES,
    CHAT_EVENT_TYPES,
    Actor,
    ChannelStatus,
    EventType,
    SubjectType,
    TicketStatus,
)

RFC3339_PATTERN: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})$"
)
"""The ``occurred_at`` pattern of ``schemas/events/common.schema.json``: while the schema says
exactly this, the fast path checks and converts timestamps a minute at a time
(monitor.validation's _instant_by_minute)."""
_ACTORS: Final = {a.value: a for a in Actor}
_STATUSES: Final = {s.value: s for s in TicketStatus}
_CHANNEL_STATUSES: Final = {s.value: s for s in ChannelStatus}

# Keywords the table compiler understands. Annotations have no effect on validity ("format" is
# an annotation in draft 2020-12 unless a format checker is switched on, and we switch none on).
_ANNOTATIONS: Final = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "default", "format"}
)
_FIELD_KEYWORDS: Final = _ANNOTATIONS | {
    "$ref",
    "type",
    "enum",
    "const",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
}
_OBJECT_KEYWORDS: Final = _ANNOTATIONS | {
    "$ref",
    "$defs",
    "type",
    "allOf",
    "properties",
    "required",
    "additionalProperties",
}


class StrField(NamedTuple):
    """A string property checked by length and patterns (unpacked in the hot loop)."""

    name: str
    slot: int  # position in Event's arguments; -1: checked but not recorded
    min_len: int
    max_len: int
    patterns: tuple[re.Pattern[str], ...]


class EnumField(NamedTuple):
    """A string property limited to a set of values (``enum``/``const``).

    ``accepted`` maps each value that passes *every* constraint of the property (the enum
    intersected with any length bounds and patterns, worked out once by the compiler) to what
    the record stores: the string itself, or its enum member (sender, author, status). So the
    hot loop needs one dict lookup, not a set test plus length and pattern checks plus a
    conversion.
    """

    name: str
    slot: int
    accepted: Mapping[str, object]


class BoolField(NamedTuple):
    name: str
    slot: int


class IntField(NamedTuple):
    """An integer property within ``[low, high]`` (a rating's score). JSON Schema counts
    5.0 as an integer and ``true`` as none: so does monitor.validation's ``_integer``."""

    name: str
    slot: int
    low: int | float
    high: int | float


Field = StrField | EnumField | BoolField | IntField
InstantParser = Callable[[str], int | None]
"""A timestamp (checked by the schema) to its instant, or None when it names no real time."""


class Plan(NamedTuple):
    """Everything the fast path needs for one event type, fields grouped by JSON type so
    that the hot loop has no per-field dispatch."""

    # Event's arguments with the constants (type, subject_type) and the defaults of optional
    # properties filled in.
    template: tuple[object, ...]
    strings: tuple[StrField, ...]  # required properties, by JSON type
    enums: tuple[EnumField, ...]
    booleans: tuple[BoolField, ...]
    integers: tuple[IntField, ...]
    optional: tuple[Field, ...]  # checked only when present
    instant: InstantParser  # occurred_at (checked by the schema) to an instant


# Event's positional arguments by field name (the fast path fills args[SLOTS[name]]); the JSON
# names that differ map onto them.
SLOTS: Final = {name: i for i, name in enumerate(Event._fields)}
_JSON_TO_SLOT: Final = {
    "session_id": "subject_id",
    "ticket_id": "subject_id",
    "sender": "actor",
    "author": "actor",
}
# Per event type: channel.status says "status" (up/down) for what the record calls
# channel_status, and its channel is its subject (the Kafka key) too.
_TYPE_JSON_TO_SLOT: Final = {(EventType.CHANNEL_STATUS.value, "status"): "channel_status"}
_CONVERT: Final[dict[str, Mapping[str, object]]] = {
    "actor": _ACTORS,
    "status": _STATUSES,
    "channel_status": _CHANNEL_STATUSES,
}


def compile_plans(exact: InstantParser, by_minute: InstantParser) -> dict[str, Plan]:
    """Compiles the per-type plans from the schema files. Raises ConfigError for a schema
    the fast path cannot check exactly.

    ``exact`` and ``by_minute`` convert a timestamp the schema accepted (None: no real
    instant); ``by_minute`` checks :data:`RFC3339_PATTERN` itself and is chosen while the
    schema's ``occurred_at`` pattern is exactly that one.
    """
    envelope = schemas.load_schema(schemas.ENVELOPE)
    type_names = envelope.get("properties", {}).get("type", {}).get("enum")
    if not isinstance(type_names, list) or sorted(type_names) != sorted(EventType):
        raise ConfigError(
            f"{schemas.ENVELOPE}: properties.type.enum {type_names!r} must list exactly the "
            f"event types of monitor.vocabulary.EventType"
        )
    # The fast path dispatches on type itself, so the envelope may say nothing more than that.
    branches = [
        (b["if"]["properties"]["type"]["const"], b["then"]["$ref"])
        for b in envelope.get("allOf", [])
        if b.keys() == {"if", "then"} and b["then"].keys() == {"$ref"}
    ]
    if (
        envelope.keys() - _ANNOTATIONS != {"type", "properties", "required", "allOf"}
        or envelope["properties"].keys() != {"type"}
        or envelope["required"] != ["type"]
        or len(branches) != len(envelope["allOf"])
        or sorted(branches) != sorted((t, f"{t}.schema.json") for t in type_names)
    ):
        raise ConfigError(
            f"{schemas.ENVELOPE}: must only dispatch on type to events/<type>.schema.json"
        )
    registry = schemas.registry()
    plans: dict[str, Plan] = {}
    for name in type_names:
        file = schemas.event_schema_name(name)
        schema = schemas.load_schema(file)
        resolver = registry.resolver(base_uri=str(schema.get("$id", "")))
        merged: dict[str, list[tuple[dict[str, Any], Resolver[Any]]]] = {}
        required: set[str] = set()
        _collect_object(file, schema, resolver, merged, required)
        missing = required - merged.keys()
        if missing:
            raise ConfigError(f"{file}: required {sorted(missing)} have no property schema")
        event_type = EventType(name)
        if event_type in CHAT_EVENT_TYPES:
            subject_key, subject_type = "session_id", SubjectType.CHAT_SESSION
        elif event_type in CHANNEL_EVENT_TYPES:
            subject_key, subject_type = "channel", SubjectType.CHANNEL
        else:
            subject_key, subject_type = "ticket_id", SubjectType.TICKET
        if subject_key not in required:
            raise ConfigError(f"{file}: {subject_key} must be required")
        template: list[object] = [None] * len(SLOTS)
        template[SLOTS["type"]] = event_type
        template[SLOTS["subject_type"]] = subject_type
        instant = exact
        strings: list[StrField] = []
        enums: list[EnumField] = []
        booleans: list[BoolField] = []
        integers: list[IntField] = []
        optional: list[Field] = []
        dispatchable = True
        for prop, parts in merged.items():
            field, default = _compile_field(file, prop, parts, name)
            if prop == subject_key == "channel" and isinstance(field, StrField):
                # A channel's events have the channel as subject id: check it once more,
                # into the subject_id slot.
                strings.append(field._replace(slot=SLOTS["subject_id"]))
            if prop == "type":
                # The plan is chosen by the value of "type", so its constraints are settled
                # here, once: either that value passes them all (nothing left to check per
                # event) or no event of this type can be valid (no plan; the slow path says
                # why).
                assert isinstance(field, EnumField)  # every per-type schema has a const
                dispatchable = name in field.accepted
                continue
            if prop == "occurred_at":
                if prop not in required or not isinstance(field, StrField):
                    raise ConfigError(f"{file}: occurred_at must be a required string")
                if [p.pattern for p in field.patterns] == [RFC3339_PATTERN]:
                    instant = by_minute  # which checks the pattern itself
                    field = field._replace(patterns=())
            if prop not in required:
                optional.append(field)
                if field.slot >= 0:
                    template[field.slot] = default
            elif isinstance(field, StrField):
                strings.append(field)
            elif isinstance(field, EnumField):
                enums.append(field)
            elif isinstance(field, IntField):
                integers.append(field)
            else:
                booleans.append(field)
        if dispatchable:
            plans[name] = Plan(
                tuple(template),
                tuple(strings),
                tuple(enums),
                tuple(booleans),
                tuple(integers),
                tuple(optional),
                instant,
            )
    return plans


def _collect_object(
    file: str,
    schema: dict[str, Any],
    resolver: Resolver[Any],
    merged: dict[str, list[tuple[dict[str, Any], Resolver[Any]]]],
    required: set[str],
) -> None:
    """Flattens an object schema (its ``$ref``, ``allOf``, ``properties``) into ``merged``."""
    unknown = schema.keys() - _OBJECT_KEYWORDS
    if unknown:
        raise ConfigError(f"{file}: keywords {sorted(unknown)} are not supported by the fast path")
    if schema.get("type", "object") != "object":
        raise ConfigError(f"{file}: an event schema must have type object")
    if schema.get("additionalProperties", True) is not True:
        # Producers add metadata; rejecting it would be a contract change, not a schema tweak.
        raise ConfigError(f"{file}: additionalProperties must stay allowed")
    if "$ref" in schema:
        resolved = resolver.lookup(schema["$ref"])
        _collect_object(file, resolved.contents, resolved.resolver, merged, required)
    for sub in schema.get("allOf", []):
        _collect_object(file, sub, resolver, merged, required)
    for prop, sub in schema.get("properties", {}).items():
        merged.setdefault(prop, []).append((sub, resolver))
    required.update(schema.get("required", []))


def _compile_field(
    file: str, name: str, parts: list[tuple[dict[str, Any], Resolver[Any]]], event_type: str = ""
) -> tuple[Field, object]:
    """The conjunction of every schema that constrains property ``name``, and its default
    (None when the schema gives none; converted like the values, for enum members)."""
    flat: list[dict[str, Any]] = []
    pending = list(parts)
    while pending:
        sub, resolver = pending.pop()
        unknown = sub.keys() - _FIELD_KEYWORDS
        if unknown:
            raise ConfigError(f"{file}: {name}: keywords {sorted(unknown)} are not supported")
        if "$ref" in sub:
            resolved = resolver.lookup(sub["$ref"])
            pending.append((resolved.contents, resolved.resolver))
        flat.append(sub)
    kinds: set[str] = set()
    enum: set[str] | None = None
    min_len, max_len = 0, 2**63
    low: int | float = float("-inf")
    high: int | float = float("inf")
    patterns: list[re.Pattern[str]] = []
    default: object = None
    for sub in flat:
        if "type" in sub:
            kinds.add(sub["type"])
        allowed = [sub["const"]] if "const" in sub else sub.get("enum")
        if allowed is not None:
            if not all(isinstance(v, str) for v in allowed):
                raise ConfigError(f"{file}: {name}: only string enums/consts are supported")
            kinds.add("string")
            enum = set(allowed) if enum is None else enum & set(allowed)
        min_len = max(min_len, sub.get("minLength", 0))
        max_len = min(max_len, sub.get("maxLength", 2**63))
        if "pattern" in sub:
            patterns.append(re.compile(sub["pattern"]))
        low = max(low, sub.get("minimum", low))
        high = min(high, sub.get("maximum", high))
        if "default" in sub:
            default = sub["default"]
    if kinds not in ({"string"}, {"boolean"}, {"integer"}):
        raise ConfigError(
            f"{file}: {name}: type must be string, boolean or integer, got {sorted(kinds)}"
        )
    target = _TYPE_JSON_TO_SLOT.get((event_type, name)) or _JSON_TO_SLOT.get(name, name)
    # "type" is a constant of the plan; properties Event does not carry are only checked.
    slot = SLOTS[target] if target in SLOTS and name != "type" else -1
    if kinds == {"boolean"}:
        return BoolField(name, slot), default
    if kinds == {"integer"}:
        # Bounded scales only (a rating): JSON Schema counts 1e300 as an integer too, and an
        # unbounded one would need the slow path's arbitrary-precision rules.
        if low == float("-inf") or high == float("inf"):
            raise ConfigError(f"{file}: {name}: an integer needs both minimum and maximum")
        return IntField(name, slot, low, high), default
    if low != float("-inf") or high != float("inf"):
        raise ConfigError(f"{file}: {name}: minimum/maximum are supported on integers only")
    if enum is None:
        return StrField(name, slot, min_len, max_len, tuple(patterns)), default
    convert = _CONVERT.get(target)
    unknown_values = sorted(v for v in enum if convert is not None and v not in convert)
    if unknown_values:
        raise ConfigError(f"{file}: {name}: {unknown_values} are not values the monitor knows")
    accepted = {
        value: value if convert is None else convert[value]
        for value in sorted(enum)
        if min_len <= len(value) <= max_len and all(p.search(value) for p in patterns)
    }
    if default is not None and convert is not None:
        if not isinstance(default, str) or default not in convert:
            raise ConfigError(f"{file}: {name}: default {default!r} is not a value it knows")
        default = convert[default]
    return EnumField(name, slot, accepted), default
