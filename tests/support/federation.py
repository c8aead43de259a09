"""A local federation of real processes (``fate-registry up``) for tests, benchmarks and demos."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fate_registry.grpc_server import http_port_file
from tests.support.processes import wait_for_port_file
from tests.support.started import register

DEFAULT_PARTIES: Mapping[str, Mapping[str, Any]] = {"9999": {}, "10000": {}}


def fate_registry_command() -> list[str]:
    script = Path(sys.executable).parent / "fate-registry"
    return [str(script)] if script.exists() else [sys.executable, "-m", "launcher"]


@dataclass
class LocalFederation:
    """A coordinator and one agent per party, each a process, on free loopback ports."""

    root: Path
    process: subprocess.Popen[bytes]
    address: str
    parties: tuple[str, ...]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def model_cache(self, party_id: str) -> Path:
        return self.data_dir / "parties" / party_id / "model_local_cache"

    @classmethod
    def start(
        cls,
        root: Path,
        parties: Mapping[str, Mapping[str, Any]] = DEFAULT_PARTIES,
        extra_conf: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> LocalFederation:
        root.mkdir(parents=True, exist_ok=True)
        conf = {
            "coordinator": {"address": "127.0.0.1:0", "http": {"address": "127.0.0.1:0"}},
            "parties": {pid: {"address": "127.0.0.1:0", **settings} for pid, settings in parties.items()},
            **(extra_conf or {}),
        }
        conf_path = root / "service_conf.yaml"
        conf_path.write_text(yaml.safe_dump(conf), encoding="utf-8")
        data_dir = root / "data"
        ready = data_dir / "run" / "ready"
        log_path = root / "up.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*fate_registry_command(), "up", "--conf", str(conf_path), "--data-dir", str(data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        address = wait_for_port_file(process, ready, timeout, "fate-registry up", log_path)
        federation = cls(root, process, address, tuple(parties), log_path)
        register(federation)
        return federation

    def running(self) -> bool:
        return self.process.poll() is None

    def agent_address(self, party_id: str) -> str:
        """The bound address of a party's agent, from ``up``'s banner."""
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("agent ") and line.split()[1] == party_id:
                return line.split()[2]
        raise KeyError(party_id)

    def agent_http_address(self, party_id: str) -> str:
        """A party's agent's transfer endpoint (and ``/metrics``), host:port, from the port file it writes."""
        return (self.data_dir / "run" / f"agent-{party_id}.http").read_text(encoding="utf-8").strip()

    @property
    def http_address(self) -> str:
        """The coordinator's FATE-Flow HTTP API (host:port), from the port file it writes beside its own."""
        port_file = http_port_file(self.data_dir / "run" / "coordinator.addr")
        if not port_file.exists():
            raise KeyError("the coordinator serves no FATE-Flow HTTP API (coordinator.http.enabled is false)")
        return port_file.read_text(encoding="utf-8").strip()

    def pids(self) -> dict[str, int]:
        """PIDs of the children, by name (``coordinator``, ``agent-9999``), from ``up``'s banner."""
        found = {}
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if "(pid " in line:
                name = "coordinator" if line.startswith("coordinator") else f"agent-{line.split()[1]}"
                found[name] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
        return found

    def stop(self, timeout: float = 30.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for pid in self.pids().values():  # up could not stop its children: do it for it
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
