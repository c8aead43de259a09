"""Waiting for a child process to be ready: its port file under a deadline, failing fast if it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_INTERVAL = 0.05
REPO_ROOT = Path(__file__).resolve().parents[2]


def support_module(module: str) -> list[str]:
    """The command running ``python -m tests.support.<module>`` from any working directory: ``tests`` is
    not installed with the package, so the repository root goes first on the child's PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return ["env", f"PYTHONPATH={path}", sys.executable, "-m", f"tests.support.{module}"]


def tail(path: Path, size: int = 2000) -> str:
    """The end of a log, for an error message."""
    return path.read_text(encoding="utf-8", errors="replace")[-size:] if path.exists() else ""


def wait_for_port_file(
    process: subprocess.Popen[bytes], port_file: Path, timeout: float, what: str, log_path: Path
) -> str:
    """The address ``process`` writes to ``port_file`` once it serves; the process is killed on a timeout."""
    deadline = time.monotonic() + timeout
    while not port_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}: {tail(log_path)}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"{what} was not ready within {timeout} s: {tail(log_path)}")
        time.sleep(POLL_INTERVAL)  # a poll interval under a deadline
    return port_file.read_text(encoding="utf-8").strip()


def terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM by PID, then SIGKILL if it has not ended within ``timeout`` s."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (one that ended and was not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
