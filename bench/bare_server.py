"""Baseline servers: a bare gRPC server of raw-bytes methods, and the launcher of its process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.grpc_server import write_port_file
from tests.support.processes import terminate, wait_for_port_file

REPO = Path(__file__).resolve().parents[1]


def serve_bare(
    service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]], workers: int, port_file: Path
) -> None:
    """Serve ``handlers`` as ``service`` on a loopback port written into ``port_file``, until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), options=CHANNEL_OPTIONS)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    write_port_file(port_file, f"127.0.0.1:{port}")
    server.wait_for_termination()


@dataclass
class BareServer:
    """A baseline server process: ``python -m MODULE serve PORT_FILE *ARGS``, which writes its address
    into PORT_FILE once it serves."""

    process: subprocess.Popen[bytes]
    address: str

    @classmethod
    def start(
        cls, workdir: Path, timeout: float = 30.0, module: str = "bench.bare_stream", args: Sequence[str] = ("4",)
    ) -> BareServer:
        name = module.rpartition(".")[2]
        port_file = workdir / f"{name}.addr"
        log = workdir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", module, "serve", str(port_file), *args],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(process, wait_for_port_file(process, port_file, timeout, f"the {name} server", log))

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.process, timeout)
