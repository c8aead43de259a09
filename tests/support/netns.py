"""Network namespaces for tests: agents that only a router can reach (needs root and ``ip``).

:meth:`Topology.create` builds, for a list of parties::

    root ns ──veth── router ns ──veth── agent ns of party 1
    (coordinator,    (rollsite)  ╰─veth── agent ns of party 2 …
     CLI)

The root namespace reaches the router's leg (``router_ip``) and nothing behind it: the router's
namespace does not forward, and an ``unreachable`` route in the root namespace for the test's
``10.<n>.0.0/16`` keeps connections to an agent from leaving by the default route. Each agent
namespace has its own loopback (its FATE-Serving test server listens there). Every name carries
the test process's PID; :meth:`Topology.delete` removes the namespaces (and with them the veths)
and the route.

:class:`ShapedLink` is the other shape: one namespace joined to the root one by a veth pair whose two
ends are both shaped with ``tc … tbf`` (each end's egress, so both directions), for a client on the
far side of a slow link (``netem`` is not assumed).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Topology:
    tag: str
    octet: int
    parties: tuple[str, ...]
    _created: list[str] = field(default_factory=list)
    _route: str = ""

    @property
    def router_ns(self) -> str:
        return f"{self.tag}rs"

    def agent_ns(self, party_id: str) -> str:
        return f"{self.tag}a{self.parties.index(party_id)}"

    @property
    def router_ip(self) -> str:
        return f"10.{self.octet}.0.2"

    def agent_ip(self, party_id: str) -> str:
        return f"10.{self.octet}.{self.parties.index(party_id) + 1}.2"

    @staticmethod
    def run_in(namespace: str) -> list[str]:
        """The command prefix that runs a program inside ``namespace``."""
        return ["ip", "netns", "exec", namespace]

    def _namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _link(self, index: int, near_ns: str | None, far_ns: str) -> None:
        """A veth pair ``10.<octet>.<index>.1/30`` (in ``near_ns``, or the root) -- ``.2/30`` (in ``far_ns``)."""
        near, far = f"{self.tag}v{index}n", f"{self.tag}v{index}f"
        _ip("link", "add", near, "type", "veth", "peer", "name", far)
        _ip("link", "set", far, "netns", far_ns)
        in_near = ["-n", near_ns] if near_ns else []
        if near_ns:
            _ip("link", "set", near, "netns", near_ns)
        _ip(*in_near, "addr", "add", f"10.{self.octet}.{index}.1/30", "dev", near)
        _ip(*in_near, "link", "set", near, "up")
        _ip("-n", far_ns, "addr", "add", f"10.{self.octet}.{index}.2/30", "dev", far)
        _ip("-n", far_ns, "link", "set", far, "up")

    @classmethod
    def create(cls, parties: Sequence[str]) -> Topology:
        pid = os.getpid()
        topology = cls(tag=f"fr{pid % 100000}", octet=100 + pid % 100, parties=tuple(parties))
        try:
            topology._namespace(topology.router_ns)
            topology._link(0, None, topology.router_ns)
            for index, party_id in enumerate(topology.parties, start=1):
                topology._namespace(topology.agent_ns(party_id))
                topology._link(index, topology.router_ns, topology.agent_ns(party_id))
            topology._route = f"10.{topology.octet}.0.0/16"
            _ip("route", "add", "unreachable", topology._route)
        except BaseException:
            topology.delete()
            raise
        return topology

    def delete(self) -> None:
        """Remove what :meth:`create` made (deleting a namespace deletes the veths in it)."""
        if self._route:
            subprocess.run(["ip", "route", "del", "unreachable", self._route], capture_output=True, timeout=30)
            self._route = ""
        for name in reversed(self._created):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self._created.clear()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()


def _tc_tbf(rate_bits: int) -> list[str]:
    """``tc`` arguments of a token bucket at ``rate_bits`` bit/s: a burst of 2 ms of traffic (at least 64 KiB,
    so a full-sized segment always fits) and at most 50 ms of queue."""
    burst = max(rate_bits // 8 // 500, 64 * 1024)
    return [
        "qdisc",
        "replace",
        "dev",
        "{dev}",
        "root",
        "tbf",
        "rate",
        f"{rate_bits}bit",
        "burst",
        str(burst),
        "latency",
        "50ms",
    ]


@dataclass
class ShapedLink:
    """A namespace ``fr<pid>l`` and a veth pair ``10.<a>.<b>.1/24`` (root end) -- ``.2/24`` (in the namespace),
    both ends shaped."""

    namespace: str
    root_dev: str
    far_dev: str
    subnet: str
    _made: bool = False

    @property
    def root_ip(self) -> str:
        return f"{self.subnet}.1"

    @property
    def far_ip(self) -> str:
        return f"{self.subnet}.2"

    @classmethod
    def create(cls) -> ShapedLink:
        """Make the namespace and the link on a 10.2xx.y.0/24 no interface or route of this host uses yet."""
        pid = os.getpid()
        tag = f"fr{pid % 100000}"
        link = cls(f"{tag}l", f"{tag}lr", f"{tag}lf", f"10.{200 + pid % 50}.{pid // 50 % 256}")
        in_use = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=30, check=True).stdout
        in_use += subprocess.run(["ip", "route"], capture_output=True, text=True, timeout=30, check=True).stdout
        if re.search(rf"(?<![0-9.]){re.escape(link.subnet)}\.", in_use):
            raise RuntimeError(
                f"{link.subnet}.0/24 is already in use on this host; run again (another PID, another subnet)"
            )
        try:
            _ip("netns", "add", link.namespace)
            link._made = True
            _ip("-n", link.namespace, "link", "set", "lo", "up")
            _ip("link", "add", link.root_dev, "type", "veth", "peer", "name", link.far_dev)
            _ip("link", "set", link.far_dev, "netns", link.namespace)
            _ip("addr", "add", f"{link.root_ip}/24", "dev", link.root_dev)
            _ip("link", "set", link.root_dev, "up")
            _ip("-n", link.namespace, "addr", "add", f"{link.far_ip}/24", "dev", link.far_dev)
            _ip("-n", link.namespace, "link", "set", link.far_dev, "up")
        except BaseException:
            link.delete()
            raise
        return link

    def shape(self, rate_bits: int) -> None:
        """Limit both directions to ``rate_bits`` bit/s (replacing an earlier limit)."""
        for prefix, dev in (([], self.root_dev), (Topology.run_in(self.namespace), self.far_dev)):
            argv = [arg.format(dev=dev) for arg in _tc_tbf(rate_bits)]
            subprocess.run([*prefix, "tc", *argv], check=True, capture_output=True, timeout=30)

    def delete(self) -> None:
        """Remove the namespace (its end of the pair goes with it, and so the root end)."""
        if self._made:
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, timeout=30)
            subprocess.run(["ip", "link", "del", self.root_dev], capture_output=True, timeout=30)
            self._made = False

    def __enter__(self) -> ShapedLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()
