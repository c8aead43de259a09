"""Checksums of streamed bytes, priced for gigabyte models on two cores.

- CRC-32 (the zip's own checksum) by ISA-L: ~12 GiB/s here, against ~2 GiB/s for ``zlib.crc32``,
  so checking every entry of an archive costs next to nothing.
- SHA-256 runs at ~0.75 GiB/s: on the critical path of a stream that moves ~1 GiB/s it halves the
  throughput. :class:`BackgroundSha256` hashes on a thread of its own (hashlib releases the GIL for
  large buffers), so the stream's own thread receives and writes the next piece meanwhile.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque

from isal import isal_zlib

#: Bytes that may wait for the hashing thread; the stream blocks beyond it (memory stays flat).
MAX_PENDING_BYTES = 8 * 1024 * 1024
#: An idle hashing thread ends after this long; the next large piece starts another.
IDLE_SECONDS = 1.0
#: Pieces smaller than this are hashed inline: a thread hand-off costs more than hashing them.
INLINE_BYTES = 64 * 1024


def crc32(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32 (ISO-HDLC, as zip and ``zlib.crc32``) of ``data``, continuing from ``value``."""
    return isal_zlib.crc32(data, value)


class BackgroundSha256:
    """SHA-256 of pieces fed in order, computed beside the caller on a thread started on demand.

    Pieces are read after :meth:`update` returns, so a view into a buffer the caller may reuse is
    copied first; ``bytes`` and views of ``bytes`` are taken as they are. The thread ends by itself
    as soon as :meth:`hexdigest` has been asked, or once idle (so an abandoned hasher leaves nothing
    running either); :meth:`hexdigest` waits for what is queued.
    Feed it from one thread.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pending: deque[bytes | memoryview] = deque()
        self._pending_bytes = 0  # queued or being hashed
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._released = False  # hexdigest was asked: an idle thread ends at once (one file, one hasher)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        with self._cond:
            if len(data) < INLINE_BYTES and not self._pending_bytes:
                self._hash.update(data)  # nothing queued or in flight: order is kept
                return
            piece: bytes | memoryview
            if isinstance(data, bytes) or (isinstance(data, memoryview) and isinstance(data.obj, bytes)):
                piece = data
            else:
                piece = bytes(data)
            while self._pending_bytes >= MAX_PENDING_BYTES:
                self._cond.wait()
            self._pending.append(piece)
            self._pending_bytes += len(piece)
            self._released = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    if self._released or (not self._cond.wait(IDLE_SECONDS) and not self._pending):
                        self._thread = None
                        return
                piece = self._pending.popleft()
            self._hash.update(piece)
            with self._cond:
                self._pending_bytes -= len(piece)
                self._cond.notify_all()

    def hexdigest(self) -> str:
        """The digest of everything fed so far (more may be fed afterwards)."""
        with self._cond:
            while self._pending_bytes:
                self._cond.wait()
            self._released = True
            self._cond.notify_all()
        return self._hash.hexdigest()
