"""The deploy fan-out's baseline: the least work a durable deploy in FATE's layout asks of each party.

``python -m bench.bare_fanout serve PORT_FILE ROOT`` runs one bare party: a gRPC server (the agent's
thread pool size) with two raw-bytes methods and nothing else:

- ``Prepare(name)`` builds a child version the way a deploy must, in FATE's layout (``fate_flow.md``
  §3, the tree :func:`bench.fanout` deploys: 14 directories, 12 files hard-linked from the parent, the
  rewritten ``Pipeline`` and ``Pipeline.json`` written), in a staging directory; fsyncs the new files and
  every new directory; writes and fsyncs a journal file saying the child is prepared;
- ``Commit(name)`` renames the child into place, fsyncs its parent directory and writes and fsyncs a
  record file (where the agent commits a row to its metadata database).

:class:`BareFanout` starts one such process per party and times a two-phase fan-out from this process:
every slice's ``Prepare`` at once, then every ``Commit`` at once — what a deploy does, without parsing,
predict-DSL derivation, catalog, operation log or anything else. Its ratio of N parties to one party
is what the hardware allows a deploy's ratio to be.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

import grpc

from bench.bare_server import BareServer, serve_bare
from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.grpc_server import DEFAULT_RPC_WORKERS

SERVICE = "bench.BareFanout"
# The directories and files of a deployed slice below its version directory (a HeteroLR guest, as
# bench.fanout generates it); the files under "linked" are hard links of the parent's.
DIRECTORIES = (
    "define",
    "run_parameters",
    "run_parameters/data_transform_0",
    "run_parameters/hetero_lr_0",
    "run_parameters/pipeline",
    "variables",
    "variables/data",
    "variables/data/data_transform_0",
    "variables/data/data_transform_0/model",
    "variables/data/hetero_lr_0",
    "variables/data/hetero_lr_0/model",
    "variables/data/pipeline",
    "variables/data/pipeline/pipeline",
)
LINKED = (
    "define/define_meta.yaml",
    "run_parameters/data_transform_0/run_parameters.json",
    "run_parameters/hetero_lr_0/run_parameters.json",
    "run_parameters/pipeline/run_parameters.json",
    "variables/data/data_transform_0/model/DataTransformMeta",
    "variables/data/data_transform_0/model/DataTransformMeta.json",
    "variables/data/data_transform_0/model/DataTransformParam",
    "variables/data/data_transform_0/model/DataTransformParam.json",
    "variables/data/hetero_lr_0/model/HeteroLogisticRegressionMeta",
    "variables/data/hetero_lr_0/model/HeteroLogisticRegressionMeta.json",
    "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam",
    "variables/data/hetero_lr_0/model/HeteroLogisticRegressionParam.json",
)
WRITTEN = {"variables/data/pipeline/pipeline/Pipeline": 3000, "variables/data/pipeline/pipeline/Pipeline.json": 6000}
RECORD_BYTES = 2000
CALL_TIMEOUT = 60.0


def _write_synced(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"x" * size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BareParty:
    """One party's directories: the parent version, staging, published versions and records."""

    def __init__(self, root: Path) -> None:
        self.parent, self.staging = os.fspath(root / "parent"), os.fspath(root / "staging")
        self.models, self.records = os.fspath(root / "models"), os.fspath(root / "records")
        for directory in (self.staging, self.models, self.records):
            os.makedirs(directory)
        for directory in DIRECTORIES:
            os.makedirs(os.path.join(self.parent, directory))
        for name in LINKED:
            _write_synced(os.path.join(self.parent, name), 1000)

    def prepare(self, name: str) -> None:
        child = os.path.join(self.staging, name)
        os.mkdir(child)
        for directory in DIRECTORIES:
            os.mkdir(os.path.join(child, directory))
        for linked in LINKED:
            os.link(os.path.join(self.parent, linked), os.path.join(child, linked))
        for written, size in WRITTEN.items():
            _write_synced(os.path.join(child, written), size)
        for directory in (*DIRECTORIES, ""):
            _fsync_dir(os.path.join(child, directory))
        _write_synced(os.path.join(self.staging, name + ".prepared"), RECORD_BYTES)
        _fsync_dir(self.staging)

    def commit(self, name: str) -> None:
        os.rename(os.path.join(self.staging, name), os.path.join(self.models, name))
        _fsync_dir(self.models)
        _write_synced(os.path.join(self.records, name), RECORD_BYTES)
        _fsync_dir(self.records)


def serve(port_file: Path, root: Path) -> None:
    party = BareParty(root)

    def prepare(request: bytes, context: grpc.ServicerContext) -> bytes:
        party.prepare(request.decode())
        return b""

    def commit(request: bytes, context: grpc.ServicerContext) -> bytes:
        party.commit(request.decode())
        return b""

    handlers = {
        "Prepare": grpc.unary_unary_rpc_method_handler(prepare),
        "Commit": grpc.unary_unary_rpc_method_handler(commit),
    }
    serve_bare(SERVICE, handlers, DEFAULT_RPC_WORKERS, port_file)


class BareFanout:
    """One bare party process per party; :meth:`deploy_seconds` times one two-phase fan-out over them."""

    def __init__(self, root: Path, parties: Sequence[str], timeout: float = 30.0) -> None:
        servers: dict[str, BareServer] = {}
        try:
            for party in parties:
                workdir = root / party
                workdir.mkdir(parents=True)
                servers[party] = BareServer.start(workdir, timeout, "bench.bare_fanout", (str(workdir / "party"),))
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        self.servers = servers
        channels = {party: grpc.insecure_channel(s.address, options=CHANNEL_OPTIONS) for party, s in servers.items()}
        self.calls = {
            (party, method): channel.unary_unary(f"/{SERVICE}/{method}", None, None)
            for party, channel in channels.items()
            for method in ("Prepare", "Commit")
        }
        self.channels = list(channels.values())
        self.pool = futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="bare-fanout")
        self.runs = 0

    def _call(self, party: str, method: str, name: str) -> None:
        self.calls[party, method](name.encode(), timeout=CALL_TIMEOUT)

    def deploy_seconds(self, slices: Sequence[str]) -> float:
        """One deploy of ``slices`` (the party of each slice; a party may hold several): every Prepare at
        once, then every Commit at once."""
        self.runs += 1
        names = [(party, f"child-{self.runs}-{index}") for index, party in enumerate(slices)]
        began = time.perf_counter()
        for method in ("Prepare", "Commit"):
            for done in [self.pool.submit(self._call, party, method, name) for party, name in names]:
                done.result()
        return time.perf_counter() - began

    def stop(self) -> None:
        for channel in self.channels:
            channel.close()
        self.pool.shutdown(wait=True)
        for server in self.servers.values():
            server.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[2]), Path(sys.argv[3]))
