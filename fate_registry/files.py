"""Durable writes: fsync of files and directories (large new files go through :mod:`fate_registry.direct_io`)."""

from __future__ import annotations

import os
from pathlib import Path


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
