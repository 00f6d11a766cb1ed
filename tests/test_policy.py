"""Policy files: the bundled defaults load, and a bad policy stops start-up with a precise
message naming the file, the field and the problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from monitor import schemas
from monitor.errors import ConfigError, PolicyError
from monitor.policy import load_policy_set
from monitor.timeutil import MICROS_PER_SECOND
from monitor.vocabulary import Metric, SubjectType

BUNDLED = Path(__file__).resolve().parents[1] / "deploy" / "policies"


def bundled(name: str) -> dict[str, object]:
    doc = yaml.safe_load((BUNDLED / f"{name}.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def write(tmp_path: Path, doc: object, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def test_bundled_policies_cover_both_subject_types_by_default() -> None:
    policies = load_policy_set()
    chat = policies.for_subject("any-tenant", SubjectType.CHAT_SESSION)
    tickets = policies.for_subject("any-tenant", SubjectType.TICKET)
    assert chat.name == "online-chat"
    assert tickets.name == "customer-requests"
    assert set(tickets.metrics) == set(Metric)
    # 1 working day = 09:00-12:00 + 13:00-17:00 = 7 h, so P2 resolution "1wd" is 7 h.
    p2 = tickets.metrics[Metric.RESOLUTION].rules[1]
    assert p2.within == 7 * 3600 * MICROS_PER_SECOND


def test_a_tenant_policy_takes_precedence_over_the_default(tmp_path: Path) -> None:
    own = bundled("online-chat") | {"policy": "vip-chat", "tenants": ["vip"]}
    write(tmp_path, bundled("online-chat"), "default.yaml")
    write(tmp_path, own, "vip.yaml")
    policies = load_policy_set(tmp_path)
    assert policies.for_subject("vip", SubjectType.CHAT_SESSION).name == "vip-chat"
    assert policies.for_subject("other", SubjectType.CHAT_SESSION).name == "online-chat"


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"colour": "blue"}, "(top level)", "unknown field"),
        ({"applies_to": "emails"}, "applies_to", "is not one of"),
        ({"working_hours": [["18:00", "09:00"]]}, "working_hours[0]", "not before its end"),
        ({"working_hours": [["09:00", "12:00"], ["11:00", "17:00"]]}, "working_hours[1]", "before"),
        ({"working_hours": [["9am", "17:00"]]}, "working_hours[0][0]", "wrong form"),
        ({"warnings": [1.5]}, "warnings[0]", "maximum"),
        ({"retention": "soon"}, "retention", "wrong form"),
        ({"calendar": {"country": "CN", "overrides": "missing.yaml"}}, "calendar", "missing"),
    ],
)
def test_bad_policies_name_file_field_and_problem(
    tmp_path: Path, change: dict[str, object], field: str, problem: str
) -> None:
    path = write(tmp_path, bundled("online-chat") | change)
    with pytest.raises(PolicyError) as caught:
        load_policy_set(path)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_a_bad_target_names_the_rule(tmp_path: Path) -> None:
    doc = bundled("customer-requests")
    doc["metrics"]["first_response"]["targets"][2]["within"] = "2 hours"  # type: ignore[index]
    with pytest.raises(PolicyError) as caught:
        load_policy_set(write(tmp_path, doc))
    assert caught.value.field == "metrics.first_response.targets[2].within"


def test_every_subject_needs_a_target(tmp_path: Path) -> None:
    doc = bundled("online-chat")
    doc["metrics"]["first_response"]["targets"].pop()  # type: ignore[index]
    with pytest.raises(PolicyError, match="the last target must have no `when`"):
        load_policy_set(write(tmp_path, doc))


def test_working_days_only_on_the_working_clock(tmp_path: Path) -> None:
    doc = bundled("online-chat")
    doc["metrics"]["first_response"]["targets"][-1]["within"] = "1wd"  # type: ignore[index]
    with pytest.raises(PolicyError, match="working clock"):
        load_policy_set(write(tmp_path, doc))


def test_two_defaults_for_one_kind_of_subject_clash(tmp_path: Path) -> None:
    write(tmp_path, bundled("online-chat"), "a.yaml")
    write(tmp_path, bundled("online-chat") | {"policy": "other"}, "b.yaml")
    with pytest.raises(PolicyError, match=r"the default \(\*\) already has"):
        load_policy_set(tmp_path)


def test_toml_policies_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "chat.toml"
    path.write_text(
        'policy = "t"\napplies_to = "chat_session"\ntimezone = "Europe/Berlin"\n'
        'working_hours = [["08:00", "16:00"]]\ncalendar = {country = "DE"}\n'
        '[[metrics.first_response.targets]]\nwithin = "2m"\nclock = "wall"\n'
    )
    policy = load_policy_set(path).named("t")
    assert policy.timezone.key == "Europe/Berlin"


def test_missing_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such policy"):
        load_policy_set(tmp_path / "nope")


def test_cli_check_stops_with_the_message(tmp_path: Path) -> None:
    path = write(tmp_path, bundled("online-chat") | {"timezone": "Nowhere/Land"})
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check", "--policies", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{path}: timezone: unknown time zone 'Nowhere/Land'" in proc.stderr


def test_policies_are_checked_against_the_schema_directory_in_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One schema loader (monitor.schemas): $SLA_MONITOR_SCHEMAS applies to policies too."""
    copy = tmp_path / "schemas"
    shutil.copytree(schemas.SCHEMA_DIR, copy)
    policy_schema = copy / "policy.schema.json"
    doc = json.loads(policy_schema.read_text())
    doc["properties"]["policy"]["maxLength"] = 3  # a deployment's stricter schema
    policy_schema.write_text(json.dumps(doc))
    path = write(tmp_path, bundled("online-chat"))
    try:
        load_policy_set(path)  # the bundled schema accepts the name
        monkeypatch.setenv(schemas.ENV_VAR, str(copy))
        with pytest.raises(PolicyError) as raised:
            load_policy_set(path)
        assert raised.value.field == "policy"
        monkeypatch.setenv(schemas.ENV_VAR, str(tmp_path / "missing"))
        with pytest.raises(ConfigError, match=r"policy\.schema\.json not found"):
            load_policy_set(path)
    finally:
        schemas.clear_cache()
