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
from fate_registry.grpc_server import StopFlag
from fate_registry.health import is_serving

STOP_GRACE_SECONDS = 10.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    port_file: Path
    log: IO[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None


def _command() -> list[str]:
    """The same ``fate-registry`` the user ran, so ``ps`` shows ``fate-registry agent --party-id …``."""
    script = Path(sys.executable).parent / "fate-registry"
    return [str(script)] if script.exists() else [sys.executable, "-m", "launcher"]


def _conf_args(conf_path: Path | None, data_dir: Path) -> list[str]:
    return [*(["--conf", str(conf_path)] if conf_path else []), "--data-dir", str(data_dir)]


def _spawn(name: str, args: list[str], run_dir: Path, log_dir: Path) -> Child:
    port_file = run_dir / f"{name}.addr"
    port_file.unlink(missing_ok=True)
    log = (log_dir / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [*_command(), *args, "--port-file", str(port_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Child(name, process, port_file, log)


def _wait_ready(children: list[Child], deadline: float, tls: TlsConf) -> dict[str, str]:
    """Poll each child's port file, then its gRPC health check (over ``tls``), until all serve or one dies."""
    addresses: dict[str, str] = {}
    pending = list(children)
    while pending:
        for child in list(pending):
            if not child.alive():
                raise RuntimeError(f"{child.name} exited with code {child.process.returncode}; see its log")
            if child.port_file.exists():
                address = child.port_file.read_text(encoding="utf-8").strip()
                if is_serving(address, tls=tls):
                    addresses[child.name] = address
                    pending.remove(child)
        if pending and time.monotonic() > deadline:
            names = ", ".join(c.name for c in pending)
            raise RuntimeError(f"{names} did not become ready in time; see the logs")
        if pending:
            time.sleep(0.05)  # a poll interval with a deadline, not a wait for readiness
    return addresses


def _stop(children: list[Child]) -> None:
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
    data_dir = conf.data_dir
    run_dir, log_dir = data_dir / "run", data_dir / "logs"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "ready").unlink(missing_ok=True)
    stop = StopFlag.install()
    base = _conf_args(conf_path, data_dir)
    children: list[Child] = []
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
        for party_id, child in agent_children.items():
            print(f"agent {party_id:<6} {agents[child.name]}  (pid {child.process.pid})")
        print(f"state in {data_dir.resolve()}, logs in {log_dir.resolve()}")
        print(f"use it: export FATE_REGISTRY_ADDRESS={coordinator_address}; flow model get-model-info --help")
        print("Ctrl-C stops everything.", flush=True)
        (run_dir / "ready").write_text(coordinator_address + "\n", encoding="utf-8")
        while not stop.wait(0.5):
            dead = [c for c in children if not c.alive()]
            if dead:
                print(f"{dead[0].name} exited with code {dead[0].process.returncode}; stopping", file=sys.stderr)
                return 1
        return 0
    except RuntimeError as exc:
        print(f"fate-registry up: {exc} (logs in {log_dir})", file=sys.stderr)
        return 1
    finally:
        _stop(children)
        shutil.rmtree(run_dir, ignore_errors=True)
