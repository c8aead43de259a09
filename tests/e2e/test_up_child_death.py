"""`fate-registry up` when one of its children dies: it stops the others and exits 1, its stderr naming the
child, how it ended and the last lines of its log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from launcher.federation import TAIL_LINES
from tests.support.federation import fate_registry_command
from tests.support.processes import alive, terminate, wait_for_port_file

WAIT = 60.0


def _banner_pids(stdout: str) -> dict[str, int]:
    """The children's PIDs by name (``coordinator``, ``agent-9999``), from up's banner."""
    found = {}
    for line in stdout.splitlines():
        if "(pid " in line:
            name = "coordinator" if line.startswith("coordinator") else f"agent-{line.split()[1]}"
            found[name] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
    return found


def test_a_dead_agent_stops_up_which_names_it_and_shows_its_logs_end(tmp_path: Path) -> None:
    conf = {
        "coordinator": {"address": "127.0.0.1:0"},
        "parties": {party: {"address": "127.0.0.1:0"} for party in ("9999", "10000")},
    }
    conf_path = tmp_path / "service_conf.yaml"
    conf_path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    data_dir = tmp_path / "data"
    stdout_path, stderr_path = tmp_path / "up.out", tmp_path / "up.err"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        up = subprocess.Popen(
            [*fate_registry_command(), "up", "--conf", str(conf_path), "--data-dir", str(data_dir)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        wait_for_port_file(up, data_dir / "run" / "ready", WAIT, "fate-registry up", stderr_path)
        pids = _banner_pids(stdout_path.read_text(encoding="utf-8"))
        assert set(pids) == {"coordinator", "agent-9999", "agent-10000"}

        # more lines than are shown, as a busy agent writes them (the log is opened for appending, as up opened it)
        log = data_dir / "logs" / "agent-10000.log"
        written = [
            f"2026-01-01 00:00:0{i} INFO party_agent: line {i} of the agent's log" for i in range(TAIL_LINES + 2)
        ]
        with log.open("a", encoding="utf-8") as appended:
            appended.write("\n".join(written) + "\n\n")
        os.kill(pids["agent-10000"], signal.SIGKILL)
        assert up.wait(timeout=WAIT) == 1

        stderr = stderr_path.read_text(encoding="utf-8")
        assert "Traceback" not in stderr, stderr
        assert stderr.splitlines() == [
            "fate-registry up: agent-10000 was killed by SIGKILL; stopping the federation",
            f"  the last lines of its log {log}:",
            *(f"    {line}" for line in written[-TAIL_LINES:]),
        ], stderr

        deadline = time.monotonic() + WAIT  # up waited for its children: none is left
        while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids.values())
    finally:
        terminate(up, WAIT)
