"""A benchmark's progress lines, and the scratch directory it works in: made under ``--workdir`` (or the
system temp dir), removed at the end unless ``--keep``. Inside it SIGTERM unwinds like Ctrl-C, so the servers a
benchmark started are stopped by their cleanup (by PID) and the directory goes too."""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


def log(message: str) -> None:
    """A benchmark's progress line on stderr (stdout keeps the tables and the JSON line)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: Path | None, keep: bool) -> Iterator[Path]:
    signal.signal(signal.SIGTERM, _terminate)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent)).resolve()
    try:
        yield workdir
    finally:
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
