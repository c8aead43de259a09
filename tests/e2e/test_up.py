"""`fate-registry up`: children named in ps, healthy, and all stopped by SIGTERM, even a double one."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.federation import LocalFederation
from tests.support.processes import alive


def test_up_runs_named_children_and_stops_them_all(tmp_path: Path) -> None:
    fed = LocalFederation.start(tmp_path, parties={"9999": {}, "10000": {}, "10001": {}})
    try:
        pids = fed.pids()
        assert set(pids) == {"coordinator", "agent-9999", "agent-10000", "agent-10001"}
        for name, pid in pids.items():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert (b"server" if name == "coordinator" else b"agent") in cmdline
        with grpc.insecure_channel(fed.address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        os.kill(fed.process.pid, signal.SIGTERM)
        os.kill(fed.process.pid, signal.SIGTERM)  # a second signal while the first is handled
        assert fed.process.wait(timeout=30) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids.values())
        assert not (fed.data_dir / "run").exists()
    finally:
        fed.stop()
