"""Shopify's toxiproxy (a TCP proxy that adds latency, jitter and more) for the network-fault
tests, driven through its HTTP API.

Who calls what: ``tests/live/test_network_faults.py`` starts one :class:`Toxiproxy` per broker
kind, adds a proxy in front of the broker (:meth:`Toxiproxy.proxy`), and adds or removes
toxics (:meth:`Toxiproxy.latency`, :meth:`Toxiproxy.clear`). The binary is built by
``make tools`` from ``tools/toxiproxy/go.mod`` into ``.tools/bin/toxiproxy-server``.

Why a proxy for delay: this CI kernel has no ``sch_netem`` (the test module's docstring has the
evidence), the only kernel queue that holds packets for a set time. Loss stays in the kernel
(nf_tables, :mod:`tests.live.netns`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from monitor.live.broker import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".tools" / "bin" / "toxiproxy-server"


class Toxiproxy:
    """A ``toxiproxy-server`` subprocess with its API on loopback."""

    def __init__(self, log_path: Path) -> None:
        self.api_port = free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        assert BINARY.exists(), f"{BINARY} is built by `make tools` (tools/toxiproxy/go.mod)"
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(BINARY), "-host", "127.0.0.1", "-port", str(self.api_port), "-seed", "7"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.api_port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"toxiproxy did not listen in {timeout}s ({self.log_path})")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout=5)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read()
        return json.loads(text) if text else None

    def proxy(self, name: str, listen: str, upstream: str) -> None:
        """Forwards ``listen`` (host:port) to ``upstream`` (host:port)."""
        self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream})

    def latency(self, name: str, latency_ms: int, jitter_ms: int) -> None:
        """Delays data in both directions by ``latency_ms`` ± ``jitter_ms``."""
        for stream in ("upstream", "downstream"):
            self._call(
                "POST",
                f"/proxies/{name}/toxics",
                {
                    "name": f"latency-{stream}",
                    "type": "latency",
                    "stream": stream,
                    "attributes": {"latency": latency_ms, "jitter": jitter_ms},
                },
            )

    def clear(self, name: str) -> None:
        """Removes every toxic of proxy ``name``."""
        for toxic in self._call("GET", f"/proxies/{name}/toxics"):
            self._call("DELETE", f"/proxies/{name}/toxics/{toxic['name']}")
