"""``DirectWriter``: the same bytes as a plain write, whatever the sizes, through O_DIRECT or not."""

from __future__ import annotations

import fcntl
import itertools
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fate_registry import direct_io
from fate_registry.direct_io import BLOCK, BUFFER_BYTES, DirectWriter, read_pieces
from tests.support.cluster import wait_until

# Sizes around every edge: empty, under a block, a block, a buffer, a buffer and a partial block, several buffers.
EDGES = [0, 1, BLOCK - 1, BLOCK, BUFFER_BYTES - 1, BUFFER_BYTES, BUFFER_BYTES + 1, 2 * BUFFER_BYTES + BLOCK + 7]
PATTERN = bytes(range(251)) * (3 * BUFFER_BYTES // 251 + 1)


def _write(path: Path, pieces: Sequence[bytes | memoryview]) -> bool:
    """Write ``pieces`` into a new file at ``path``; True if O_DIRECT was on while whole buffers were written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    direct_seen = False
    try:
        with DirectWriter(fd) as writer:
            for piece in pieces:
                writer.write(piece)
                direct_seen |= bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
            writer.finish()
            assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT, "the tail and later writes go through the cache"
        os.fsync(fd)
    finally:
        os.close(fd)
    return direct_seen


@pytest.mark.parametrize("size", EDGES)
def test_the_file_holds_exactly_what_was_written(tmp_path: Path, size: int) -> None:
    data = PATTERN[:size]
    pieces = [memoryview(data)[i : i + 1_000_003] for i in range(0, size, 1_000_003)]
    direct_seen = _write(tmp_path / "f", pieces)
    assert (tmp_path / "f").read_bytes() == data
    assert direct_seen == (size >= BUFFER_BYTES), "a file smaller than a buffer never asks for O_DIRECT"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(min_value=0, max_value=2 * BUFFER_BYTES + 3 * BLOCK), max_size=12))
def test_any_piece_sizes_give_the_same_bytes(tmp_path: Path, cuts: list[int]) -> None:
    bounds = sorted({0, *cuts, 2 * BUFFER_BYTES + 3 * BLOCK})
    data = PATTERN[: bounds[-1]]
    path = tmp_path / f"f{len(os.listdir(tmp_path))}"
    _write(path, [data[a:b] for a, b in itertools.pairwise(bounds)])
    assert path.read_bytes() == data


def test_a_file_system_refusing_o_direct_gets_plain_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # tmpfs on older kernels refuses the flag with EINVAL; stand in for it by refusing here
    monkeypatch.setattr(direct_io, "_set_direct", lambda fd, on: not on)
    data = PATTERN[: 2 * BUFFER_BYTES + 5]
    assert not _write(tmp_path / "f", [data])
    assert (tmp_path / "f").read_bytes() == data


def test_a_write_error_surfaces_as_the_os_error_of_a_plain_write(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    fd = os.open(tmp_path / "f", os.O_RDONLY)  # every write fails with EBADF
    try:
        with DirectWriter(fd) as writer, pytest.raises(OSError):
            writer.write(PATTERN[: 2 * BUFFER_BYTES])
            writer.finish()
    finally:
        os.close(fd)


def test_buffers_go_back_to_a_bounded_pool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(direct_io, "_idle", [])
    files = [os.open(tmp_path / f"f{n}", os.O_WRONLY | os.O_CREAT) for n in range(direct_io.MAX_IDLE_BUFFERS)]
    writers = [DirectWriter(fd) for fd in files]
    try:
        for writer in writers:  # each holds two buffers at once: one being written, one filling
            writer.write(PATTERN[: BUFFER_BYTES + 1])
    finally:
        for writer, fd in zip(writers, files, strict=True):
            writer.close()
            os.close(fd)
    assert len(direct_io._idle) == direct_io.MAX_IDLE_BUFFERS  # twice as many were given back


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    size=st.sampled_from([0, 1, BLOCK, BUFFER_BYTES - 1, BUFFER_BYTES, BUFFER_BYTES + 1, 2 * BUFFER_BYTES + 77]),
    piece=st.sampled_from([1 << 20, BUFFER_BYTES, 3 * BUFFER_BYTES // 2, 5 * BUFFER_BYTES // 2, 999_983]),
)
def test_read_pieces_gives_the_file_in_pieces_of_exactly_the_size_asked(tmp_path: Path, size: int, piece: int) -> None:
    path = tmp_path / f"r{size}"
    if not path.exists():
        path.write_bytes(PATTERN[:size])
    pieces = list(read_pieces(path, piece))
    assert b"".join(pieces) == PATTERN[:size]
    assert all(len(p) == piece for p in pieces[:-1])
    assert not pieces or 0 < len(pieces[-1]) <= piece


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_read_abandoned_midway_gives_its_buffers_and_its_file_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(direct_io, "_idle", [])
    path = tmp_path / "r"
    path.write_bytes(PATTERN[: 3 * BUFFER_BYTES])
    before = _open_fds()
    pieces = read_pieces(path, 1 << 20)
    assert next(pieces) == PATTERN[: 1 << 20]
    assert _open_fds() == before + 1
    pieces.close()  # GeneratorExit at the yield: the read ahead is waited for, the buffers pooled, the file closed
    assert _open_fds() == before
    assert len(direct_io._idle) == 2
    assert all(not buffer.closed for buffer in direct_io._idle)


def test_a_file_system_refusing_o_direct_is_read_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(direct_io, "_set_direct", lambda fd, on: not on)
    monkeypatch.setattr(direct_io, "_idle", [])
    path = tmp_path / "r"
    path.write_bytes(PATTERN[: 2 * BUFFER_BYTES + 5])
    pieces = list(read_pieces(path, 1 << 20))
    assert b"".join(pieces) == PATTERN[: 2 * BUFFER_BYTES + 5]
    assert direct_io._idle == []  # no aligned buffer was taken


def test_a_forked_child_reads_and_writes_with_threads_of_its_own(tmp_path: Path) -> None:
    """The parent's I/O threads do not exist in a child; without a pool of its own the child's first
    read waits forever on them. The child is bounded: killed by its PID if it has not ended in time."""
    source = tmp_path / "source"
    source.write_bytes(PATTERN[: 2 * BUFFER_BYTES + 5])
    assert b"".join(read_pieces(source, BUFFER_BYTES)) == source.read_bytes()  # the parent's threads started
    child = os.fork()
    if child == 0:  # the child's outcome is its exit status, whatever happens
        try:
            _write(tmp_path / "copy", list(read_pieces(source, BLOCK * 3)))
            os._exit(0)
        finally:
            os._exit(1)

    def ended() -> list[int]:
        """The child's wait status once it has ended, else nothing."""
        pid, status = os.waitpid(child, os.WNOHANG)
        return [status] if pid else []

    try:
        (status,) = wait_until(ended, 30, "the forked child's direct I/O")
    except TimeoutError:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        raise
    assert os.waitstatus_to_exitcode(status) == 0
    assert (tmp_path / "copy").read_bytes() == source.read_bytes()
