"""A real Apache Kafka broker (KRaft, one node) from Maven Central's jars: no Docker, no tarball.

Who calls what: the live test session (``tests/live/conftest.py``) starts one
:class:`KafkaBroker` beside the embedded Tansu broker and runs every live test on both;
``sla-monitor broker --kafka`` (:mod:`monitor.live.cli`) runs one in the foreground;
``sla-monitor bench --live --kafka`` measures the worker on it. Production runs the same
version from the ``apache/kafka`` image (``docker-compose.yml``).

Where the broker comes from: ``deploy/kafka/pom.xml`` names ``org.apache.kafka:kafka_2.13``
and the log4j2 binding Kafka's published POMs leave out. :func:`ensure_jars` has Maven copy
them into a cache folder (``$SLA_KAFKA_LIB``, default ``~/.cache/sla-monitor/kafka-<version>``)
the first time; afterwards start-up needs only Java. The version in the POM is the one version
of the project: the suite, this launcher and ``docker-compose.yml`` (a test checks they agree).

What a one-node test broker needs (``shared/notes/real-kafka.md``, checked on 4.1.1):

* **KRaft, formatted once.** A fresh data directory is formatted with a new cluster id (and,
  for SASL, the SCRAM credentials); a directory that holds ``meta.properties`` is reused as it
  is, so a restarted broker keeps its topics, offsets and transactions.
* **Future timestamps.** Kafka 4.x rejects records whose CreateTime is more than one hour ahead
  of the broker (``log.message.timestamp.after.max.ms`` defaults to 1 h). The demo's and the
  tests' generated days set CreateTime from ``occurred_at``, which may be in the future; the
  test broker lifts the limit. Operators replaying synthetic days into a real cluster must do
  the same on those topics.
* **Small heap.** 512 MiB, and the log cleaner's dedupe buffer at 16 MiB instead of 128 MiB (the
  changelog topic is compacted, so the cleaner starts).
* **Ready** means a Metadata request on the plain listener lists one broker; a listening socket
  alone is not enough (the broker accepts connections before it has registered).
* **Crashes.** With one replica, Kafka 4.1 elects no leader for a partition whose only
  replica shut down uncleanly; the test broker allows unclean election (there is no other copy
  to prefer). A production cluster has three replicas and keeps the default.
* **Stopping.** SIGTERM is a controlled shutdown (a few seconds); :meth:`KafkaBroker.kill` is
  SIGKILL, a crash, for the restart tests.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from monitor.bundled import kafka_dir
from monitor.errors import ConfigError
from monitor.live.broker import BrokerProcess, free_port, stop_process

#: SIGTERM gives the broker this long for a controlled shutdown before SIGKILL.
STOP_TIMEOUT = 30.0


def kafka_version() -> str:
    """The Kafka version of ``deploy/kafka/pom.xml`` (``<kafka.version>``)."""
    pom = (kafka_dir() / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    if match is None:
        raise ConfigError(f"{kafka_dir() / 'pom.xml'}: no <kafka.version> property")
    return match.group(1).strip()


def default_lib_dir() -> Path:
    """``$SLA_KAFKA_LIB``, or a per-version folder in the user's cache directory."""
    explicit = os.environ.get("SLA_KAFKA_LIB")
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sla-monitor" / f"kafka-{kafka_version()}"


def java_binary() -> str:
    """``$JAVA_HOME/bin/java`` or ``java`` on PATH; a ConfigError saying what to install."""
    home = os.environ.get("JAVA_HOME")
    candidate = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not candidate or not Path(candidate).exists():
        raise ConfigError(
            "real Apache Kafka needs Java 17 or newer (`java` on PATH or $JAVA_HOME); install a "
            "JDK (Debian: openjdk-17-jre-headless), or run the embedded broker without --kafka"
        )
    return candidate


