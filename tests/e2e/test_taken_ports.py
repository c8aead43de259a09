"""A server of the registry owns its port: started where another program listens, it stops at once and says where.

gRPC's Python server sets SO_REUSEPORT by default, so a coordinator started on a port that FATE-Flow's own gRPC
server (which also sets it) holds would share the port with it, the kernel splitting connections between them.
The holder here is a plain socket with SO_REUSEPORT set, as FATE-Flow's has.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

# A refused start takes at most 5 s of the program's own CPU (start-up and imports: it neither retries nor waits),
# and its wall time stays far below any retry loop's even on a loaded machine, where imports alone can take 5 s.
CPU_WITHIN = 5.0
WALL_WITHIN = 20.0


@pytest.fixture
def holder() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket with SO_REUSEPORT, as FATE-Flow's gRPC server holds 9360."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _start(tmp_path: Path, conf: dict[str, object], *args: str) -> tuple[int, str, bool]:
    """The program's exit status, its stderr, and whether it stopped within the bounds (CPU and wall)."""
    path = tmp_path / "service_conf.yaml"
    path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    begun, cpu_before = time.monotonic(), _children_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "launcher", *args, "--conf", str(path), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    within = _children_cpu() - cpu_before <= CPU_WITHIN and time.monotonic() - begun <= WALL_WITHIN
    return done.returncode, done.stderr, within


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _conf(coordinator: int, agent: int, transfer: int) -> dict[str, object]:
    return {
        "coordinator": {"address": f"127.0.0.1:{coordinator}"},
        "parties": {"9999": {"address": f"127.0.0.1:{agent}", "transfer_address": f"127.0.0.1:{transfer}"}},
    }


def test_a_coordinator_whose_http_api_port_is_taken_stops_naming_it(tmp_path: Path, holder: int) -> None:
    conf = _conf(0, 0, 0)
    conf["coordinator"] = {"address": "127.0.0.1:0", "http": {"address": f"127.0.0.1:{holder}"}}
    code, stderr, quick = _start(tmp_path, conf, "server")
    assert code != 0
    assert quick
    message = f"cannot listen on 127.0.0.1:{holder} (coordinator.http.address): the address is already in use"
    assert message in stderr, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "data" / "coordinator").exists()  # stopped before it touched its catalog


def test_a_coordinator_on_a_taken_port_stops_naming_the_address(tmp_path: Path, holder: int) -> None:
    code, stderr, quick = _start(tmp_path, _conf(holder, 0, 0), "server")
    assert code != 0
    assert quick
    assert f"cannot listen on 127.0.0.1:{holder}: the address is already in use by another program" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "data" / "coordinator").exists()  # stopped before it touched its catalog


@pytest.mark.parametrize("which", ["address", "transfer_address"])
def test_an_agent_on_a_taken_port_stops_naming_the_address(tmp_path: Path, holder: int, which: str) -> None:
    conf = _conf(0, holder if which == "address" else 0, holder if which == "transfer_address" else 0)
    code, stderr, quick = _start(tmp_path, conf, "agent", "--party-id", "9999")
    assert code != 0
    assert quick
    assert f"cannot listen on 127.0.0.1:{holder}" in stderr and "already in use" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "data" / "parties" / "9999" / "agent.db").exists()  # no recovery, no database
