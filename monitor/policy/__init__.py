"""Policies: contract rules as validated data (see ``schemas/policy.schema.json``)."""

from monitor.policy.loader import BUNDLED_POLICIES, load_policy_file, load_policy_set, parse_policy
from monitor.policy.model import ClockKind, MetricPolicy, Policy, PolicySet, Selector, TargetRule

__all__ = [
    "BUNDLED_POLICIES",
    "ClockKind",
    "MetricPolicy",
    "Policy",
    "PolicySet",
    "Selector",
    "TargetRule",
    "load_policy_file",
    "load_policy_set",
    "parse_policy",
]
