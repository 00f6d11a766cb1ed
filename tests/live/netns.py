"""A network namespace joined to the host by a veth pair, and the faults a test puts on it.

Who calls what: ``tests/live/test_network_faults.py`` creates one :class:`NetNamespace`,
starts a broker on its :attr:`~NetNamespace.host_address` (the host side of the veth, the only
address reachable from inside), runs the worker with :attr:`~NetNamespace.exec_prefix`, and
cuts, degrades and restores the link with :meth:`~NetNamespace.cut`,
:meth:`~NetNamespace.degrade` and :meth:`~NetNamespace.restore`.

Everything is the real kernel, driven by Debian's ``iproute2`` (``ip``) and ``nftables``
(``nft``); both need root (``CAP_NET_ADMIN``). What this kernel offers was checked on the CI VM
(Linux 6.18, ``/proc/config.gz``): veth, nf_tables with ``numgen`` and the ``tbf`` qdisc are
built in; **``sch_netem`` is not** (``tc qdisc add ... netem`` fails with "Specified qdisc kind
is unknown", no modules to load), nor is ``act_gact`` (tc's random drop). So:

* a **cut** (:meth:`NetNamespace.cut`) is an nf_tables table in the namespace dropping every
  packet on its veth, both ways: a silent partition (no RST, no ICMP), the hard case — open
  TCP connections hang instead of failing, as when a switch or a firewall between worker and
  broker dies. The loud kind (:meth:`NetNamespace.link_down`: the interface goes down, sends
  fail at once) is the other;
* **loss** is the same table dropping a random share of packets (``numgen random mod 100``),
  so TCP retransmits as it would over a lossy path;
* **delay** needs a queue that holds packets for a time, which only netem gives in the kernel;
  the degraded-link test gets latency and jitter from Shopify's toxiproxy between the
  namespace and the broker (see that test), and loss from here.

Names are unique per process and instance (``sla-nf-<pid>-<n>``), so parallel runs do not
collide; :func:`sweep_stale` removes namespaces left by runs whose process is gone (an aborted
run cannot clean up after itself). The /30 subnet is drawn at random from 10.200.0.0–
10.254.255.255 and checked against the host's addresses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import random
import re
import subprocess
from types import TracebackType

PREFIX = "sla-nf-"
TABLE = "sla_netfault"
_count = itertools.count(1)
_STALE = re.compile(rf"^{PREFIX}(\d+)-(\d+)\b")


class NetworkSetupError(RuntimeError):
    """An ``ip`` or ``nft`` command failed (root and iproute2/nftables are needed)."""


def run(*cmd: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip()
        hint = "" if os.geteuid() == 0 else " (network namespaces need root or CAP_NET_ADMIN)"
        raise NetworkSetupError(f"{' '.join(cmd)}: {why}{hint}")
    return done.stdout


def _veth_names(pid: int, n: int) -> tuple[str, str]:
    token = f"{pid:x}{n:x}"[-9:]  # interface names are at most 15 characters
    return f"nf{token}h", f"nf{token}n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Deletes the namespaces (and host veths) of earlier runs whose process is gone."""
    removed = []
    for line in run("ip", "netns", "list").splitlines():
        match = _STALE.match(line.strip())
        if match is None or _alive(int(match.group(1))):
            continue
        name = match.group(0)
        host_veth, _ = _veth_names(int(match.group(1)), int(match.group(2)))
        run("ip", "link", "del", host_veth, check=False)
        run("ip", "netns", "del", name, check=False)
        removed.append(name)
    return removed


