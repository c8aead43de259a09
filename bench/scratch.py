"""A benchmark's progress lines, and the scratch directory it works in: made under ``--workdir`` (or the
system temp dir), removed at the end unless ``--keep``. Inside it SIGTERM unwinds like Ctrl-C, so the servers a
benchmark started are stopped by their cleanup (by PID) and the directory goes too."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
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


def sized_main(
    prog: str, doc: str, prefix: str, run: Callable[[int, int, Path], object], argv: Sequence[str] | None
) -> int:
    """The command line of a benchmark of one model size: ``[--size-mib] [--runs] [--workdir] [--keep]``;
    ``run(size_mib, runs, workdir)`` inside a scratch directory named ``prefix``."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each operation (default 3)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="parent of the scratch directory (default: the system temp dir)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.size_mib < 1 or args.runs < 1:
        parser.error("--size-mib and --runs must be at least 1")
    with scratch_dir(prefix, args.workdir, args.keep) as workdir:
        run(args.size_mib, args.runs, workdir)
    return 0
