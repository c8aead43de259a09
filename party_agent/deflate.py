"""How an archive entry is written: deflated (ISA-L, on threads, memory flat) when a sample says it pays, else stored.

A file is deflated in independent segments (the pieces it is read in, about 1 MiB each): each is
compressed by a fresh raw deflate stream flushed with ``Z_FULL_FLUSH`` (byte-aligned, no reference
back into the previous segment), so segments compress on several threads at once and their
concatenation, closed by an empty final block, is one valid raw deflate stream. ISA-L releases the
GIL while it compresses. At most two segments per thread are in flight, so memory stays a few MiB
per thread whatever the file's size.

A content an archive holds more than once (a FATE model's last checkpoint is its model's buffers again) is
deflated once: :class:`DeflatedCopies` keeps the first entry's deflate stream (in memory up to
:data:`KEPT_IN_MEMORY_BYTES`, else in an unlinked temporary file) and writes it again for the next.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from isal import isal_zlib

from fate_registry.archives_conf import ArchivesConf

# An empty fixed-Huffman block with BFINAL set: the end of a raw deflate stream.
FINAL_BLOCK = b"\x03\x00"
SAMPLE_BYTES = 128 * 1024
SAMPLES = 3
SEGMENTS_PER_THREAD = 2
KEPT_IN_MEMORY_BYTES = 8 * 1024 * 1024


def _compressed_length(data: bytes, level: int) -> int:
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    return len(compressor.compress(data)) + len(compressor.flush(isal_zlib.Z_FINISH))


def worth_deflating(path: Path, size: int, conf: ArchivesConf) -> bool:
    """Whether ``path`` (``size`` bytes) shrinks by at least ``conf.min_saving`` when deflated.

    A file of up to :data:`SAMPLES` samples is compressed whole, a larger one by samples spread over
    it (its start, middle and end): a model's file is one kind of data throughout (a protobuf
    buffer of floats, a JSON sidecar). An empty file is stored.
    """
    if conf.compression == "stored" or size == 0:
        return False
    with path.open("rb") as file:
        if size <= SAMPLES * SAMPLE_BYTES:
            sample = file.read()
        else:
            step = (size - SAMPLE_BYTES) // (SAMPLES - 1)
            sample = b"".join(os.pread(file.fileno(), SAMPLE_BYTES, i * step) for i in range(SAMPLES))
    if not sample:
        return False
    return _compressed_length(sample, conf.deflate_level) <= (1 - conf.min_saving) * len(sample)


def _segment(data: bytes, level: int) -> bytes:
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(isal_zlib.Z_FULL_FLUSH)


def deflate_segments(pieces: Iterable[bytes], level: int, pool: ThreadPoolExecutor, threads: int) -> Iterator[bytes]:
    """The raw deflate stream of ``pieces``' concatenation, in order, each piece compressed on ``pool``.

    At most ``SEGMENTS_PER_THREAD * threads`` pieces are read ahead of the one yielded.
    """
    in_flight: deque[Future[bytes]] = deque()
    try:
        for piece in pieces:
            in_flight.append(pool.submit(_segment, piece, level))
            if len(in_flight) >= SEGMENTS_PER_THREAD * threads:
                yield in_flight.popleft().result()
        while in_flight:
            yield in_flight.popleft().result()
        yield FINAL_BLOCK
    finally:
        for future in in_flight:
            future.cancel()


@dataclass
class DeflatedCopies:
    """The deflate streams of the contents (by SHA-256) that appear more than once in an archive's files.

    ``repeated`` are those contents; ``directory`` is where a stream too large for memory is spooled (a
    temporary file, unlinked: nothing is left behind). :meth:`close` frees them.
    """

    repeated: frozenset[str]
    directory: Path
    _kept: dict[str, tuple[IO[bytes], int]] = field(default_factory=dict)

    @classmethod
    def of(cls, contents: Iterable[str], directory: Path) -> DeflatedCopies:
        """For an archive of files whose SHA-256 are ``contents`` (empty: unknown, never shared)."""
        counts = Counter(sha256 for sha256 in contents if sha256)
        return cls(frozenset(sha256 for sha256, count in counts.items() if count > 1), directory)

    def keeping(self, sha256: str, segments: Iterator[bytes]) -> Iterator[bytes]:
        """``segments`` (a deflate stream of the content ``sha256``), kept as they pass when it appears again."""
        if sha256 not in self.repeated or sha256 in self._kept:
            yield from segments
            return
        # kept past this call: close() frees it
        spool = tempfile.SpooledTemporaryFile(max_size=KEPT_IN_MEMORY_BYTES, dir=str(self.directory))  # noqa: SIM115
        size = 0
        try:
            for segment in segments:
                spool.write(segment)
                size += len(segment)
                yield segment
        except BaseException:
            spool.close()
            raise
        self._kept[sha256] = (spool, size)

    def kept(self, sha256: str) -> int | None:
        """The size of the deflate stream kept of the content ``sha256``, or None."""
        found = self._kept.get(sha256)
        return found[1] if found is not None else None

    def replay(self, sha256: str, chunk_bytes: int) -> Iterator[bytes]:
        """The kept deflate stream of the content ``sha256``, in pieces of ``chunk_bytes``."""
        spool, _ = self._kept[sha256]
        spool.seek(0)
        while piece := spool.read(chunk_bytes):
            yield piece

    def close(self) -> None:
        for spool, _ in self._kept.values():
            spool.close()
        self._kept.clear()
