"""Start and stop the rollsite test router (:mod:`tests.support.rollsite`) as a process.

Usage in a test::

    with RollsiteProcess.start(tmp_path / "rollsite") as rollsite:
        conf = {"parties": {"9999": {"proxy": rollsite.address}}}
        rollsite.set_route("9999", "fate_registry_agent", agent_address)
        rollsite.set_fault("9999", drop=True)        # Packets to 9999 vanish from now on
        rollsite.set_fault("9999", delay=2.0)        # or are held 2 s first
        rollsite.clear_faults()
        for packet, metadata in rollsite.packets(): ...

``prefix`` runs the router under another command (``ip netns exec <ns>``).
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fate_registry.fate import proxy_pb2
from tests.support.processes import support_module, terminate, wait_for_port_file


def _write_json(path: Path, document: Any) -> None:
    """Atomically, so the router never reads half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(path)


@dataclass
class RollsiteProcess:
    root: Path
    process: subprocess.Popen[bytes]
    address: str
    routes: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls, root: Path, host: str = "127.0.0.1", prefix: Sequence[str] = (), timeout: float = 30.0
    ) -> RollsiteProcess:
        root.mkdir(parents=True, exist_ok=True)
        port_file = root / "rollsite.port"
        port_file.unlink(missing_ok=True)
        (root / "control.json").unlink(missing_ok=True)
        routes: dict[str, Any] = {"route_table": {}, "permission": {"default_allow": False}}
        _write_json(root / "route_table.json", routes)
        log_path = root / "rollsite.log"
        command = [*prefix, *support_module("rollsite"), f"--root={root}", f"--host={host}"]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        address = wait_for_port_file(process, port_file, timeout, "the rollsite test router", log_path)
        return cls(root, process, address, routes)

    def set_route(self, party_id: str, role: str, address: str) -> None:
        """Route Packets for ``party_id``/``role`` to ``address`` (``ip:port``), in FATE's route_table.json shape."""
        ip, _, port = address.rpartition(":")
        self.routes["route_table"].setdefault(party_id, {})[role] = [{"ip": ip, "port": int(port)}]
        _write_json(self.root / "route_table.json", self.routes)

    def set_fault(self, party_id: str, *, drop: bool = False, delay: float = 0.0) -> None:
        self.faults[party_id] = {"drop": drop, "delay": delay}
        _write_json(self.root / "control.json", self.faults)

    def clear_faults(self) -> None:
        self.faults.clear()
        _write_json(self.root / "control.json", self.faults)

    def packets(self) -> list[tuple[bytes, dict[str, str]]]:
        """Every Packet seen so far, oldest first: its bytes as received (body left out above 64 KiB) and metadata."""
        path = self.root / "packets.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]
        entries = [json.loads(line) for line in lines]
        return [(base64.b64decode(entry["packet"]), entry["metadata"]) for entry in entries]

    def decoded(self) -> list[proxy_pb2.Packet]:
        return [proxy_pb2.Packet.FromString(raw) for raw, _ in self.packets()]

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it has not ended within ``timeout`` s. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        terminate(self.process, timeout)

    def __enter__(self) -> RollsiteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
