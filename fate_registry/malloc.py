"""glibc's allocator: fewer arenas for long-running servers, a kept heap for the CLI's transfers.

glibc gives each thread that allocates its own arena (up to 8 per core), and a server's 32 gRPC threads
fill theirs over its first minutes: under `bench/load.py` an agent's RSS rose ~12 % in its first
minute before levelling off. Two arenas (what gunicorn and many Python servers set through
``MALLOC_ARENA_MAX``) took ~6 MiB off an agent's RSS at the same throughput in a measured run.

gRPC hands ``flow`` each 1 MiB message of an export in a buffer of its own. With glibc's defaults such
a buffer is mmapped, or the heap top under it is trimmed once freed, so every message faults fresh pages
in (on our VMs, pages the host must fault in too). A heap that serves buffers up to 4 MiB and keeps up
to 16 MiB of free top took ``flow``'s CPU for a 1 GiB export from 1.20 to 1.37 s to 0.94 to 1.08 s (three
alternated runs each), its peak RSS up by at most 18 MiB.
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers in glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SERVER_ARENAS = 2
STREAM_MMAP_THRESHOLD = 4 * 1024 * 1024
STREAM_TRIM_THRESHOLD = 16 * 1024 * 1024


def _mallopt(settings: dict[int, int], overridden_by: tuple[str, ...]) -> bool:
    """Apply ``settings`` (parameter -> value); False where the C library is not glibc or the operator
    set one of the ``overridden_by`` environment variables (their choice wins)."""
    if any(name in os.environ for name in overridden_by):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc's soname; elsewhere this fails and nothing changes
    except (OSError, AttributeError):
        return False
    return all(mallopt(parameter, value) for parameter, value in settings.items())


def limit_arenas(count: int = SERVER_ARENAS) -> bool:
    """Cap glibc's malloc arenas (before threads start); False where the C library is not glibc or
    ``MALLOC_ARENA_MAX`` is set."""
    return _mallopt({M_ARENA_MAX: count}, ("MALLOC_ARENA_MAX",))


def keep_heap_for_streams() -> bool:
    """Serve buffers up to 4 MiB from a heap that keeps 16 MiB of free top (for the CLI, see above);
    False where the C library is not glibc or ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` is set."""
    return _mallopt(
        {M_MMAP_THRESHOLD: STREAM_MMAP_THRESHOLD, M_TRIM_THRESHOLD: STREAM_TRIM_THRESHOLD},
        ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"),
    )
