"""Probes of a running worker process for the fault tests: its Prometheus endpoint, its
resident memory, and a worker whose wall clock runs behind the host's.

Who calls what: ``tests/live/test_faults_lag.py`` (a worker that lived ten minutes ago),
``test_faults_disorder.py`` (dead-letter reason codes from ``sla_input_invalid_total``) and
``test_soak.py`` (RSS, open timers and lag sampled over a long run).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.live.harness import ROOT, WorkerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (for a worker's metrics_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def scrape(port: int, timeout: float = 5.0) -> Samples:
    """Every sample of the worker's ``/metrics``, keyed by name and label set."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# The worker as `sla-monitor worker` runs it (settings from SLA_* variables), except that its
# wall clock reads LAG_WALL_OFFSET_US microseconds behind the host's. monitor.live.worker
# takes the wall clock as a parameter (the demo fast-forwards it); nothing else reads time.
_SHIFTED = """
import os
from monitor.live.clock import wall_clock
from monitor.live.config import load_settings
from monitor.live.worker import run_worker
offset = int(os.environ["LAG_WALL_OFFSET_US"])
run_worker(load_settings(), wall=lambda: wall_clock() - offset)
"""


class ShiftedWorker(WorkerProcess):
    """A worker living ``offset_us`` in the past: the worker that ran before an outage,
    without waiting for the outage to pass."""

    def __init__(self, worker: WorkerProcess, offset_us: int) -> None:
        super().__init__({**worker.env, "LAG_WALL_OFFSET_US": str(offset_us)}, worker.log_path)

    def start(self) -> None:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _SHIFTED],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
