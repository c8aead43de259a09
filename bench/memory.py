"""Peak memory of benchmark processes, read from ``/proc``; children reaped with ``os.wait4``.

A child we start ourselves reports its peak resident set through ``VmHWM``, sampled while it runs (KiB),
so :func:`run_reaped` starts it with ``Popen`` and reaps it itself. A long-lived server's peak is
``VmHWM`` in ``/proc/<pid>/status``; writing ``5`` to ``/proc/<pid>/clear_refs`` resets it to the
current RSS (Linux ≥ 4.0, and only for a process we may ptrace: root or the same user), so a peak
can be taken per operation. :class:`PeakWatch` checks that the reset took and, where it did not,
reports the lifetime peak and says so. CPU time (``ru_utime + ru_stime``, or ``/proc/<pid>/stat``)
is taken alongside: on a 2-core machine it shows which process an operation's time goes to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KIB = 1024
MIB = 1024 * 1024
_RESET_SLACK_KIB = 1024
"""After a reset VmHWM equals VmRSS; an idle server may still grow a little between the two reads."""


def status_kib(pid: int, key: str) -> int:
    """One ``kB`` field of ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise KeyError(f"/proc/{pid}/status has no {key}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)", which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak(pid: int) -> bool:
    """Reset the process's VmHWM to its current RSS; True when the reset visibly took."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return status_kib(pid, "VmHWM") <= status_kib(pid, "VmRSS") + _RESET_SLACK_KIB


@dataclass
class PeakWatch:
    """Per-operation peak RSS and CPU time of named long-lived processes (``{"coordinator": pid, ...}``)."""

    pids: Mapping[str, int]
    resettable: dict[str, bool] = field(default_factory=dict)
    _cpu_start: dict[str, float] = field(default_factory=dict)

    def reset(self) -> None:
        """Reset every peak before an operation; a process whose reset fails keeps its lifetime peak."""
        for name, pid in self.pids.items():
            took = reset_peak(pid)
            self.resettable[name] = self.resettable.get(name, True) and took
            self._cpu_start[name] = cpu_seconds(pid)

    def cpu_used(self) -> dict[str, float]:
        """CPU seconds every process has used since the last :meth:`reset`."""
        return {name: cpu_seconds(pid) - self._cpu_start.get(name, 0.0) for name, pid in self.pids.items()}

    def peaks_kib(self) -> dict[str, int]:
        """VmHWM of every process now, in KiB: the peak since the last :meth:`reset`."""
        return {name: status_kib(pid, "VmHWM") for name, pid in self.pids.items()}

    def notes(self) -> list[str]:
        return [
            f"{name}: /proc/{self.pids[name]}/clear_refs did not reset VmHWM; its figures are lifetime peaks"
            for name, took in self.resettable.items()
            if not took
        ]


@dataclass(frozen=True)
class Reaped:
    """A finished child: exit status, stdout, stderr, wall time, CPU time and peak RSS (``VmHWM``, KiB)."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float
    maxrss_kib: int


def run_reaped(
    command: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600.0, cwd: Path | None = None
) -> Reaped:
    """Run ``command`` to completion, timing it from spawn to reap, and take its peak RSS from ``wait4``.

    Stdout is read through a pipe (the answer is one short JSON document) and stderr goes to a temporary
    file, so neither can fill and block. Past ``timeout`` the child is killed; the function then raises.
    """
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)

        watchdog = threading.Timer(timeout, kill)
        watchdog.start()
        peak = _HighWater(process.pid)
        try:
            assert process.stdout is not None
            with process.stdout:
                out = process.stdout.read()
            peak.stop()
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - start
        except BaseException:  # interrupted while the child runs: never leave it behind unreaped
            kill()
            with contextlib.suppress(ChildProcessError):
                os.wait4(process.pid, 0)
            raise
        finally:
            watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        stderr.seek(0)
        err = stderr.read()
    if expired.is_set():
        raise TimeoutError(f"{command[0]} did not finish within {timeout:.0f} s and was killed")
    return Reaped(
        process.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
        seconds,
        usage.ru_utime + usage.ru_stime,
        peak.kib,
    )


class _HighWater:
    """The child's own peak RSS (``VmHWM``), sampled until it ends.

    ``wait4``'s ``ru_maxrss`` is no good here: it also counts the moment between fork and exec,
    when the child still maps this (large) benchmark process, so it reports our size, not flow's.
    ``VmHWM`` belongs to the program after exec; the last sample before exit is its peak.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.kib = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(OSError, ValueError, KeyError):
                self.kib = max(self.kib, status_kib(self.pid, "VmHWM"))
            self._done.wait(0.02)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


@contextlib.contextmanager
def kill_after(seconds: float, pid: int) -> Iterator[None]:
    """Kill ``pid`` if the block is still running after ``seconds``: bounds calls into that process."""
    timer = threading.Timer(seconds, lambda: _kill_quietly(pid))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _kill_quietly(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
