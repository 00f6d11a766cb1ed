"""docker-compose.yml holds the whole stack and its pieces fit together: services, ports,
mounted files, and the configuration files that name each other (Prometheus -> worker and
Alertmanager, Alertmanager -> receiver, Grafana -> Prometheus and the dashboard).

Docker is not available here, so the file is read with PyYAML; the configuration files it
mounts are checked by their own tools (`promtool check config` here; amtool, dashboard-linter in
tests/test_deploy_lint.py) and the logging webhook receiver's inline script is run for real.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from monitor.live.broker import free_port, stop_process
from monitor.live.kafka import kafka_version

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
STACK = {"kafka", "topics", "worker", "prometheus", "alertmanager", "alert-receiver", "grafana"}

Doc = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> Doc:
    doc: Doc = yaml.safe_load(COMPOSE.read_text())
    return doc


@pytest.fixture(scope="module")
def services(compose: Doc) -> dict[str, Doc]:
    found: dict[str, Doc] = compose["services"]
    return found


def mounts(service: Doc) -> dict[str, Path]:
    """Container path -> host path of every bind mount (``./host:/container[:ro]``)."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = (ROOT / source).resolve()
    return out


def published(service: Doc) -> set[int]:
    return {int(str(p).split(":")[0]) for p in service.get("ports", []) if ":" in str(p)}


def load(path: Path) -> Doc:
    doc: Doc = yaml.safe_load(path.read_text())
    return doc


def test_the_whole_stack_is_there(services: dict[str, Doc]) -> None:
    assert set(services) == STACK
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        image = service.get("image", "")
        assert not image or (":" in image and not image.endswith(":latest")), (name, image)
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)


def test_kafka_is_the_version_the_suite_runs(services: dict[str, Doc]) -> None:
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_ports_for_a_person_at_the_host(services: dict[str, Doc]) -> None:
    assert published(services["kafka"]) == {9092}
    assert published(services["prometheus"]) == {9090}
    assert published(services["alertmanager"]) == {9093}
    assert published(services["grafana"]) == {3000}


def test_every_mounted_file_exists(services: dict[str, Doc]) -> None:
    count = 0
    for name, service in services.items():
        for target, source in mounts(service).items():
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert source.is_relative_to(ROOT / "deploy"), (name, source)
            # A file mounted at a file-like path, a directory at a directory.
            assert source.is_dir() == (Path(target).suffix == ""), (name, target)
            count += 1
    assert count == 5  # prometheus.yml, rules.yml, alertmanager.yml, provisioning, dashboard


def test_prometheus_scrapes_the_worker_and_alerts_the_alertmanager(
    services: dict[str, Doc],
) -> None:
    prom = mounts(services["prometheus"])
    config = load(prom["/etc/prometheus/prometheus.yml"])
    # The rules it loads are the mounted deploy/prometheus/rules.yml.
    (rules_path,) = config["rule_files"]
    assert prom[rules_path] == ROOT / "deploy" / "prometheus" / "rules.yml"
    # Scrapes every worker replica on the port the worker serves /metrics on, as job
    # "sla-monitor" (SlaWorkerDown selects it).
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "sla-monitor"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"]
    worker = services["worker"]
    assert str(sd["port"]) == worker["environment"]["SLA_METRICS_PORT"]
    assert str(sd["port"]) in [str(p) for p in worker["ports"]]
    # Alerts go to the alertmanager service's port.
    (target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "alertmanager"
    assert int(port) in published(services["alertmanager"])


def test_prometheus_config_passes_promtool(services: dict[str, Doc], tmp_path: Path) -> None:
    prom = mounts(services["prometheus"])
    config = load(prom["/etc/prometheus/prometheus.yml"])
    # Inside the container the rules are at their mount point; here, at their repo path.
    config["rule_files"] = [str(prom[p]) for p in config["rule_files"]]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    promtool = shutil.which("promtool")
    assert promtool, "promtool: `make tools` installs Debian's prometheus package"
    done = subprocess.run(
        [promtool, "check", "config", str(copy)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_notifies_the_receiver_service(services: dict[str, Doc]) -> None:
    config = load(mounts(services["alertmanager"])["/etc/alertmanager/alertmanager.yml"])
    urls = [h["url"] for r in config["receivers"] for h in r.get("webhook_configs", [])]
    assert urls
    for url in urls:
        parsed = urlparse(url)
        assert parsed.hostname == "alert-receiver", url
        assert str(parsed.port) in [str(p) for p in services["alert-receiver"]["expose"]]


def test_grafana_provisions_the_datasource_and_the_dashboard(services: dict[str, Doc]) -> None:
    grafana = services["grafana"]
    files = mounts(grafana)
    provisioning = files["/etc/grafana/provisioning"]
    (datasource,) = load(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True  # what the dashboard's $datasource picks
    assert urlparse(datasource["url"]).hostname == "prometheus"
    assert urlparse(datasource["url"]).port in published(services["prometheus"])
    (provider,) = load(provisioning / "dashboards" / "sla-monitor.yml")["providers"]
    folder = provider["options"]["path"]
    dashboards = {t: s for t, s in files.items() if t.startswith(folder + "/")}
    assert list(dashboards.values()) == [ROOT / "deploy" / "grafana" / "sla-monitor.json"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home in dashboards


def test_the_logging_receiver_prints_what_alertmanager_sends(services: dict[str, Doc]) -> None:
    script = services["alert-receiver"]["command"][-1]
    port = free_port()
    assert '("", 8080)' in script
    local = script.replace('("", 8080)', f'("127.0.0.1", {port})')
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", local], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        alert = {
            "status": "firing",
            "labels": {"alertname": "SlaFirstResponseBudgetBurnFast", "tenant": "acme"},
            "annotations": {"summary": "Tenant acme, policy online-chat: burning"},
        }
        body = json.dumps({"alerts": [alert]}).encode()
        deadline = time.monotonic() + 10
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/sla-oncall", body)
                with urllib.request.urlopen(request, timeout=2) as resp:
                    assert resp.status == 200
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
    finally:
        stop_process(proc, timeout=5)
    assert proc.stdout is not None
    printed = proc.stdout.read().decode()
    assert "/sla-oncall FIRING" in printed
    assert '"tenant": "acme"' in printed
    assert "Tenant acme, policy online-chat: burning" in printed
