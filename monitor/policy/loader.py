"""Loads and validates policy files, once, at start-up.

Validation has two layers: the JSON Schema in ``schemas/policy.schema.json`` (shape, names,
enums: the same schema users read to write a policy) and semantic checks the schema cannot
express (a known time zone, ordered working hours, one default per kind of subject, a catch-all
target). Either layer stops start-up with :class:`monitor.errors.PolicyError` naming the file,
the field and the problem; nothing is half-loaded.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from monitor import schemas
from monitor.accounting.rules import parse_accounting
from monitor.bundled import policies_dir
from monitor.calendar import WorkingTime, make_day_calendar
from monitor.errors import ConfigError, PolicyError
from monitor.policy.durations import parse_duration
from monitor.policy.model import (
    AppealPolicy,
    ClockKind,
    EscalationPolicy,
    EscalationTier,
    KpiPolicy,
    MetricPolicy,
    Policy,
    PolicySet,
    Selector,
    TargetRule,
)
from monitor.timeutil import MICROS_PER_SECOND, Micros
from monitor.vocabulary import (
    AnyMetric,
    EscalationMetric,
    Metric,
    Penalty,
    Period,
    SubjectType,
    TicketStatus,
)

POLICY_SCHEMA = "policy.schema.json"
"""The policy file's schema, relative to the schema directory in effect (:mod:`monitor.schemas`:
``$SLA_MONITOR_SCHEMAS`` when set, like every other schema the monitor reads)."""
BUNDLED_POLICIES = policies_dir()
POLICY_SUFFIXES = (".yaml", ".yml", ".toml")


def load_policy_set(path: str | Path | None = None) -> PolicySet:
    """Loads every policy in ``path`` (a file or a directory; None: the bundled defaults).

    In a directory, files ending in .yaml, .yml or .toml are policies, except ``*.example.*``.
    """
    root = Path(path) if path is not None else BUNDLED_POLICIES
    if root.is_dir():
        files = sorted(
            p for p in root.iterdir() if p.suffix in POLICY_SUFFIXES and ".example." not in p.name
        )
        if not files:
            raise ConfigError(f"{root}: no policy files (*.yaml, *.yml, *.toml) in this directory")
    elif root.is_file():
        files = [root]
    else:
        raise ConfigError(f"{root}: no such policy file or directory")
    return build_policy_set(load_policy_file(f) for f in files)


def build_policy_set(policies: Iterable[Policy]) -> PolicySet:
    by_name: dict[str, Policy] = {}
    by_tenant: dict[tuple[str, SubjectType], Policy] = {}
    for policy in policies:
        if policy.name in by_name:
            other = by_name[policy.name].source
            raise PolicyError(
                policy.source, "policy", f"name {policy.name!r} is also used by {other}"
            )
        by_name[policy.name] = policy
        for tenant in sorted(policy.tenants):
            clash = by_tenant.get((tenant, policy.applies_to))
            if clash is not None:
                who = "the default (*)" if tenant == "*" else f"tenant {tenant!r}"
                raise PolicyError(
                    policy.source,
                    "tenants",
                    f"{who} already has a {policy.applies_to} policy: "
                    f"{clash.name} ({clash.source})",
                )
            by_tenant[(tenant, policy.applies_to)] = policy
    return PolicySet(by_name, by_tenant)


def load_policy_file(path: Path) -> Policy:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(source, "(file)", f"cannot be read: {exc}") from None
    try:
        doc = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(
            source, "(file)", f"is not valid {path.suffix[1:].upper()}: {exc}"
        ) from None
    return parse_policy(doc, source, base_dir=path.parent)


def parse_policy(doc: Any, source: str, base_dir: Path) -> Policy:
    """Validates one policy document (already parsed) and builds the :class:`Policy`."""
    errors = sorted(
        schemas.validator(POLICY_SCHEMA).iter_errors(doc), key=lambda e: list(e.absolute_path)
    )
    if errors:
        first = min(errors, key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
        raise PolicyError(source, _field_name(first.absolute_path), _schema_problem(first))
    return _PolicyBuilder(doc, source, base_dir).build()


class _PolicyBuilder:
    """Turns a schema-valid document into a Policy, checking what the schema cannot."""

    def __init__(self, doc: dict[str, Any], source: str, base_dir: Path) -> None:
        self.doc = doc
        self.source = source
        self.base_dir = base_dir

    def fail(self, field: str, problem: str) -> PolicyError:
        return PolicyError(self.source, field, problem)

    def build(self) -> Policy:
        doc = self.doc
        applies_to = SubjectType(doc["applies_to"])
        try:
            tz = ZoneInfo(doc["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise self.fail("timezone", f"unknown time zone {doc['timezone']!r}") from None
        working_time = self._working_time(tz)
        default_warnings = tuple(sorted(doc.get("warnings", [0.8])))
        metrics: dict[AnyMetric, MetricPolicy] = {}
        for name, spec in doc["metrics"].items():
            if not spec.get("enabled", True):
                continue
            metric = Metric(name)
            if metric is Metric.PERIODIC_UPDATE and applies_to is not SubjectType.TICKET:
                raise self.fail(f"metrics.{name}", "periodic updates apply to tickets only")
            if metric is Metric.RESOLUTION and applies_to is not SubjectType.TICKET:
                raise self.fail(f"metrics.{name}", "resolution targets apply to tickets only")
            metrics[metric] = self._metric(metric, spec, working_time, default_warnings, applies_to)
        try:
            retention = parse_duration(doc.get("retention", "7d"))
        except ValueError as exc:
            raise self.fail("retention", str(exc)) from None
        escalation = appeal = None
        if ("escalation" in doc or "appeal" in doc) and applies_to is not SubjectType.TICKET:
            which = "escalation" if "escalation" in doc else "appeal"
            raise self.fail(which, "tier escalation and appeals apply to tickets only")
        if "escalation" in doc:
            escalation, metrics[EscalationMetric.TIER_ESCALATION] = self._escalation(working_time)
        if "appeal" in doc:
            appeal = self._appeal(working_time)
        return Policy(
            name=doc["policy"],
            source=self.source,
            applies_to=applies_to,
            tenants=frozenset(doc.get("tenants", ["*"])),
            timezone=tz,
            working_time=working_time,
            metrics=metrics,
            retention=retention,
            escalation=escalation,
            appeal=appeal,
            kpis=self._kpis(),
            accounting=parse_accounting(doc.get("accounting"), self.fail),
        )

    def _duration(self, where: str, text: str, clock: ClockKind, wt: WorkingTime) -> int:
        day = (
            Micros(wt.working_seconds_per_day * MICROS_PER_SECOND)
            if clock is ClockKind.WORKING
            else None
        )
        try:
            return parse_duration(text, day)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def _escalation(self, wt: WorkingTime) -> tuple[EscalationPolicy, MetricPolicy]:
        """003 3.4. The tiers also enter ``metrics`` as a :class:`MetricPolicy` without
        warnings, so the engine pauses, stores and retracts their clocks like any other; its
        single rule is the first tier (the engine reads the others from the tiers)."""
        spec = self.doc["escalation"]
        clock = ClockKind(spec.get("clock", "working"))
        clause = spec.get("clause", "")
        tiers: list[EscalationTier] = []
        for i, raw in enumerate(spec["tiers"]):
            after = self._duration(f"escalation.tiers[{i}].after", raw["after"], clock, wt)
            if tiers and after <= tiers[-1].after:
                raise self.fail(
                    f"escalation.tiers[{i}].after",
                    f"{raw['after']} is not after the previous tier's; list tiers in order",
                )
            if any(t.tier == raw["tier"] for t in tiers):
                raise self.fail(f"escalation.tiers[{i}].tier", f"{raw['tier']!r} is listed twice")
            tiers.append(EscalationTier(raw["tier"], Micros(after)))
        first = TargetRule(Selector(), tiers[0].after, clock, clause)
        metric = MetricPolicy(
            metric=EscalationMetric.TIER_ESCALATION,
            rules=(first,),
            warnings=(),
            pause_when=frozenset(TicketStatus(s) for s in spec.get("pause_when", [])),
        )
        return EscalationPolicy(tuple(tiers), clock, clause), metric

    def _appeal(self, wt: WorkingTime) -> AppealPolicy:
        spec = self.doc["appeal"]
        clock = ClockKind(spec.get("clock", "wall"))
        within = self._duration("appeal.within", spec["within"], clock, wt)
        # An appeal reaches the ticket's record: a record forgotten before the window ends
        # would turn every late-but-valid appeal into "no ticket.created was seen".
        retention = parse_duration(self.doc.get("retention", "7d"))
        if clock is ClockKind.WALL and retention < within:
            raise self.fail(
                "retention",
                f"{self.doc.get('retention', '7d')} is shorter than the appeal window "
                f"{spec['within']}; keep finished tickets at least as long",
            )
        return AppealPolicy(
            Micros(within), clock, spec.get("clause", ""), spec.get("reopens", True)
        )

    def _kpis(self) -> KpiPolicy:
        spec = self.doc.get("kpis", {})
        avail = spec.get("availability", {})
        fcr = spec.get("first_contact_resolution", {})
        csat = spec.get("csat", {})
        channels = avail.get("channels")
        return KpiPolicy(
            availability=avail.get("objective"),
            availability_channels=frozenset(channels) if channels else None,
            availability_clause=avail.get("clause", ""),
            service_time=avail.get("service_time", "working"),
            first_contact_resolution=fcr.get("target"),
            fcr_clause=fcr.get("clause", ""),
            csat_mean=csat.get("mean"),
            csat_good_share=csat.get("good_share"),
            csat_period=csat.get("period", "month"),
            csat_clause=csat.get("clause", ""),
        )

    def _working_time(self, tz: ZoneInfo) -> WorkingTime:
        cal = self.doc.get("calendar", {})
        overrides = cal.get("overrides")
        overrides_path = str((self.base_dir / overrides).resolve()) if overrides else None
        intervals: list[tuple[time, time]] = []
        for i, (start, end) in enumerate(self.doc["working_hours"]):
            intervals.append((_parse_time(start), _parse_time(end)))
            if intervals[-1][0] >= intervals[-1][1]:
                raise self.fail(
                    f"working_hours[{i}]", f"starts at {start}, not before its end {end}"
                )
            if i and intervals[-1][0] < intervals[-2][1]:
                raise self.fail(
                    f"working_hours[{i}]", f"starts at {start}, before the previous ends"
                )
        try:
            days = make_day_calendar(
                country=cal.get("country", "CN"),
                subdivision=cal.get("subdivision"),
                overrides_path=overrides_path,
                strict=cal.get("unknown_dates", "error") == "error",
                working_days=cal.get("working_days", "statutory"),
            )
            return WorkingTime(days, tz, intervals)
        except ConfigError as exc:
            raise self.fail("calendar", str(exc)) from None

    def _metric(
        self,
        metric: Metric,
        spec: dict[str, Any],
        working_time: WorkingTime,
        default_warnings: tuple[float, ...],
        applies_to: SubjectType,
    ) -> MetricPolicy:
        where = f"metrics.{metric}"
        rules: list[TargetRule] = []
        for i, raw in enumerate(spec["targets"]):
            clock = ClockKind(raw["clock"])
            day = (
                Micros(working_time.working_seconds_per_day * MICROS_PER_SECOND)
                if clock is ClockKind.WORKING
                else None
            )
            try:
                within = parse_duration(raw["within"], day)
            except ValueError as exc:
                raise self.fail(f"{where}.targets[{i}].within", str(exc)) from None
            when = raw.get("when", {})
            selector = Selector(
                priorities=frozenset(when["priority"]) if "priority" in when else None,
                periods=frozenset(Period(p) for p in when["period"]) if "period" in when else None,
                channels=frozenset(when["channel"]) if "channel" in when else None,
            )
            rules.append(
                TargetRule(selector, within, clock, raw.get("clause", spec.get("clause", "")))
            )
        if rules[-1].when != Selector():
            raise self.fail(
                f"{where}.targets[{len(rules) - 1}]",
                "the last target must have no `when`, so that every subject gets a target",
            )
        pause = frozenset(TicketStatus(s) for s in spec.get("pause_when", []))
        if pause and applies_to is not SubjectType.TICKET:
            raise self.fail(f"{where}.pause_when", "only ticket clocks can pause")
        penalty = spec.get("penalty")
        return MetricPolicy(
            metric=metric,
            rules=tuple(rules),
            warnings=tuple(sorted(spec.get("warnings", default_warnings))),
            penalty=Penalty(float(penalty["amount"]), penalty["currency"]) if penalty else None,
            pause_when=pause,
        )


def _parse_time(text: str) -> time:
    hour, minute, *rest = (int(p) for p in text.split(":"))
    return time(hour, minute, rest[0] if rest else 0)


def _field_name(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _schema_problem(error: Any) -> str:
    if error.validator == "additionalProperties":
        return f"unknown field: {error.message}"
    if error.validator == "pattern":
        hint = error.schema.get("description") or error.validator_value
        return f"{error.instance!r} has the wrong form ({hint})"
    return str(error.message)
