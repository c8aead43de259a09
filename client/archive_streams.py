"""The archive byte streams of import and export.

The upload request stream and the verified, atomic write of an export stream into a directory. Memory stays flat
whatever the model size (DESIGN §5.4).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fate_registry.checksums import crc32
from fate_registry.chunks import chunk_payload, encode_chunk
from fate_registry.direct_io import DirectWriter
from fate_registry.errors import Reason, RegistryError
from fate_registry.files import fsync_dir
from fate_registry.identity import validate_name
from fate_registry.v1 import common_pb2 as common
from fate_registry.v1 import registry_pb2 as pb

Progress = Callable[[int], None]
"""Called with the number of bytes just sent or received."""
ExpectedSize = Callable[[int], None]
"""Called once, before an export's first byte, with the size of the model files the archive holds: a stored
archive is that plus its zip headers and manifest, a few hundred bytes per file; a deflated one is smaller."""


@dataclass(frozen=True)
class ExportResult:
    """The archive an export wrote, verified against the sender's trailer."""

    path: Path
    size: int
    #: CRC-32 of the whole archive, as the sender computed it and the client checked it. (No SHA-256:
    #: it would cost the client more CPU than the transfer; ``sha256sum`` the file if you need one.)
    crc32: int


class ArchiveUpload:
    """The ImportModel request stream: the header, then the file in chunks.

    gRPC consumes this iterator on its own thread, where an exception would only be logged. On a read
    failure, or a file whose size changes while it is sent, the stream therefore ends short and the
    failure is recorded in ``failure``: each chunk is sent only once the next read has succeeded (the
    last one once the end of the file came at the header's ``size``), so at least one chunk is never
    sent, and the party refuses an archive shorter than the header announced. Nothing is imported.
    """

    def __init__(
        self, file: BinaryIO, header: common.ImportModelHeader, chunk_size: int, progress: Progress | None
    ) -> None:
        self.file, self.header, self.chunk_size, self.progress = file, header, chunk_size, progress
        self.failure = ""

    def __iter__(self) -> Iterator[bytes]:
        yield pb.ImportModelRequest(header=self.header).SerializeToString()
        read, held = 0, b""  # held: read, sent once the next read has been checked
        while True:
            try:
                chunk = self.file.read(self.chunk_size)
            except OSError as exc:
                self.failure = f"reading failed after {read} bytes: {exc.strerror or exc}"
                return
            read += len(chunk)
            if read > self.header.size or (not chunk and read != self.header.size):
                self.failure = f"the file changed while it was sent ({self.header.size} bytes expected, {read} read)"
                return
            if held:
                yield encode_chunk(held)
                if self.progress:
                    self.progress(len(held))
            if not chunk:
                return
            held = chunk


def _data_loss(message: str) -> RegistryError:
    return RegistryError(Reason.DATA_LOSS, message)


def unwritable(output_dir: Path, exc: OSError) -> RegistryError:
    """The error for an archive that cannot be written into ``output_dir``: NO_SPACE when the disk is full."""
    reason = Reason.NO_SPACE if exc.errno in (errno.ENOSPC, errno.EDQUOT) else Reason.INVALID_ARGUMENT
    return RegistryError(reason, f"cannot write the archive into {output_dir}: {exc.strerror or exc}")


def receive_archive(
    messages: Iterator[bytes],
    output_dir: Path,
    what: str,
    progress: Progress | None = None,
    expected_size: ExpectedSize | None = None,
) -> ExportResult:
    """Write an export stream (serialized header, chunks, trailer) into ``output_dir`` atomically.

    ``what`` names the model in messages. Chunks are written straight from the received buffers.
    ``expected_size`` gets the header's ``content_size`` when the sender gave one.
    """
    first_raw = next(messages, None)
    first = pb.ExportModelResponse.FromString(first_raw) if first_raw is not None else None
    if first is None or first.WhichOneof("payload") != "header":
        raise _data_loss(f"the export of {what} did not start with a header")
    try:
        name = validate_name(first.header.file_name, "the archive file name")
    except RegistryError as exc:
        raise _data_loss(f"the registry sent an unsafe archive name for {what}: {exc.message}") from None
    if expected_size and first.header.content_size > 0:
        expected_size(first.header.content_size)
    try:
        fd, temp_name = tempfile.mkstemp(prefix=".export-", suffix=".part", dir=output_dir)
    except OSError as exc:
        raise unwritable(output_dir, exc) from None
    temp = Path(temp_name)
    try:
        crc, size = 0, 0
        trailer: common.ExportModelTrailer | None = None
        with os.fdopen(fd, "wb") as out, DirectWriter(fd) as writer:
            for raw in messages:
                chunk = chunk_payload(raw)
                if chunk is None or trailer is not None:
                    message = pb.ExportModelResponse.FromString(raw)
                    kind = message.WhichOneof("payload")
                    if trailer is not None or kind != "trailer":
                        raise _data_loss(f"the export of {what} sent an unexpected {kind or 'empty'} message")
                    trailer = message.trailer
                    continue
                writer.write(chunk)
                crc = crc32(chunk, crc)
                size += len(chunk)
                if progress:
                    progress(len(chunk))
            if trailer is None:
                raise _data_loss(f"the export of {what} ended after {size} bytes without its trailer; nothing was kept")
            if trailer.size != size or trailer.crc32 != crc:
                raise _data_loss(
                    f"the archive of {what} is corrupt: received {size} bytes with CRC-32 {crc:08x}, "
                    f"the registry sent {trailer.size} bytes with CRC-32 {trailer.crc32:08x}; nothing was kept"
                )
            writer.finish()
            os.fsync(out.fileno())
        target = output_dir / name
        os.replace(temp, target)
        fsync_dir(output_dir)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise unwritable(output_dir, exc) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return ExportResult(path=target, size=size, crc32=crc)
