"""Durable writes: fsync of directories, and write-behind so a final fsync finds little left to do."""

from __future__ import annotations

import os
from pathlib import Path

WRITE_BEHIND_BYTES = 16 * 1024 * 1024


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make the creation, rename or removal of entries in ``path`` durable."""
    _fsync(path)


def fsync_file(path: Path) -> None:
    """Make the content of a file that a library wrote (and closed) durable."""
    _fsync(path)


def write_durably(path: Path, data: bytes) -> None:
    """Write a new file and fsync its bytes (its directory's fsync, which makes its name durable, is the
    caller's). A file of that name (a hard link of another version's file, say) is unlinked first, never
    written through."""
    path.unlink(missing_ok=True)
    with path.open("xb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_tree(root: Path) -> None:
    """:func:`fsync_dir` of every directory of the tree at ``root``."""
    for directory, _dirs, _files in os.walk(root):
        _fsync(directory)


class WriteBehind:
    """Starts writeback of each 16 MiB written to ``fd`` as soon as it is written.

    Without it a large file's dirty pages pile up in the page cache and the final fsync waits for
    all of them at once; with it the disk works while the stream still arrives. (On Linux,
    ``POSIX_FADV_DONTNEED`` on dirty pages starts their writeback and lets clean ones go.)
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.written = 0
        self.started = 0

    def wrote(self, count: int) -> None:
        self.written += count
        if self.written - self.started >= WRITE_BEHIND_BYTES:
            os.posix_fadvise(self.fd, self.started, self.written - self.started, os.POSIX_FADV_DONTNEED)
            self.started = self.written
