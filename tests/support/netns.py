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
"""

from __future__ import annotations

import os
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
