"""Running `flow` as a user does: a separate process, the coordinator's address in the environment."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

FLOW = str(Path(sys.executable).parent / "flow")
WAIT = 120.0  # bound of one `flow` run


class Reachable(Protocol):
    @property
    def address(self) -> str: ...


def _env(target: Reachable, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "FATE_REGISTRY_ADDRESS": target.address, **(extra or {})}


def _answer(code: int, out: str, err: str) -> tuple[int, dict[str, Any]]:
    assert "Traceback" not in out + err, err
    answer: dict[str, Any] = json.loads(out)
    return code, answer


def flow(target: Reachable, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """Run `flow ARGS` (with ``env`` added to the environment); its exit code and JSON answer (never a traceback)."""
    done = subprocess.run(
        [FLOW, *args], capture_output=True, text=True, env=_env(target, env), timeout=WAIT, check=False
    )
    return _answer(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def flow_in_background(target: Reachable, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``flow`` as its own process while the test acts; killed by PID if still running at the end."""
    process = subprocess.Popen(
        [FLOW, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_env(target),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=WAIT)


def answer_of(running: subprocess.Popen[str], timeout: float = WAIT) -> tuple[int, dict[str, Any]]:
    """Wait (bounded) for a background ``flow`` to end; its exit code and JSON answer."""
    out, err = running.communicate(timeout=timeout)
    return _answer(running.returncode, out, err)


def write_conf(directory: Path, name: str, body: dict[str, Any]) -> str:
    """A `-c` conf file for `flow`, written into ``directory``; its path."""
    path = directory / name
    path.write_text(json.dumps(body))
    return str(path)


def import_slices(
    target: Reachable, archives: Mapping[tuple[str, str], Path], model_id: str, version: str, directory: Path
) -> None:
    """Every party's slice, ``archives`` by (role, party id), through `flow model import`; each answer checked."""
    for (role, party), archive in archives.items():
        body = {
            "role": role,
            "party_id": int(party),
            "model_id": model_id,
            "model_version": version,
            "file": str(archive),
            "force_update": False,
        }
        code, answer = flow(target, "model", "import", "-c", write_conf(directory, f"import-{role}.json", body))
        assert code == 0, answer


def store_version(target: Reachable, keys: Mapping[str, Any], directory: Path) -> tuple[int, dict[str, Any]]:
    """`flow model export --to-database` of the version ``keys`` name (FATE's four keys), not forced."""
    conf = write_conf(directory, "store.json", {**keys, "force_update": False})
    return flow(target, "model", "export", "-c", conf, "--to-database")


def delete_version(target: Reachable, keys: Mapping[str, Any], *extra: str) -> tuple[int, dict[str, Any]]:
    """`flow model delete` of the version ``keys`` name (FATE's four keys); ``extra``: e.g. ``--from-store``."""
    version = ["--model-id", keys["model_id"], "--model-version", keys["model_version"]]
    return flow(target, "model", "delete", *version, "-r", keys["role"], "-p", str(keys["party_id"]), *extra)
