"""deploy/prometheus/rules.yml: syntax (`promtool check rules`), behaviour (`promtool test rules`
with deploy/prometheus/rules.test.yml) and a real Prometheus loading it and scraping SlaMetrics.

promtool and prometheus come from Debian's ``prometheus`` package. These tests never skip: a
missing binary is a broken test environment, and `make test` installs the package.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from monitor.metrics import SlaMetrics

PROM_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULE_TESTS = PROM_DIR / "rules.test.yml"
INSTALL_HINT = (
    "not found on PATH. Run the README's test command (`make test`), which installs it "
    "from Debian's prometheus package (apt-get install -y prometheus)."
)


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} {INSTALL_HINT}")
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PROM_DIR,
    )


def test_rules_pass_promtool_check() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rules_pass_their_unit_tests() -> None:
    done = _promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


# --- a real Prometheus ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp)


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    body = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


@pytest.fixture
def metrics_target() -> Iterator[tuple[int, SlaMetrics]]:
    """SlaMetrics on a fresh registry, served on a loopback port as the worker serves it."""
    registry = CollectorRegistry()
    metrics = SlaMetrics(registry, topics=["cs.events"])
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield port, metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def prometheus(tmp_path: Path, metrics_target: tuple[int, SlaMetrics]) -> Iterator[str]:
    """A real Prometheus with rules.yml loaded, scraping the target every second."""
    target_port, _ = metrics_target
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: sla-monitor\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            _binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"prometheus did not start:\n{(tmp_path / 'prometheus.log').read_text()}"
                )
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_real_prometheus_loads_rules_and_scrapes_the_metrics(
    prometheus: str, metrics_target: tuple[int, SlaMetrics]
) -> None:
    _, metrics = metrics_target
    metrics.set_open_timers(7)
    metrics.event_consumed("cs.events", "session.started")

    # Every group and rule of the file is loaded, in order.
    spec = yaml.safe_load(RULES.read_text())["groups"]
    groups = _get(f"{prometheus}/api/v1/rules")["data"]["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in spec]
    for loaded, written in zip(groups, spec, strict=True):
        names = [r.get("alert") or r.get("record") for r in written["rules"]]
        assert [r["name"] for r in loaded["rules"]] == names

    # Wait for a scrape and a rule evaluation after it (1 s each); well under the 15 s budget.
    deadline = time.monotonic() + 10
    while True:
        scraped = _query(prometheus, 'sla_open_timers{job="sla-monitor"}')
        groups = _get(f"{prometheus}/api/v1/rules")["data"]["groups"]
        health = {
            r["name"]: (r["health"], r.get("lastError", "")) for g in groups for r in g["rules"]
        }
        # Until an evaluation after the first scrape, "nobody reports" is (rightly) pending.
        absent = _query(prometheus, 'ALERTS{alertname="SlaMonitorAbsent"}')
        if scraped and not absent and all(h == "ok" for h, _ in health.values()):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"scraped={scraped} absent={absent} health={health}")
        time.sleep(0.25)

    assert scraped[0]["value"][1] == "7"
    objective = _query(prometheus, "sla:first_response_slo:objective")
    assert objective[0]["value"][1] == "0.95"
