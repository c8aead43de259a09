"""How an archive entry is written: deflated (ISA-L, on threads, memory flat) when a sample says it pays, else stored.

A file is deflated in independent segments (the pieces it is read in, about 1 MiB each): each is
compressed by a fresh raw deflate stream flushed with ``Z_FULL_FLUSH`` (byte-aligned, no reference
back into the previous segment), so segments compress on several threads at once and their
concatenation, closed by an empty final block, is one valid raw deflate stream. ISA-L releases the
GIL while it compresses. At most two segments per thread are in flight, so memory stays a few MiB
per thread whatever the file's size.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from isal import isal_zlib

from fate_registry.archives_conf import ArchivesConf

# An empty fixed-Huffman block with BFINAL set: the end of a raw deflate stream.
FINAL_BLOCK = b"\x03\x00"
SAMPLE_BYTES = 128 * 1024
SAMPLES = 3
SEGMENTS_PER_THREAD = 2


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
