"""A real alerting stack for tests: Prometheus (Debian's ``prometheus``), Alertmanager (Debian's
``prometheus-alertmanager``) and a webhook receiver, all on loopback ports.

Who calls what: tests/live/test_alerting_e2e.py starts a worker with a metrics port, then
:class:`AlertReceiver`, :func:`start_alertmanager` and :func:`start_prometheus`, and reads what
arrives at the receiver. The shipped files (deploy/prometheus/rules.yml,
deploy/alertmanager/alertmanager.yml) are copied with only their timings shortened
(:func:`fast_rules`, :func:`fast_alertmanager_config`); every expression, label, annotation,
route and matcher is the shipped one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from monitor.live.broker import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
ALERTMANAGER_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
INSTALL_HINT = (
    "is not on PATH. `make test` installs it (Makefile target `tools`: Debian's prometheus and "
    "prometheus-alertmanager packages)."
)


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} {INSTALL_HINT}")
    return path


# --- the shipped configuration, with test timings ---------------------------------------------


_ABSENT_FLOOR_MS = 20_000  # four times the first-scrape delay above


def fast_rules(target: Path, speedup: int = 120) -> Path:
    """rules.yml with every ``for:`` divided by ``speedup`` (2 m -> 1 s, 5 m -> 2.5 s,
    10 m -> 5 s): minutes in production, which a test cannot wait out, in the same proportions
    (a 10-minute "nobody reports" must outlast the first scrape). Expressions, windows, labels
    and annotations stay as shipped.

    One floor: an ``absent(...)`` rule is pending from Prometheus' first evaluation, and its first
    scrape comes only after the scrape manager's 5 s reload ticker (measured with Debian's 2.42:
    first ``up`` sample 5.3 s after start). 10 m / 120 = 5 s raced that, and a CI run paged
    "SlaMonitorAbsent" with the worker up. Such rules keep at least ``_ABSENT_FLOOR_MS``."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                floor = _ABSENT_FLOOR_MS if "absent(" in rule["expr"] else 1000
                rule["for"] = f"{max(floor, _seconds(rule['for']) * 1000 // speedup)}ms"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    if parts is None or not duration:
        raise ValueError(f"unexpected duration in rules.yml: {duration!r}")
    return sum(int(n or 0) * units[u] for n, u in zip(parts.groups(), "hms", strict=True))


def fast_alertmanager_config(target: Path, receiver_url: str) -> Path:
    """alertmanager.yml with every webhook pointed at ``receiver_url``/<receiver name> and the
    grouping waits at 1 s (30 s and 5 min as shipped). Routes and matchers stay as shipped."""
    doc = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for receiver in doc["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{receiver_url}/{receiver['name']}"

    def shorten(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(doc["route"])
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


# --- the webhook receiver -------------------------------------------------------------------


@dataclass
class Notification:
    """One webhook call of Alertmanager: the receiver path and its JSON payload."""

    path: str
    payload: dict[str, Any]

    @property
    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.payload["alerts"]
        return alerts


@dataclass
class AlertReceiver:
    """An HTTP server that keeps every notification POSTed to it (Alertmanager's webhook
    format, https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""

    port: int = field(default_factory=free_port)
    notifications: list[Notification] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with received._lock:
                    received.notifications.append(Notification(self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def alerts(self, status: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """Every alert received so far as (receiver path, alert), optionally of one status."""
        with self._lock:
            return [
                (n.path, a)
                for n in self.notifications
                for a in n.alerts
                if status is None or a["status"] == status
            ]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], status: str, timeout: float, what: str
    ) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path, alert in self.alerts(status):
                if predicate(alert):
                    return path, alert
            time.sleep(0.2)
        raise AssertionError(
            f"no {status} notification of {what} in {timeout}s; received: "
            f"{[(p, a['status'], a['labels']) for p, a in self.alerts()]}"
        )


# --- the servers ------------------------------------------------------------------------------


@dataclass
class Server:
    """A Prometheus or Alertmanager subprocess and its base URL."""

    name: str
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.base}{path}{query}", timeout=5) as resp:
            return json.load(resp)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/-/ready", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def _spawn(name: str, args: list[str], log_path: Path, port: int) -> Server:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, proc, f"http://127.0.0.1:{port}", log_path)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


def start_alertmanager(tmp: Path, config: Path) -> Server:
    """Alertmanager on a loopback port, clustering off (it would listen on 0.0.0.0:9094)."""
    port = free_port()
    return _spawn(
        "alertmanager",
        [
            binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        tmp / "alertmanager.log",
        port,
    )


def start_prometheus(tmp: Path, rules: Path, targets: list[str], alertmanager: str) -> Server:
    """Prometheus scraping ``targets`` as job ``sla-monitor`` (the job the rules and
    deploy/k8s/podmonitor.yaml name), evaluating ``rules`` and alerting ``alertmanager``
    (host:port), with 1 s scrape and evaluation intervals (15 s-1 min in production)."""
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
                "scrape_configs": [
                    {"job_name": "sla-monitor", "static_configs": [{"targets": targets}]}
                ],
            }
        )
    )
    return _spawn(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
        ],
        tmp / "prometheus.log",
        port,
    )


def query(prometheus: Server, promql: str) -> list[dict[str, Any]]:
    """An instant query; an error (a PromQL that does not parse) fails with Prometheus' text."""
    try:
        body = prometheus.get("/api/v1/query", query=promql)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{promql!r}: {exc.read().decode(errors='replace')}") from exc
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result