def _free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.ip_interface(word).network
        for line in run("ip", "-o", "-4", "addr", "show").splitlines()
        for word in line.split()[3:4]
    ]
    rng = random.SystemRandom()
    for _ in range(100):
        candidate = ipaddress.ip_network(
            f"10.{rng.randint(200, 254)}.{rng.randint(0, 255)}.{rng.randrange(0, 256, 4)}/30"
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NetworkSetupError("no free /30 in 10.200.0.0/8-ish after 100 draws")


class NetNamespace:
    """A namespace ``name`` with one veth to the host; ``host_address`` is the host's end."""

    def __init__(self) -> None:
        n = next(_count)
        self.name = f"{PREFIX}{os.getpid()}-{n}"
        self.host_veth, self.ns_veth = _veth_names(os.getpid(), n)
        subnet = _free_subnet()
        hosts = list(subnet.hosts())
        self.prefixlen = subnet.prefixlen
        self.host_address = str(hosts[0])
        self.ns_address = str(hosts[1])
        self.created = False

    @property
    def exec_prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def create(self) -> None:
        sweep_stale()
        self.created = True  # from here on, delete() undoes whatever part exists
        run("ip", "netns", "add", self.name)
        run("ip", "link", "add", self.host_veth, "type", "veth", "peer", "name", self.ns_veth,
            "netns", self.name)  # fmt: skip
        run("ip", "addr", "add", f"{self.host_address}/{self.prefixlen}", "dev", self.host_veth)
        run("ip", "link", "set", self.host_veth, "up")
        ns = ("ip", "-n", self.name)
        run(*ns, "addr", "add", f"{self.ns_address}/{self.prefixlen}", "dev", self.ns_veth)
        run(*ns, "link", "set", self.ns_veth, "up")
        run(*ns, "link", "set", "lo", "up")

    def sysctl(self, name: str, value: str) -> None:
        """Sets a per-namespace sysctl (``net.ipv4.*``) inside the namespace only."""
        run(*self.exec_prefix, "sysctl", "-q", "-w", f"{name}={value}")

    def delete(self) -> None:
        """Removes the veth pair and the namespace (and with it its nf_tables rules)."""
        if not self.created:
            return
        # Deleting the host end first: a namespace is destroyed asynchronously, and its veth
        # (with the host address) outlived `ip netns del` for a moment when tried.
        run("ip", "link", "del", self.host_veth, check=False)
        run("ip", "netns", "del", self.name, check=False)
        self.created = False

    def _nft(self, ruleset: str) -> None:
        run(*self.exec_prefix, "nft", "-f", "-", stdin=ruleset)

    def cut(self) -> None:
        """Drops every packet on the namespace's veth, both ways (a silent partition)."""
        self.restore()
        self._nft(self._table(f'oifname "{self.ns_veth}" drop', f'iifname "{self.ns_veth}" drop'))

    def link_down(self) -> None:
        """Takes the namespace's end of the veth down: a loud cut (sends fail at once with
        "network unreachable", so connections break instead of hanging)."""
        self.restore()
        run(*self.exec_prefix, "ip", "link", "set", self.ns_veth, "down")

    def degrade(self, loss_percent: int) -> None:
        """Drops a random ``loss_percent`` % of packets on the veth, each way independently."""
        self.restore()
        out = f'oifname "{self.ns_veth}" numgen random mod 100 < {loss_percent} drop'
        inp = f'iifname "{self.ns_veth}" numgen random mod 100 < {loss_percent} drop'
        self._nft(self._table(out, inp))

    def limit_rate(self, rate: str, latency: str) -> None:
        """Shapes both directions with a token bucket (``tbf``): at most ``rate`` (``"4mbit"``),
        packets waiting up to ``latency`` (``"200ms"``) in its queue, later ones dropped. A
        queueing delay under load, not a fixed one (that is netem's, absent here)."""
        for cmd in (("tc",), ("ip", "netns", "exec", self.name, "tc")):
            dev = self.host_veth if len(cmd) == 1 else self.ns_veth
            run(*cmd, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
                "burst", "16kb", "latency", latency)  # fmt: skip

    def dropped(self) -> int:
        """Packets the fault table dropped so far (its rules' counters)."""
        text = run(*self.exec_prefix, "nft", "list", "table", "inet", TABLE, check=False)
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", text))

    def restore(self) -> None:
        """Removes any fault: the link is whole again."""
        run(*self.exec_prefix, "nft", "delete", "table", "inet", TABLE, check=False)
        run("tc", "qdisc", "del", "dev", self.host_veth, "root", check=False)
        run(*self.exec_prefix, "tc", "qdisc", "del", "dev", self.ns_veth, "root", check=False)
        run(*self.exec_prefix, "ip", "link", "set", self.ns_veth, "up", check=False)

    def _table(self, out_rule: str, in_rule: str) -> str:
        def counted(rule: str) -> str:
            return rule.replace(" drop", " counter drop")

        return (
            f"table inet {TABLE} {{\n"
            f"  chain out {{ type filter hook output priority 0; policy accept; "
            f"{counted(out_rule)}; }}\n"
            f"  chain in {{ type filter hook input priority 0; policy accept; "
            f"{counted(in_rule)}; }}\n"
            "}\n"
        )

    def __enter__(self) -> NetNamespace:
        try:
            self.create()
        except BaseException:
            self.delete()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(NetworkSetupError):
            self.restore()
        self.delete()
