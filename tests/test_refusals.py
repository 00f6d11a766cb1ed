"""Start-up refusals through the real commands (issue 10, "policy and configuration").

Each bad policy or setting is given to ``sla-monitor worker`` / ``replay`` / ``topics`` as a
subprocess; each must stop with exit code 2 and ONE line on stderr that names the file or the
setting and the problem, print nothing on stdout, leave no process behind and start nothing:
no data directory, nothing sent to a broker. Policies are loaded before the broker is
contacted, so the broker address here is a closed loopback port: a worker that got past the
policy check would fail on it instead, and the expected line would be missing.

The loader's own messages are tested field by field in ``tests/test_policy.py`` and
``tests/test_clock_and_config.py``; this table proves the commands turn them into clean
refusals. A wrong SASL password is ``tests/live/test_kafka.py::test_wrong_password_stops_start_up``;
a bad policy against a reachable broker (nothing created there) is ``tests/live/test_refusals.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "deploy" / "policies"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def chat_policy(**changes: object) -> dict[str, object]:
    doc = yaml.safe_load((BUNDLED / "online-chat.yaml").read_text())
    assert isinstance(doc, dict)
    return doc | changes


def with_target(within: str) -> dict[str, object]:
    doc = chat_policy()
    doc["metrics"]["first_response"]["targets"][0]["within"] = within  # type: ignore[index]
    return doc


@dataclass
class Case:
    """One refusal: what to write, how to start, and the words the one line must hold."""

    command: str  # worker, replay or topics
    words: tuple[str, ...]  # each must be in the line ({dir} is the case's directory)
    policy: object = None  # written to p.yaml when not None (str: verbatim text)
    files: dict[str, str] = field(default_factory=dict)  # extra files, verbatim
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "invalid YAML": Case(
        "worker",
        ("p.yaml: (file): is not valid YAML: line 3, column", "expected"),
        policy="policy: x\nworking_hours: [[09:00, 12:00]\ntimezone: Asia/Shanghai\n",
    ),
    "empty policy file": Case("worker", ("p.yaml: (top level):", "object"), policy=""),
    "unknown field": Case(
        "worker",
        ("{dir}/p.yaml: (top level): unknown field", "'colour'"),
        policy=chat_policy(colour=1),
    ),
    "zero target": Case(
        "worker",
        ("p.yaml: metrics.first_response.targets[0].within: '0s' must be longer than zero",),
        policy=with_target("0s"),
    ),
    "negative target": Case(
        "replay",
        ("p.yaml: metrics.first_response.targets[0].within:", "'-3m'"),
        policy=with_target("-3m"),
    ),
    "overlapping working intervals": Case(
        "worker",
        ("p.yaml: working_hours[1]: starts at", "before the previous ends"),
        policy=chat_policy(working_hours=[["09:00", "13:00"], ["12:00", "18:00"]]),
    ),
    "unknown time zone": Case(
        "replay",
        ("p.yaml: timezone: unknown time zone 'Asia/Atlantis'",),
        policy=chat_policy(timezone="Asia/Atlantis"),
    ),
    "missing override file": Case(
        "worker",
        ("p.yaml: calendar:", "cn-2027.yaml", "cannot read"),
        policy=chat_policy(calendar={"country": "CN", "overrides": "cn-2027.yaml"}),
    ),
    "invalid override file": Case(
        "worker",
        ("p.yaml: calendar:", "cn-2027.yaml: <file>: not valid YAML: line 3, column 1"),
        policy=chat_policy(calendar={"country": "CN", "overrides": "cn-2027.yaml"}),
        files={"cn-2027.yaml": "years: [2027]\nholidays: [2027-01-01\n"},
    ),
    "missing policy path": Case(
        "worker", ("{dir}/nowhere", "no such policy"), args=("--policies", "{dir}/nowhere")
    ),
    "unknown setting in the config file": Case(
        "worker",
        ("{dir}/sla.toml: unknown setting 'partitons'",),
        files={"sla.toml": "partitons = 3\n"},
        args=("--config", "{dir}/sla.toml"),
    ),
    "invalid TOML config": Case(
        "topics",
        ("{dir}/sla.toml:", "line 1"),
        files={"sla.toml": "broker = \n"},
        args=("--config", "{dir}/sla.toml"),
    ),
    "bad setting in the environment": Case(
        "worker", ("SLA_PARTITIONS",), env={"SLA_PARTITIONS": "many"}
    ),
    "zero partitions": Case("topics", ("partitions", "at least 1"), args=("--partitions", "0")),
    "unreachable broker (worker)": Case(
        "worker",
        ("cannot reach the broker 127.0.0.1:{port}", "within 1s", "SLA_BROKER"),
        env={"SLA_CONNECT_TIMEOUT": "1"},
    ),
    "unreachable broker (topics)": Case(
        "topics",
        ("cannot reach the broker 127.0.0.1:{port}", "within 1s", "SLA_BROKER"),
        args=("--timeout", "1"),
    ),
    "replay of a missing file": Case(
        "replay",
        ("{dir}/events.jsonl: cannot read the events: No such file",),
        args=("{dir}/events.jsonl",),
    ),
}


def start(case: Case, tmp_path: Path, port: int) -> subprocess.CompletedProcess[str]:
    def fill(text: str) -> str:
        return text.format(dir=tmp_path, port=port)

    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    args = [fill(a) for a in case.args]
    if case.policy is not None:
        path = tmp_path / "p.yaml"
        text = case.policy if isinstance(case.policy, str) else yaml.safe_dump(case.policy)
        path.write_text(text)
        args += ["--policies", str(path)]
    if case.command == "replay":
        events = tmp_path / "events.jsonl"
        if "{dir}/events.jsonl" not in case.args:
            events.write_text("")
            args.append(str(events))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLA_")}
    env |= {"SLA_BROKER": f"127.0.0.1:{port}", "SLA_DATA_DIR": str(tmp_path / "data")}
    env |= {"SLA_METRICS_PORT": "0", **case.env}
    main = "from monitor.cli import main; raise SystemExit(main())"
    return subprocess.run(
        [sys.executable, "-c", main, case.command, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # relative paths (the override file) resolve against the policy's folder
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_policy_or_setting_is_refused_with_one_line(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    port = closed_port()
    began = time.monotonic()
    done = start(case, tmp_path, port)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr  # one line: no traceback, no log chatter
    line = lines[0]
    assert line.startswith("sla-monitor: error: "), line
    for word in case.words:
        assert word.format(dir=tmp_path, port=port) in line, (word, line)
    assert done.stdout == ""  # no output before the refusal (replay: no facts)
    # No process left: run() read stderr to its end, which a child still holding it (a
    # Faust worker thread, a broker) would have kept open until the timeout.
    assert not (tmp_path / "data").exists()  # the worker's store was never opened
    # Refused at once: only the unreachable broker waits for its (1 s) timeout.
    assert time.monotonic() - began < 30


def test_the_table_covers_each_entry_point() -> None:
    assert {case.command for case in CASES.values()} == {"worker", "replay", "topics"}
