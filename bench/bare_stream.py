"""The baselines: a bare gRPC server in a Python process of its own, doing nothing but gRPC.

``python -m bench.bare_stream serve PORT_FILE [WORKERS]`` runs a server with three raw-bytes methods:
Upload (client stream, the server only counts), Download (server stream of a file's bytes) and Echo
(unary, the request comes back), on a pool of WORKERS threads (default 4). The client functions time
one transfer of a file each way; ``bench.load`` calls Echo as many clients at once as it loads the
registry with.

Two more methods add to the bare streams only what a verified, durable transfer cannot do without,
and nothing of the registry (no zip, no manifest, no metadata, no CLI): the floors of an import and
an export on this machine.

- UploadStore: the client stream written into a file, every byte through CRC-32 and SHA-256, written
  around the page cache (:class:`DirectWriter`) and fsynced — what an import's agent must do at least.
- DownloadCold: a file read around the page cache (:func:`read_pieces`: a model is on the disk, not in
  memory) and streamed; the client writes it around the cache with a CRC-32 and fsyncs it — what an
  export must do at least.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from bench.bare_server import serve_bare
from fate_registry.channels import CHANNEL_OPTIONS
from fate_registry.checksums import BackgroundSha256, crc32
from fate_registry.direct_io import DirectWriter, read_pieces

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


def write_verified(pieces: Iterable[bytes], directory: Path, hash_pieces: bool) -> int:
    """Write ``pieces`` into a new file in ``directory`` as the registry writes a model or an archive:
    CRC-32 (and SHA-256 if ``hash_pieces``) of every byte, around the page cache, fsynced. The file is
    removed afterwards; returns the byte count."""
    fd, name = tempfile.mkstemp(dir=directory, prefix=".floor-")
    try:
        sha = BackgroundSha256() if hash_pieces else None
        crc = total = 0
        with DirectWriter(fd) as writer:
            for piece in pieces:
                crc = crc32(piece, crc)
                if sha is not None:
                    sha.update(piece)
                writer.write(piece)
                total += len(piece)
            writer.finish()
        os.fsync(fd)
        if sha is not None:
            sha.hexdigest()
        return total
    finally:
        os.close(fd)
        os.unlink(name)


def _upload_store(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    directory = Path(str(dict(context.invocation_metadata())["x-directory"]))
    return str(write_verified(requests, directory, hash_pieces=True)).encode()


def _download_cold(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    path, chunk = request.decode().split("\n")
    yield from read_pieces(Path(path), int(chunk))


def serve(port_file: Path, workers: int = 4) -> None:
    handlers = {
        "Upload": grpc.stream_unary_rpc_method_handler(_upload),
        "Download": grpc.unary_stream_rpc_method_handler(_download),
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "UploadStore": grpc.stream_unary_rpc_method_handler(_upload_store),
        "DownloadCold": grpc.unary_stream_rpc_method_handler(_download_cold),
    }
    serve_bare(SERVICE, handlers, workers, port_file)


def upload_seconds(address: str, path: Path, chunk: int, store_in: Path | None = None) -> float:
    """One upload of ``path``; with ``store_in``, the server stores it there as UploadStore does."""
    method, metadata = ("UploadStore", (("x-directory", str(store_in)),)) if store_in else ("Upload", None)
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.stream_unary(f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while block := f.read(chunk):
                    yield block

        start = time.perf_counter()
        total = int(call(chunks(), metadata=metadata))
        elapsed = time.perf_counter() - start
    assert total == path.stat().st_size
    return elapsed


def download_seconds(address: str, path: Path, chunk: int, store_in: Path | None = None) -> float:
    """One download of ``path``; with ``store_in``, read cold by the server and stored here by
    :func:`write_verified` (DownloadCold)."""
    method = "DownloadCold" if store_in else "Download"
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        call = channel.unary_stream(f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None)
        start = time.perf_counter()
        pieces = call(f"{path.resolve()}\n{chunk}".encode())
        total = write_verified(pieces, store_in, hash_pieces=False) if store_in else sum(len(b) for b in pieces)
        elapsed = time.perf_counter() - start
    assert total == path.stat().st_size
    return elapsed


if __name__ == "__main__":
    serve(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 4)
