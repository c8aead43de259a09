"""The baselines: a bare gRPC server in a Python process of its own, doing nothing but gRPC.

``python -m bench.bare_stream serve PORT_FILE [WORKERS]`` runs a server with three raw-bytes methods:
Upload (client stream, the server only counts), Download (server stream of a file's bytes) and Echo
(unary, the request comes back), on a pool of WORKERS threads (default 4). The client functions time
one transfer of a file each way; ``bench.load`` calls Echo as many clients at once as it loads the
registry with.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from bench.bare_server import serve_bare
from fate_registry.channels import CHANNEL_OPTIONS

SERVICE = "bench.BareStream"


def _upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    total = sum(len(r) for r in requests)
    return str(total).encode()


def _download(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    path, chunk = request.decode().split("\n")
    with open(path, "rb") as f:
        while block := f.read(int(chunk)):
            yield block


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request


def serve(port_file: Path, workers: int = 4) -> None:
    handlers = {
        "Upload": grpc.stream_unary_rpc_method_handler(_upload),
        "Download": grpc.unary_stream_rpc_method_handler(_download),
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
    }
    serve_bare(SERVICE, handlers, workers, port_file)


def upload_seconds(address: str, path: Path, chunk: int) -> float:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.stream_unary(f"/{SERVICE}/Upload", request_serializer=None, response_deserializer=None)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while block := f.read(chunk):
                    yield block

        start = time.perf_counter()
        total = int(call(chunks()))
        elapsed = time.perf_counter() - start
    assert total == path.stat().st_size
    return elapsed


def download_seconds(address: str, path: Path, chunk: int) -> float:
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_stream(f"/{SERVICE}/Download", request_serializer=None, response_deserializer=None)
        start = time.perf_counter()
        total = sum(len(b) for b in call(f"{path.resolve()}\n{chunk}".encode()))
        elapsed = time.perf_counter() - start
    assert total == path.stat().st_size
    return elapsed


if __name__ == "__main__":
    serve(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 4)
