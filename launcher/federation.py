"""``fate-registry up``: a coordinator and one agent per party as child processes, stopped together."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fate_registry.config import ServiceConf, TlsConf
from fate_registry.grpc_server import StopFlag, http_port_file
from fate_registry.health import is_serving

STOP_GRACE_SECONDS = 10.0
# The end of a child's log shown when it ends: that many lines, read from at most that many last bytes.
TAIL_LINES = 5
TAIL_BYTES = 16384
FATE_FLOW_API_LABEL = "fate-flow api"  # the banner line naming the coordinator's FATE-Flow HTTP API
STOPPING = "; stopping the federation"  # up stops every child when one ends
PROGRAM_PREFIX = "fate-registry: "  # how launcher.main prefixes the one line it ends with on an error


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log: IO[bytes]
    log_path: Path
    log_start: int  # where this run's output begins in the (appended) log

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_message(self, then: str = "") -> str:
        """How the child ended and ``then`` what follows, on one line, then the last lines of this run's log.

        A server that cannot start says why in its last line, which the first line quotes (a child
        killed by a signal wrote no such line: the signal is named). The logs hold no secrets: the
        programs never log a password or key.
        """
        code = self.process.returncode
        lines = _last_lines(self.log_path, self.log_start, TAIL_LINES)
        if code < 0:
            summary = f"{self.name} was killed by {_signal_name(-code)}"
        else:
            summary = f"{self.name} exited with code {code}"
            if code > 0 and lines:
                summary += ": " + lines.pop().removeprefix(PROGRAM_PREFIX)
        summary += then
        if not lines:
            return f"{summary}\n  its log: {self.log_path}"
        shown = "\n".join(f"    {line}" for line in lines)
        return f"{summary}\n  the last lines of its log {self.log_path}:\n{shown}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _last_lines(path: Path, start: int, count: int) -> list[str]:
    """The last ``count`` non-empty lines written to ``path`` after offset ``start``, oldest first."""
    with path.open("rb") as log:
        end = log.seek(0, 2)
        log.seek(max(start, end - TAIL_BYTES))
        lines = log.read().decode("utf-8", "replace").splitlines()
    if start < end - TAIL_BYTES:
        lines = lines[1:]  # read from the middle of a line
    return [line.rstrip() for line in lines if line.strip()][-count:]


def _command() -> list[str]:
    """The same ``fate-registry`` the user ran, so ``ps`` shows ``fate-registry agent --party-id …``."""
    script = Path(sys.executable).parent / "fate-registry"
    return [str(script)] if script.exists() else [sys.executable, "-m", "launcher"]


def _conf_args(conf_path: Path | None, data_dir: Path) -> list[str]:
    return [*(["--conf", str(conf_path)] if conf_path else []), "--data-dir", str(data_dir)]


def _spawn(name: str, args: list[str], run_dir: Path, log_dir: Path) -> _Child:
    port_file = run_dir / f"{name}.addr"
    port_file.unlink(missing_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    start = log.tell()  # before the child writes: it shares this file offset
    process = subprocess.Popen(
        [*_command(), *args, "--port-file", str(port_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return _Child(name, process, port_file, log, log_path, start)


def _wait_ready(children: list[_Child], deadline: float, tls: TlsConf) -> dict[str, str]:
    """Poll each child's port file, then its gRPC health check (over ``tls``), until all serve or one dies."""
    addresses: dict[str, str] = {}
    pending = list(children)
    while pending:
        for child in list(pending):
            if not child.alive():
                raise RuntimeError(child.exit_message(STOPPING))
            if child.port_file.exists():
                address = child.port_file.read_text(encoding="utf-8").strip()
                if is_serving(address, tls=tls):
                    addresses[child.name] = address
                    pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            raise RuntimeError(
                f"{names} did not become ready in time; see {', '.join(str(c.log_path) for c in pending)}"
            )
        if pending:
            time.sleep(0.05)  # a poll interval with a deadline, not a wait for readiness
    return addresses


def _stop(children: list[_Child]) -> None:
    for child in children:
        if child.alive():
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        child.log.close()


def run_federation(conf: ServiceConf, conf_path: Path | None, ready_timeout: float) -> int:
    """Run the federation until Ctrl-C or SIGTERM; the exit code is 1 when a process failed to start or died."""
    data_dir = conf.data_dir
    run_dir, log_dir = data_dir / "run", data_dir / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "ready").unlink(missing_ok=True)
    stop = StopFlag.install()
    base = _conf_args(conf_path, data_dir)
    children: list[_Child] = []
    try:
        deadline = time.monotonic() + ready_timeout
        agent_children = {
            pid: _spawn(f"agent-{pid}", ["agent", *base, "--party-id", pid], run_dir, log_dir) for pid in conf.parties
        }
        children.extend(agent_children.values())
        agents = _wait_ready(children, deadline, conf.coordinator.tls)
        overrides = [f"--agent-address={pid}={agents[f'agent-{pid}']}" for pid in conf.parties]
        coordinator = _spawn("coordinator", ["server", *base, *overrides], run_dir, log_dir)
        children.append(coordinator)
        coordinator_address = _wait_ready([coordinator], deadline, conf.coordinator.tls)["coordinator"]
        print(f"coordinator  {coordinator_address}  (pid {coordinator.process.pid})")
        http_file = http_port_file(coordinator.port_file)
        if http_file.exists():
            host, _, port = http_file.read_text(encoding="utf-8").strip().rpartition(":")
            print(f"{FATE_FLOW_API_LABEL}  {host}:{port}  (FATE's own clients: flow init --ip {host} --port {port})")
            if conf.coordinator.http.dashboard:
                print(f"dashboard     http://{host}:{port}/dashboard/  (metrics: http://{host}:{port}/metrics)")
        for party_id, child in agent_children.items():
            print(f"agent {party_id:<6} {agents[child.name]}  (pid {child.process.pid})")
        print(f"state in {data_dir.resolve()}, logs in {log_dir.resolve()}")
        print(f"use it: export FATE_REGISTRY_ADDRESS={coordinator_address}; flow model get-model-info --help")
        print("Ctrl-C stops everything.", flush=True)
        (run_dir / "ready").write_text(coordinator_address + "\n", encoding="utf-8")
        while not stop.wait(0.5):
            dead = [c for c in children if not c.alive()]
            if dead:
                raise RuntimeError(dead[0].exit_message(STOPPING))
        return 0
    except RuntimeError as exc:
        print(f"fate-registry up: {exc}", file=sys.stderr)
        return 1
    finally:
        _stop(children)
        shutil.rmtree(run_dir, ignore_errors=True)
