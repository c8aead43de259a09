"""FATE's own 1.11 client (PyPI ``fate-client``), run as a FATE user runs it, against the registry's HTTP API.

The client lives in a venv of its own (``scripts/install_fate_client.sh`` makes ``.venv-fate-client/``; the
``FATE_CLIENT_VENV`` variable names another). Its ``flow init`` and ``pipeline init`` write their settings
into the installed packages themselves (``flow_client/settings.yaml``, ``pipeline/config.yaml``), so each
:class:`FateClient` gets a home of its own holding copies of those two packages, first on ``PYTHONPATH``:
the client's code runs unchanged, and two clients (two tests, a test and a benchmark) never share settings.

Usage::

    client = FateClient.create(tmp_path / "fate-client")
    client.init("127.0.0.1:9450")                       # flow init --ip 127.0.0.1 --port 9450
    code, answer = client.flow("model", "get-model-info", "--model-version", version)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[2]
VERSION: Final = "1.11.3.post1"
VENV_ENV: Final = "FATE_CLIENT_VENV"
INSTALL: Final = "scripts/install_fate_client.sh"
WAIT: Final = 300.0  # bound of one client run (the client itself has no timeout)
_SETTINGS_PACKAGES: Final = ("flow_client", "pipeline")  # the packages whose own files hold the settings


class FateClientMissing(RuntimeError):
    """The client's venv is absent or holds another version."""


def venv() -> Path:
    return Path(os.environ.get(VENV_ENV) or REPO / ".venv-fate-client")


def _installed_version(python: Path) -> str:
    done = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('fate-client'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def require_venv() -> Path:
    """The client's venv, checked: ``fate-client`` at :data:`VERSION` with its ``flow`` script."""
    root = venv()
    python = root / "bin" / "python"
    if not (root / "bin" / "flow").exists() or not python.exists():
        raise FateClientMissing(f"FATE's client is not installed in {root}: run {INSTALL}")
    found = _installed_version(python)
    if found != VERSION:
        raise FateClientMissing(f"{root} holds fate-client {found or '(none)'}, not {VERSION}: run {INSTALL}")
    return root


def parse_answer(stdout: str) -> dict[str, Any]:
    """The JSON the client printed, from its first ``{`` (it prints an "Import torch failed" line before)."""
    start = stdout.find("{")
    if start < 0:
        raise ValueError(f"no JSON in the client's output: {stdout[-2000:]!r}")
    answer, _ = json.JSONDecoder().raw_decode(stdout[start:])
    if not isinstance(answer, dict):
        raise ValueError(f"the client printed {type(answer).__name__}, not an object")
    return answer


@dataclass(frozen=True)
class Ran:
    """One finished client process."""

    returncode: int
    stdout: str
    stderr: str

    def answer(self) -> dict[str, Any]:
        assert "Traceback" not in self.stdout + self.stderr, self.stdout + self.stderr
        return parse_answer(self.stdout)


@dataclass(frozen=True)
class FateClient:
    """One installation's worth of client settings: ``home`` holds its own copies of the settings packages."""

    home: Path
    venv: Path

    @classmethod
    def create(cls, home: Path) -> FateClient:
        root = require_venv()
        home.mkdir(parents=True, exist_ok=True)
        locate = (
            "import importlib.util as u, sys\n"
            "for name in sys.argv[1:]: print(u.find_spec(name).submodule_search_locations[0])"
        )
        done = subprocess.run(
            [str(root / "bin" / "python"), "-c", locate, *_SETTINGS_PACKAGES],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=_clean_env(),
        )
        for source in done.stdout.split():
            target = home / Path(source).name
            if not target.exists():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        return cls(home, root)

    def env(self) -> dict[str, str]:
        """The client's environment: its home's packages first, none of ours."""
        return {**_clean_env(), "PYTHONPATH": str(self.home), "HOME": str(self.home)}

    def command(self, script: str) -> list[str]:
        """The venv's console script ``script`` (``flow``, ``pipeline``) as a command line."""
        return [str(self.venv / "bin" / script)]

    def run(self, script: str, *args: str) -> Ran:
        """The venv's ``script`` with ``args``, to its end (bounded by :data:`WAIT`), in the client's home."""
        done = subprocess.run(
            [*self.command(script), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=self.home,
            timeout=WAIT,
            check=False,
        )
        return Ran(done.returncode, done.stdout, done.stderr)

    def flow(self, *args: str) -> tuple[int, dict[str, Any]]:
        """``flow ARGS`` of the 1.11 CLI: its exit code and the JSON it printed (never a traceback)."""
        ran = self.run("flow", *args)
        return ran.returncode, ran.answer()

    def init(self, address: str, app_key: str | None = None, secret_key: str | None = None) -> None:
        """``flow init`` and ``pipeline init`` with the registry's HTTP address (``host:port``)."""
        host, port = address.rsplit(":", 1)
        keys = ["--app-key", app_key, "--secret-key", secret_key] if app_key and secret_key else []
        code, answer = self.flow("init", "--ip", host, "--port", port, *keys)
        if code != 0 or answer.get("retcode") != 0:
            raise RuntimeError(f"flow init failed: {answer}")
        ran = self.run("pipeline", "init", "--ip", host, "--port", port, *keys)
        if ran.returncode != 0:
            raise RuntimeError(f"pipeline init failed: {ran.stdout}{ran.stderr}")

    def python(self, source: str, args: Sequence[str] = ()) -> dict[str, Any]:
        """Run ``source`` with the client venv's Python; the JSON object it prints last."""
        ran = self.run("python", "-c", source, *args)
        if ran.returncode != 0:
            raise RuntimeError(f"the client script failed (exit {ran.returncode}):\n{ran.stdout}\n{ran.stderr}")
        last = ran.stdout.strip().splitlines()[-1]
        answer = json.loads(last)
        assert isinstance(answer, dict), last
        return answer


def _clean_env() -> dict[str, str]:
    """The environment without our own venv's Python settings (the client's venv must not see our packages)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def coordinator_with_http(upstream: str = "", app_key: str = "", secret_key: str = "") -> dict[str, Any]:
    """The ``coordinator`` section of a test federation's conf: its gRPC API and FATE-Flow's HTTP API on free
    ports, forwarding to ``upstream`` when given, FATE's signature required when keys are given."""
    http: dict[str, Any] = {"enabled": True}
    if upstream:
        http["upstream"] = upstream
    if app_key:
        http["authentication"] = {"switch": True, "http_app_key": app_key, "http_secret_key": secret_key}
    return {"address": "127.0.0.1:0", "http": http}