def ensure_jars(lib: Path | None = None) -> Path:
    """The folder of the broker's jars, fetched with Maven the first time (about 45 MB).

    The jars land in a temporary sibling folder that is renamed into place when Maven is done,
    so an interrupted download never leaves a half-filled folder that looks complete.
    """
    lib = lib or default_lib_dir()
    if any(lib.glob(f"kafka_2.13-{kafka_version()}.jar")):
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigError(
            f"the Kafka {kafka_version()} jars are not in {lib} and Maven (`mvn`) is not on "
            "PATH to fetch them; install Maven, or set SLA_KAFKA_LIB to a folder of the jars"
        )
    lib.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=lib.name + ".", dir=lib.parent))
    cmd = [
        mvn, "-q", "-B", "-f", str(kafka_dir() / "pom.xml"), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise ConfigError(
            f"Maven could not fetch the Kafka {kafka_version()} jars: " + " | ".join(tail)
        )
    shutil.rmtree(lib, ignore_errors=True)
    partial.rename(lib)
    return lib


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM-SHA-256 user created when the data directory is formatted."""

    name: str
    password: str


class KafkaBroker(BrokerProcess):
    """One Apache Kafka process, broker and KRaft controller in one, on loopback.

    ``port`` is the PLAINTEXT listener (tests, tools, the readiness check). With ``scram``
    users a second listener, ``sasl_port``, speaks SASL_PLAINTEXT with SCRAM-SHA-256.
    ``data_dir`` keeps the log across :meth:`stop`/:meth:`start` (a temporary folder, removed
    by :meth:`stop`, when not given). Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    name = "kafka"

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        data_dir: str | Path | None = None,
        log_path: str | Path | None = None,
        scram: tuple[ScramUser, ...] = (),
        heap: str = "512m",
        proxy: str | None = None,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.controller_port = free_port(host)
        self.sasl_port = free_port(host) if scram else None
        # With `proxy` (host:port of a TCP proxy): a second plain listener, PROXIED, on
        # `proxied_port`, advertised as the proxy's address. Clients that bootstrap through the
        # proxy are told to connect through it too (Kafka answers Metadata with the addresses
        # of the listener asked); the PLAINTEXT listener stays direct. For the network-fault
        # tests (tests/live/test_network_faults.py).
        self.proxy = proxy
        self.proxied_port = free_port(host) if proxy else None
        self.scram = scram
        self.heap = heap
        self._own_data = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="kafka-"))
        self.log_path = Path(log_path) if log_path else self.data_dir / "server.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def sasl_bootstrap(self) -> str:
        if self.sasl_port is None:
            raise ConfigError("this broker has no SASL listener (no SCRAM users given)")
        return f"{self.host}:{self.sasl_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def settings_overrides(self) -> dict[str, Any]:
        """Settings the worker and producers use on this broker: stock Kafka client defaults
        (producers batch normally; fetches return as soon as data arrives)."""
        return {"broker": self.bootstrap}

    # -- files ------------------------------------------------------------------------

    @property
    def _config_dir(self) -> Path:
        return self.data_dir / "config"

    @property
    def _log_dir(self) -> Path:
        return self.data_dir / "log"

    def _properties(self) -> str:
        listeners = [f"PLAINTEXT://{self.host}:{self.port}"]
        advertised = [f"PLAINTEXT://{self.host}:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        extra: list[str] = []
        if self.sasl_port is not None:
            listeners.append(f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            extra += [
                "sasl.enabled.mechanisms=SCRAM-SHA-256",
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            ]
        if self.proxy is not None:
            listeners.append(f"PROXIED://{self.host}:{self.proxied_port}")
            advertised.append(f"PROXIED://{self.proxy}")
            protocols.append("PROXIED:PLAINTEXT")
        listeners.append(f"CONTROLLER://{self.host}:{self.controller_port}")
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"listener.security.protocol.map={','.join(protocols)}",
            f"log.dirs={self._log_dir}",
            "num.partitions=1",
            "auto.create.topics.enable=false",  # `sla-monitor topics` creates them (compose too)
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "group.min.session.timeout.ms=1000",
            "num.network.threads=2",
            "num.io.threads=2",
            "log.cleaner.dedupe.buffer.size=16777216",
            "log.message.timestamp.after.max.ms=9223372036854775807",
            # One replica: after a SIGKILL the controller (same process) counts the restarted
            # broker's replicas as unclean and elects no leader, so partitions stayed
            # leaderless and consumers stalled (seen in the broker-restart test on 4.1.1).
            # With a single copy there is no cleaner replica to wait for.
            "unclean.leader.election.enable=true",
            *extra,
        ]
        return "\n".join(lines) + "\n"

    def _log4j(self) -> str:
        return "\n".join(
            [
                "appender.file.type=File",
                "appender.file.name=FILE",
                f"appender.file.fileName={self.log_path}",
                "appender.file.layout.type=PatternLayout",
                "appender.file.layout.pattern=[%d] %p %m (%c)%n",
                "rootLogger.level=INFO",
                "rootLogger.appenderRef.file.ref=FILE",
                # The request and state-change loggers are chatty at INFO and tell us nothing.
                "logger.kafka.name=kafka",
                "logger.kafka.level=INFO",
                "logger.org.name=org.apache.kafka",
                "logger.org.level=INFO",
                "",
            ]
        )

    def _java(self, lib: Path, main: str, *args: str) -> list[str]:
        return [
            java_binary(),
            f"-Xmx{self.heap}",
            "-Xms128m",
            f"-Dkafka.logs.dir={self._log_dir}",
            f"-Dlog4j2.configurationFile={self._config_dir / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            main,
            *args,
        ]

    def _format(self, lib: Path) -> None:
        """Formats a fresh data directory (skipped when it holds a formatted log)."""
        if (self._log_dir / "meta.properties").exists():
            return
        cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # `--cluster-id=ID` in one word: a base64 id may start with "-" (seen: the format step
        # took it for an option and failed a test run).
        cmd = self._java(
            lib, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
            "--config", str(self._config_dir / "server.properties"),
        )  # fmt: skip
        for user in self.scram:
            cmd += ["--add-scram", f"SCRAM-SHA-256=[name={user.name},password={user.password}]"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ConfigError(f"formatting the Kafka log in {self._log_dir} failed: {done.stdout}"
                              f"{done.stderr}".strip())  # fmt: skip

    # -- life cycle -------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Formats (first time), starts the JVM and waits until a Metadata request lists it."""
        lib = ensure_jars()
        self._config_dir.mkdir(parents=True, exist_ok=True)
        self._log_dir.mkdir(parents=True, exist_ok=True)
        (self._config_dir / "server.properties").write_text(self._properties())
        (self._config_dir / "log4j2.properties").write_text(self._log4j())
        self._format(lib)
        self._out = (self.data_dir / "stdout.log").open("ab")
        cmd = self._java(lib, "kafka.Kafka", str(self._config_dir / "server.properties"))
        # Its own process group, like the embedded broker: a Ctrl-C reaches our process first.
        self._proc = subprocess.Popen(
            cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_out()
                raise ConfigError(
                    f"Kafka exited with code {code} on start-up (log: {self.log_path})"
                )
            if metadata_brokers(self.host, self.port) > 0:
                return
            time.sleep(0.2)
        self.stop()
        raise ConfigError(f"Kafka did not answer on {self.bootstrap} in {timeout}s")

    def stop(self) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL after :data:`STOP_TIMEOUT`."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, timeout=STOP_TIMEOUT)
        self._close_out()

    def kill(self) -> None:
        """SIGKILL: a crash. The data directory stays for :meth:`start` to recover from."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        self._close_out()

    def remove(self) -> None:
        """Stops the broker and deletes its data directory if this object created it."""
        self.stop()
        if self._own_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _close_out(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def close(self) -> None:
        """Leaving the ``with`` block removes the broker's data (see :meth:`remove`)."""
        self.remove()


def metadata_brokers(host: str, port: int, timeout: float = 1.0) -> int:
    """How many brokers a Metadata (v4) request to ``host:port`` lists; 0 if it fails.

    Written against the protocol so the readiness check needs no event loop (the test fixtures
    and the CLI are synchronous): request header v1, a null topic array (all topics), and the
    response's throttle time followed by the broker array's length.
    """
    client = b"sla-monitor"
    body = struct.pack(">hhih", 3, 4, 1, len(client)) + client + struct.pack(">i?", -1, False)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = _recv_exact(sock, 4)
            (size,) = struct.unpack(">i", head)
            payload = _recv_exact(sock, size)
    except OSError:
        return 0
    if len(payload) < 12:
        return 0
    count: int = struct.unpack(">iii", payload[:12])[2]
    return max(count, 0)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data
