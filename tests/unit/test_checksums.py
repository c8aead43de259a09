"""Checksums of streamed bytes: the background SHA-256 equals hashlib's, in order, whatever the piece sizes."""

from __future__ import annotations

import hashlib
import os
import threading
import zlib

from fate_registry import checksums
from fate_registry.checksums import BackgroundSha256, crc32


def test_crc32_is_zips_crc() -> None:
    data = os.urandom(1 << 20)
    assert crc32(data) == zlib.crc32(data)
    assert crc32(data[1000:], crc32(data[:1000])) == zlib.crc32(data)


def test_background_sha256_keeps_order_across_small_and_large_pieces() -> None:
    sizes = [10, checksums.INLINE_BYTES * 4, 3, 5, checksums.INLINE_BYTES, 1, 2 << 20, 7]
    pieces = [os.urandom(n) for n in sizes]
    digest = BackgroundSha256()
    for piece in pieces:
        digest.update(memoryview(piece))
    assert digest.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_a_reused_buffer_is_copied_before_it_changes() -> None:
    buffer = bytearray(os.urandom(checksums.INLINE_BYTES * 2))
    expected = hashlib.sha256(bytes(buffer) * 2)
    digest = BackgroundSha256()
    digest.update(buffer)
    original = bytes(buffer)
    buffer[:] = b"\0" * len(buffer)  # the caller reuses its buffer at once
    digest.update(original)
    assert digest.hexdigest() == expected.hexdigest()


def test_memory_waiting_for_the_thread_is_bounded() -> None:
    digest = BackgroundSha256()
    piece = os.urandom(4 << 20)
    peak = 0
    for _ in range(16):
        digest.update(piece)
        peak = max(peak, digest._pending_bytes)
    assert peak <= checksums.MAX_PENDING_BYTES + len(piece)
    assert digest.hexdigest() == hashlib.sha256(piece * 16).hexdigest()


def test_an_abandoned_hasher_leaves_no_thread_running() -> None:
    checksums_idle = checksums.IDLE_SECONDS
    digest = BackgroundSha256()
    digest.update(os.urandom(1 << 20))
    thread = digest._thread
    assert thread is not None
    thread.join(timeout=checksums_idle + 5)
    assert not thread.is_alive()
    assert all(t.name != "sha256" or t is not thread for t in threading.enumerate())


def test_the_thread_ends_once_the_digest_is_taken() -> None:
    """An import hashes each large file with its own hasher: their threads must not pile up idling."""
    first, second = os.urandom(1 << 20), os.urandom(1 << 20)
    digest = BackgroundSha256()
    digest.update(first)
    thread = digest._thread
    assert thread is not None
    assert digest.hexdigest() == hashlib.sha256(first).hexdigest()
    thread.join(timeout=checksums.IDLE_SECONDS / 2)  # well before the idle timeout would end it
    assert not thread.is_alive()
    digest.update(second)  # more after the digest: a new thread, the same running hash
    assert digest.hexdigest() == hashlib.sha256(first + second).hexdigest()
