"""glibc's allocator, tuned for processes that stream gigabytes through many threads.

- Arenas: glibc gives each thread that allocates its own arena (up to 8 per core), and a server's 32
  gRPC threads fill theirs over its first minutes: under `bench/load.py` an agent's RSS rose ~12 % in
  its first minute before levelling off. Two arenas (what gunicorn and many Python servers set through
  ``MALLOC_ARENA_MAX``) took ~6 MiB off an agent's RSS at the same throughput in a measured run.
- Thresholds, for ``flow`` only: every streamed chunk is a fresh 1 MiB buffer. With glibc's sliding
  defaults the freed top of a heap above 2 MiB is handed back to the kernel at once, so the next chunk
  page-faults its memory in again (perf: a tenth of an export's CPU in ``flow`` went to zeroing pages;
  the export's CPU fell from 2.6 to 1.6 s per GiB). Chunks below 32 MiB come from the heap, and up to
  64 MiB of freed top is kept. ``flow`` lives for one transfer; the long-running servers keep glibc's
  defaults here, since a kept heap top would count against their memory budget for good.

Each setting is skipped when the operator set its ``MALLOC_*`` variable (their choice wins).
"""

from __future__ import annotations

import ctypes
import os

# mallopt's parameter numbers in glibc's malloc.h, and the environment variables that set them
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SERVER_ARENAS = 2
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024
_ARENAS = (("MALLOC_ARENA_MAX", M_ARENA_MAX, SERVER_ARENAS),)
_THRESHOLDS = (
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
)


def tune_malloc(transfer_client: bool = False) -> list[str]:
    """Cap the arenas, and for a ``transfer_client`` (``flow``) set the thresholds above; call it before
    threads start. Returns the variables whose setting was applied; nothing is where the C library is
    not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt  # glibc's soname; elsewhere this fails and nothing changes
    except (OSError, AttributeError):
        return []
    settings = _ARENAS + (_THRESHOLDS if transfer_client else ())
    return [name for name, param, value in settings if name not in os.environ and mallopt(param, value)]
