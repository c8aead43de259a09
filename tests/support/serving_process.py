"""Start and stop the FATE-Serving test server (:mod:`tests.support.serving`) as a process.

Usage in a test::

    with ServingTestServer.start(tmp_path / "serving") as serving:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(serving.address))
        ...
        serving.set_control(Faults(fail_load=123))   # from now on publishLoad answers 123
        serving.clear_control()                       # back to the faults given at start
        assert serving.records("publishLoad")[0]["request"]["loadType"] == "FATEFLOW"

Everything the process writes lives under ``root`` (one server at a time per root): ``serving.port``,
``requests.jsonl`` (the record), ``control.json`` and ``serving.log`` (its stdout and stderr). Starting
again on the same root (a restarted FATE-Serving: nothing loaded) removes a leftover control file but
keeps appending to the record and the log.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fate_registry.config import PLAINTEXT, TlsConf
from tests.support.processes import support_module, terminate, wait_for_port_file
from tests.support.serving import Faults

_POLL_INTERVAL = 0.05


@dataclass
class ServingTestServer:
    """One running FATE-Serving test server process, on a free loopback port."""

    root: Path
    process: subprocess.Popen[bytes]
    address: str
    """``127.0.0.1:<port>``, for ``grpc.insecure_channel`` (``open_channel`` with the CA when it serves TLS)."""
    record_path: Path
    control_path: Path
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        root: Path,
        *,
        faults: Faults | None = None,
        transfer_url: str | None = None,
        pull_timeout: float | None = None,
        timeout: float = 30.0,
        tls: TlsConf = PLAINTEXT,
        prefix: Sequence[str] = (),
    ) -> ServingTestServer:
        """Start the server with ``faults`` given as command-line flags; wait up to ``timeout`` s until it serves.

        ``prefix`` runs it under another command (``ip netns exec <ns>``: on that namespace's loopback).
        """
        root.mkdir(parents=True, exist_ok=True)
        port_file = root / "serving.port"
        record_path = root / "requests.jsonl"
        control_path = root / "control.json"
        log_path = root / "serving.log"
        port_file.unlink(missing_ok=True)
        control_path.unlink(missing_ok=True)  # a restart on the same root starts with the faults given here
        command = [
            *prefix,
            *support_module("serving"),
            f"--port-file={port_file}",
            f"--record={record_path}",
            f"--control={control_path}",
            *(faults or Faults()).to_args(),
        ]
        if transfer_url is not None:
            command.append(f"--transfer-url={transfer_url}")
        if pull_timeout is not None:
            command.append(f"--pull-timeout={pull_timeout}")
        for flag, path in (("--tls-cert", tls.cert), ("--tls-key", tls.key), ("--tls-ca", tls.ca)):
            if path is not None:
                command.append(f"{flag}={path}")
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        address = wait_for_port_file(process, port_file, timeout, "the serving test server", log_path)
        return cls(root, process, address, record_path, control_path, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def records(self, method: str | None = None) -> list[dict[str, Any]]:
        """The requests received so far, oldest first; only ``method``'s when given.

        Each is ``{"method", "request", "raw", "metadata", "time"}`` (see :mod:`tests.support.serving`).
        A line still being written is left out.
        """
        if not self.record_path.exists():
            return []
        complete = self.record_path.read_text(encoding="utf-8").split("\n")[:-1]
        entries = [json.loads(line) for line in complete]
        return [entry for entry in entries if method is None or entry["method"] == method]

    def set_control(self, faults: Faults) -> None:
        """Replace the faults in force from the next request on (atomically: the server never sees half a file)."""
        tmp = self.control_path.with_name(self.control_path.name + ".tmp")
        tmp.write_text(faults.to_json(), encoding="utf-8")
        tmp.replace(self.control_path)

    def clear_control(self) -> None:
        """Go back to the faults given at start."""
        self.control_path.unlink(missing_ok=True)

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to end by itself (after a ``drop="crash"`` fault); return its exit status."""
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by PID, then SIGKILL if it has not ended within ``timeout`` s. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        terminate(self.process, timeout)

    def __enter__(self) -> ServingTestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving_servers(
    root: Path, parties: Sequence[str], tls: TlsConf = PLAINTEXT
) -> Iterator[dict[str, ServingTestServer]]:
    """A FATE-Serving test server per party (in ``root/<party>``), all stopped by PID on exit, also when one
    of them fails to start."""
    with contextlib.ExitStack() as stack:
        yield {party: stack.enter_context(ServingTestServer.start(root / party, tls=tls)) for party in parties}
