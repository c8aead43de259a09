"""Large files written and read around the page cache: between reused, aligned buffers and the disk.

A model or an archive is written once and read rarely, so caching its pages buys nothing, and
allocating them costs much: on our VMs a freshly allocated page-cache page is often a page the host
must fault in first. Writing 1 GiB through the cache then took 1.3 to 3.7 s against 0.7 s with
``O_DIRECT``, and reading it back cold 0.6 to 2.7 s against 0.76 s (``dd``, docs/performance.md).

:class:`DirectWriter` copies what it is given into one of two aligned buffers; a full buffer is
written with ``O_DIRECT`` on a shared thread while the other fills. The last partial block goes
through the page cache, as does everything on a file system that refuses ``O_DIRECT`` (tmpfs, some
network file systems). The caller still fsyncs: ``O_DIRECT`` bypasses the cache, not the disk's own
write cache. :func:`read_pieces` is the reverse: the next buffer is read on a thread while the caller
copies pieces out of the current one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import threading
from collections.abc import Generator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

BLOCK = 4096  # O_DIRECT alignment of buffer addresses, lengths and offsets (mmap gives page-aligned memory)
BUFFER_BYTES = 4 * 1024 * 1024
MAX_IDLE_BUFFERS = 4
IO_THREADS = 4

_idle: list[mmap.mmap] = []
_idle_lock = threading.Lock()
_threads = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="direct-io")


def _after_fork_in_child() -> None:
    """A forked child has none of its parent's threads, but the pool would count the parent's as its own
    (idle ones included) and hand them work that never runs: the child gets a pool and a lock of its own."""
    global _threads, _idle_lock
    _threads = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="direct-io")
    _idle_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _take() -> mmap.mmap:
    with _idle_lock:
        if _idle:
            return _idle.pop()
    return mmap.mmap(-1, BUFFER_BYTES)


def _give(buffer: mmap.mmap) -> None:
    with _idle_lock:
        if len(_idle) < MAX_IDLE_BUFFERS:
            _idle.append(buffer)
            return
    buffer.close()


def _set_direct(fd: int, on: bool) -> bool:
    """Turn ``O_DIRECT`` on or off for ``fd``; False when the file system refuses it."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    wanted = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
    if wanted == flags:
        return True
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, wanted)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return False
        raise
    return True


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


class DirectWriter:
    """Writes a new file, opened for writing as ``fd``, from its first byte; see the module's docstring.

    Feed it with :meth:`write` from one thread, call :meth:`finish` once everything is given, then
    fsync ``fd``; :meth:`close` (or the ``with`` block's end) returns the buffers, whatever happened.
    A write error surfaces as the ``OSError`` of a plain write, from a later :meth:`write` or from
    :meth:`finish`.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer: mmap.mmap | None = None
        self._filled = 0
        self._offset = 0  # where the buffer being filled starts in the file
        self._pending: Future[None] | None = None
        self._pending_buffer: mmap.mmap | None = None
        self._direct: bool | None = None  # None until the first full buffer asks for O_DIRECT

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._buffer is None:
                self._buffer = _take()
            count = min(len(view), BUFFER_BYTES - self._filled)
            self._buffer[self._filled : self._filled + count] = view[:count]
            self._filled += count
            view = view[count:]
            if self._filled == BUFFER_BYTES:
                self._submit()

    def _submit(self) -> None:
        """Hand the full buffer to a writer thread once the previous one is written."""
        self._wait()
        if self._direct is None:
            self._direct = _set_direct(self.fd, True)
        assert self._buffer is not None
        self._pending_buffer, self._buffer = self._buffer, None
        self._pending = _threads.submit(self._write_direct, memoryview(self._pending_buffer), self._offset)
        self._offset += BUFFER_BYTES
        self._filled = 0

    def _write_direct(self, data: memoryview, offset: int) -> None:
        try:
            _write_all(self.fd, data, offset)
        except OSError as exc:
            # a device whose blocks are larger than BLOCK, or a file system that accepted the flag and
            # then refuses the write: through the page cache then, from here on
            if exc.errno != errno.EINVAL or not self._direct:
                raise
            _set_direct(self.fd, False)
            self._direct = False
            _write_all(self.fd, data, offset)
        finally:
            data.release()

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            pending.result()
        finally:
            if self._pending_buffer is not None:
                _give(self._pending_buffer)
                self._pending_buffer = None

    def finish(self) -> None:
        """Write everything given so far: whole blocks as before, the last partial block through the cache."""
        self._wait()
        view = memoryview(self._buffer)[: self._filled] if self._buffer is not None else memoryview(b"")
        try:
            whole = len(view) - len(view) % BLOCK if self._direct else 0
            if whole:
                self._write_direct(view[:whole], self._offset)
            if self._direct:
                _set_direct(self.fd, False)
            _write_all(self.fd, view[whole:], self._offset + whole)
        finally:
            view.release()
        self._offset += self._filled
        self._filled = 0

    def close(self) -> None:
        """Return the buffers (after the write in flight, if any, whose error is then dropped)."""
        try:
            with contextlib.suppress(OSError):
                self._wait()
        finally:
            if self._buffer is not None:
                _give(self._buffer)
                self._buffer = None

    def __enter__(self) -> DirectWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_into(fd: int, buffer: mmap.mmap, offset: int) -> int:
    return os.preadv(fd, [buffer], offset)


def read_pieces(path: Path, piece_bytes: int) -> Generator[bytes, None, None]:
    """``path``'s bytes in pieces of ``piece_bytes`` (the last one shorter), read around the page cache.

    A file smaller than a buffer is read plainly (the cache may well hold it), as is every file on a
    file system that refuses ``O_DIRECT``. Reading stops at the first short read: the end of the file,
    or a file cut short meanwhile, which the caller's size or checksum check then sees."""
    with path.open("rb") as file:
        fd = file.fileno()
        if os.fstat(fd).st_size < BUFFER_BYTES or not _set_direct(fd, True):
            while piece := file.read(piece_bytes):
                yield piece
            return
        yield from _read_direct(fd, piece_bytes)


def _read_direct(fd: int, piece_bytes: int) -> Generator[bytes, None, None]:
    """The pieces of ``fd`` (``O_DIRECT`` set), the next buffer read on a thread meanwhile."""
    buffers = [_take(), _take()]
    reading: Future[int] | None = _threads.submit(_read_into, fd, buffers[0], 0)
    try:
        offset, held = 0, b""  # held: the start of a piece that continues in the next buffer
        while reading is not None:
            count = reading.result()
            current = buffers[0]
            offset += count
            reading = _threads.submit(_read_into, fd, buffers[1], offset) if count == BUFFER_BYTES else None
            with memoryview(current) as whole:  # slices of it are taken only for one copy each
                start = 0
                if held:
                    take = min(piece_bytes - len(held), count)
                    if len(held) + count < piece_bytes and reading is not None:
                        held += whole[:count]
                    else:
                        yield held + whole[:take]
                        held = b""
                    start = take
                while count - start >= piece_bytes:
                    yield bytes(whole[start : start + piece_bytes])
                    start += piece_bytes
                if start < count:
                    held += whole[start:count]
            buffers.reverse()
        if held:
            yield held
    finally:
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(OSError, CancelledError):
                reading.result()
        for buffer in buffers:
            _give(buffer)
