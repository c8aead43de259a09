"""A federation of separately started processes, for fault tests: kill, pause or restart any one.

Unlike :class:`~tests.support.federation.LocalFederation` (``fate-registry up``, which stops
everything when one child dies), every process here is started on its own::

    fate-registry agent  --conf <root>/conf/agent-<party>.yaml --data-dir <root>/data --party-id <party> --port-file …
    fate-registry server --conf <root>/conf/coordinator.yaml   --data-dir <root>/data --agent-address <party>=<addr> …

Usage in a test::

    with Cluster.start(tmp_path / "cluster", {"9999": {}, "10000": {}}, {"deploy_timeout": 3}) as cluster:
        cluster.pause("agent-10000")        # SIGSTOP: its calls hang until their deadline
        cluster.resume("agent-10000")       # SIGCONT
        cluster.kill("agent-10000")         # SIGKILL, reaped
        cluster.restart("agent-10000")      # on the port it had, so the coordinator's address stays valid
        cluster.restart("coordinator")      # same port, same agent addresses
        cluster.restart("agent-10000", {"FATE_REGISTRY_FAULTPOINT": "agent.commit.published"})
        cluster.wait_stopped("agent-10000") # it stopped itself at that fault point (fate_registry.faultpoints)
        cluster.route("10000", "127.0.0.1:7000")  # the coordinator reaches the agent there (a proxy) from its restart
        cluster.add_replica("coordinator-2")  # a second replica (on a MySQL catalog: the same one)

Processes are named ``coordinator`` (``coordinator-<n>`` for further replicas) and
``agent-<party_id>``. Each writes its log to ``<root>/logs/<name>.log`` (appended across restarts).
Every wait is bounded by a deadline, and every process is stopped by its PID (:meth:`Cluster.stop_all`,
also on leaving the ``with`` block).
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fate_registry import config
from fate_registry.grpc_server import http_port_file
from fate_registry.health import is_serving
from tests.support.federation import fate_registry_command
from tests.support.started import register

T = TypeVar("T")
COORDINATOR = "coordinator"
DEFAULT_PARTIES: Mapping[str, Mapping[str, Any]] = {"9999": {}, "10000": {}}
POLL_INTERVAL = 0.05
STOP_GRACE_SECONDS = 10.0


def wait_until(condition: Callable[[], T], timeout: float, what: str, interval: float = POLL_INTERVAL) -> T:
    """Poll ``condition`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)  # a poll interval under a deadline


def _is_coordinator(name: str) -> bool:
    return name.startswith(COORDINATOR)


def agent_name(party_id: str) -> str:
    return f"agent-{party_id}"


def _tail(path: Path, size: int = 3000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-size:] if path.exists() else ""


@dataclass
class _Process:
    name: str
    args: list[str]  # the subcommand and its own options (no --conf, --data-dir, --port-file)
    conf_path: Path
    port_file: Path
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)  # added to this process's environment
    popen: subprocess.Popen[bytes] | None = None
    address: str = ""  # host:port it bound the first time; kept on restart

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Cluster:
    """A coordinator and one agent per party, each a process of its own, on loopback."""

    root: Path
    conf: dict[str, Any]
    ready_timeout: float = 60.0
    # A command prefix per process name (``ip netns exec <ns>``); such a process is ready once it
    # wrote its port file, as the test may not reach it.
    prefixes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    _processes: dict[str, _Process] = field(default_factory=dict, repr=False)
    _routes: dict[str, str] = field(default_factory=dict, repr=False)  # party id -> address the coordinator uses

    # -- starting -----------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        root: Path,
        parties: Mapping[str, Mapping[str, Any]] = DEFAULT_PARTIES,
        coordinator_conf: Mapping[str, Any] | None = None,
        ready_timeout: float = 60.0,
        extra_conf: Mapping[str, Any] | None = None,
        prefixes: Mapping[str, Sequence[str]] | None = None,
    ) -> Cluster:
        """Write the conf, start every agent, wait until each serves, then start the coordinator.

        ``parties`` maps each party id to extra settings of its agent (e.g. ``{"servings": [...]}``);
        ``coordinator_conf`` adds coordinator settings (e.g. ``{"call_timeout": 5, "deploy_timeout": 3}``);
        ``extra_conf`` adds top-level settings (e.g. ``{"model_store_address": {...}}``).
        Every port is 0 (chosen by the system); the data lives under ``root/data``.
        """
        root.mkdir(parents=True, exist_ok=True)
        conf: dict[str, Any] = {
            "coordinator": {"address": "127.0.0.1:0", "http": {"address": "127.0.0.1:0"}, **(coordinator_conf or {})},
            "parties": {str(pid): {"address": "127.0.0.1:0", **settings} for pid, settings in parties.items()},
            **(extra_conf or {}),
        }
        cluster = cls(root, conf, ready_timeout, prefixes or {})
        try:
            for party_id in conf["parties"]:
                cluster._spawn(agent_name(party_id), ["agent", "--party-id", party_id])
            for party_id in conf["parties"]:
                cluster._wait_ready(agent_name(party_id))
            cluster._spawn(COORDINATOR, ["server", *cluster._agent_overrides()])
            cluster._wait_ready(COORDINATOR)
        except BaseException:
            cluster.stop_all()
            raise
        register(cluster)
        return cluster

    def running(self) -> bool:
        """Whether any of its processes still runs."""
        return any(process.alive() for process in self._processes.values())

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(self.conf["parties"])

    @property
    def address(self) -> str:
        """The coordinator's ``host:port`` (the same across its restarts)."""
        return self._processes[COORDINATOR].address

    def address_of(self, name: str) -> str:
        """The ``host:port`` of any process (a coordinator replica, an agent)."""
        return self._process(name).address

    def http_address(self, name: str = COORDINATOR) -> str:
        """The FATE-Flow HTTP API of a coordinator (replica) that serves, from the file it writes its address to."""
        return http_port_file(self._process(name).port_file).read_text(encoding="utf-8").strip()

    def add_replica(self, name: str) -> str:
        """Start one more coordinator replica (``name`` begins with ``coordinator``) on the same conf,
        so on the same catalog: a MySQL one makes them replicas of one coordinator. Returns its address."""
        if not _is_coordinator(name):
            raise ValueError(f"a coordinator replica's name begins with {COORDINATOR!r}, not {name!r}")
        self._spawn(name, ["server", *self._agent_overrides()])
        self._wait_ready(name)
        return self.address_of(name)

    def agent_address(self, party_id: str) -> str:
        return self._processes[agent_name(party_id)].address

    def model_cache(self, party_id: str) -> Path:
        return self.data_dir / "parties" / party_id / "model_local_cache"

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def _agent_overrides(self) -> list[str]:
        return [f"--agent-address={pid}={self._routes.get(pid) or self.agent_address(pid)}" for pid in self.parties]

    def route(self, party_id: str, address: str | None) -> None:
        """From the coordinator's next (re)start, it reaches the party's agent at ``address`` (None: directly)."""
        self._routes.pop(party_id, None)
        if address:
            self._routes[party_id] = address

    def _write_conf(self, name: str, address: str) -> Path:
        """The shared conf, with this process's own address pinned once it has one (for restarts)."""
        document = copy.deepcopy(self.conf)
        if _is_coordinator(name):
            document["coordinator"]["replica_id"] = name  # the same replica across restarts
            if address:
                document["coordinator"]["address"] = address
        elif address:
            document["parties"][name.removeprefix("agent-")]["address"] = address
        path = self.root / "conf" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        return path

    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> None:
        previous = self._processes.get(name)
        address = previous.address if previous else ""
        process = _Process(
            name=name,
            args=args,
            conf_path=self._write_conf(name, address),
            port_file=self.root / "run" / f"{name}.addr",
            log_path=self.log_path(name),
            address=address,
            env=dict(env or {}),
        )
        process.port_file.parent.mkdir(parents=True, exist_ok=True)
        process.port_file.unlink(missing_ok=True)
        process.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            *self.prefixes.get(name, ()),
            *fate_registry_command(),
            *args[:1],
            "--conf",
            str(process.conf_path),
            "--data-dir",
            str(self.data_dir),
            "--port-file",
            str(process.port_file),
            *args[1:],
        ]
        with process.log_path.open("ab") as log:
            process.popen = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **process.env},
            )
        self._processes[name] = process

    def _wait_ready(self, name: str) -> None:
        """Poll the port file, then the gRPC health check, until the process serves (or died, or time ran out)."""
        process = self._processes[name]
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if not process.alive():
                code = process.popen.returncode if process.popen else None
                raise RuntimeError(f"{name} exited with {code}: {_tail(process.log_path)}")
            if process.port_file.exists():
                address = process.port_file.read_text(encoding="utf-8").strip()
                if address and (
                    name in self.prefixes or is_serving(address, tls=config.parse(self.conf).coordinator.tls)
                ):
                    if process.address and address != process.address:
                        raise RuntimeError(f"{name} came back on {address}, not {process.address}")
                    process.address = address
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was not serving within {self.ready_timeout} s: {_tail(process.log_path)}")
            time.sleep(POLL_INTERVAL)  # a poll interval under a deadline

    # -- faults -------------------------------------------------------------------------------------

    def _process(self, name: str) -> _Process:
        try:
            return self._processes[name]
        except KeyError:
            raise KeyError(f"no process {name!r} (known: {', '.join(self._processes)})") from None

    def pid(self, name: str) -> int:
        popen = self._process(name).popen
        assert popen is not None
        return popen.pid

    def alive(self, name: str) -> bool:
        return self._process(name).alive()

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Send ``sig`` to the process by PID; for SIGKILL, wait until it is gone (reaped)."""
        process = self._process(name)
        if not process.alive():
            return
        assert process.popen is not None
        os.kill(process.popen.pid, sig)
        if sig == signal.SIGKILL:
            process.popen.wait(timeout=timeout)

    def wait_stopped(self, name: str, timeout: float = 60.0) -> None:
        """Wait until the process is stopped (SIGSTOP, e.g. by itself at a fault point); fail if it exits."""

        def stopped() -> bool:
            process = self._process(name)
            if not process.alive():
                raise RuntimeError(f"{name} exited instead of stopping: {_tail(process.log_path)}")
            stat = Path(f"/proc/{self.pid(name)}/stat").read_text(encoding="ascii")
            return stat.rpartition(")")[2].split()[0] == "T"

        wait_until(stopped, timeout, f"{name} stopped")

    def pause(self, name: str) -> None:
        """SIGSTOP: the process holds its port but answers nothing until :meth:`resume`."""
        self.kill(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT."""
        self.kill(name, signal.SIGCONT)

    def stop(self, name: str, timeout: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM (and SIGCONT, in case it is paused) by PID; SIGKILL if it has not ended within ``timeout`` s."""
        process = self._processes.get(name)
        if process is None or process.popen is None:
            return
        popen = process.popen
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, signal.SIGTERM)
                os.kill(popen.pid, signal.SIGCONT)
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)

    def restart(self, name: str, env: Mapping[str, str] | None = None) -> None:
        """Stop the process if it runs, start it again on the same port, wait until it serves.

        ``env`` is added to its environment for this run only (e.g. a fault point to stop at).

        An agent keeps its address (so the coordinator's stays valid); the coordinator keeps its
        address and is given the same agent addresses. It has recovered once it serves: the
        coordinator finishes or rolls back in-flight deploys before it listens.
        """
        process = self._process(name)
        self.stop(name)
        args = ["server", *self._agent_overrides()] if _is_coordinator(name) else process.args
        self._spawn(name, args, env)
        self._wait_ready(name)

    def stop_all(self, timeout: float = STOP_GRACE_SECONDS) -> None:
        """Stop every process by PID: SIGTERM (+SIGCONT) to all at once, SIGKILL what outlives ``timeout`` s."""
        running = [p.popen for p in self._processes.values() if p.popen is not None and p.popen.poll() is None]
        for popen in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, signal.SIGTERM)
                os.kill(popen.pid, signal.SIGCONT)
        deadline = time.monotonic() + timeout
        for popen in running:
            try:
                popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=timeout)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
