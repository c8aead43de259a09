"""A MySQL catalog that is down or refuses the password: one clear line naming it, never the password.

- At start: ``fate-registry server`` pointed at a port where nothing listens exits non-zero within
  seconds with one line naming the database (``mysql://user@host:port/name``) and no traceback;
  ``fate-registry up`` relays that line. With a wrong password (a real MariaDB) the line says the
  server refused the user. An agent whose metadata database is MySQL says the same of it.
- At run time: the MariaDB the test started is stopped (by PID) under a running coordinator; the SDK
  and ``flow`` get 105 naming the database, and once MariaDB is back, calls succeed again.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.sdk import RegistryClient
from fate_registry.errors import Reason, RegistryError
from fate_registry.v1 import registry_pb2 as pb
from tests.flow_cli import flow
from tests.support.cluster import Cluster
from tests.support.federation import fate_registry_command
from tests.support.services import HOST, MariaDB, free_port, mariadb

DATABASE = "registry"
USER = "fate"
PASSWORD = "catalog-secret-pw"
WRONG_PASSWORD = "not-the-catalog-pw"
# A start-up failure is reported within this many seconds (a refused connection fails at once).
FAIL_FAST = 15.0


def _mysql(port: int, password: str = PASSWORD) -> dict[str, Any]:
    return {"engine": "mysql", "name": DATABASE, "user": USER, "password": password, "host": HOST, "port": port}


def _write_conf(root: Path, coordinator_database: dict[str, Any], party: dict[str, Any] | None = None) -> Path:
    conf = {
        "coordinator": {"address": "127.0.0.1:0", "database": coordinator_database},
        "parties": {"9999": {"address": "127.0.0.1:0", **(party or {})}},
    }
    path = root / "service_conf.yaml"
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(conf), encoding="utf-8")
    return path


def _run(root: Path, command: str, *options: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``fate-registry COMMAND --conf … --data-dir … OPTIONS``, to its end; also how long it took."""
    conf_args = ["--conf", str(root / "service_conf.yaml"), "--data-dir", str(root / "data")]
    started = time.monotonic()
    done = subprocess.run(
        [*fate_registry_command(), command, *conf_args, *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done, time.monotonic() - started


def _assert_one_clear_line(done: subprocess.CompletedProcess[str], expected: str, *secrets: str) -> str:
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output, output
    for secret in secrets:
        assert secret not in output
    lines = [line for line in output.splitlines() if expected in line]
    assert len(lines) == 1, output
    return lines[0]


def test_a_coordinator_whose_catalog_cannot_be_reached_exits_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    _write_conf(tmp_path, _mysql(port))
    done, took = _run(tmp_path, "server")
    url = f"mysql://{USER}@{HOST}:{port}/{DATABASE}"
    line = _assert_one_clear_line(done, f"the catalog database {url} cannot be reached", PASSWORD)
    assert line.endswith("connection refused"), line
    assert took < FAIL_FAST


def test_up_relays_why_the_coordinator_exited(tmp_path: Path) -> None:
    port = free_port()
    _write_conf(tmp_path, _mysql(port))
    done, took = _run(tmp_path, "up", "--ready-timeout", "60")
    assert done.returncode == 1
    url = f"mysql://{USER}@{HOST}:{port}/{DATABASE}"
    line = _assert_one_clear_line(done, f"the catalog database {url} cannot be reached: connection refused", PASSWORD)
    assert line.startswith("fate-registry up: coordinator exited with code 2: the catalog database"), line
    assert took < 2 * FAIL_FAST
    log = (tmp_path / "data" / "logs" / "coordinator.log").read_text(encoding="utf-8")
    assert "Traceback" not in log and PASSWORD not in log, log
    assert log.strip().splitlines()[-1].removeprefix("fate-registry: ") in line, log


def test_an_agent_whose_metadata_database_cannot_be_reached_exits_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    _write_conf(tmp_path, {"engine": "sqlite"}, {"database": _mysql(port)})
    done, took = _run(tmp_path, "agent", "--party-id", "9999")
    url = f"mysql://{USER}@{HOST}:{port}/{DATABASE}"
    _assert_one_clear_line(done, f"the metadata database {url} cannot be reached: connection refused", PASSWORD)
    assert took < FAIL_FAST


@pytest.fixture
def database(tmp_path: Path) -> Iterator[MariaDB]:
    """A MariaDB of this test's own: the runtime test stops and starts it by PID."""
    with mariadb(tmp_path / "mariadb", database=DATABASE, user=USER, password=PASSWORD) as db:
        yield db


def test_a_wrong_password_is_refused_in_one_line_without_the_password(database: MariaDB, tmp_path: Path) -> None:
    _write_conf(tmp_path, _mysql(database.port, WRONG_PASSWORD))
    done, took = _run(tmp_path, "server")
    url = f"mysql://{USER}@{HOST}:{database.port}/{DATABASE}"
    line = _assert_one_clear_line(done, f"the catalog database {url} refused the user {USER}", WRONG_PASSWORD, PASSWORD)
    assert "access denied (wrong password?)" in line, line
    assert took < FAIL_FAST


def test_a_catalog_stopped_under_a_running_coordinator_answers_105_naming_it(database: MariaDB, tmp_path: Path) -> None:
    with Cluster.start(tmp_path / "cluster", {"9999": {}}, {"database": _mysql(database.port)}) as cluster:
        with RegistryClient(cluster.address) as client:
            assert not client.list_model_versions(pb.ListModelVersionsRequest()).versions
            database.stop()
            with pytest.raises(RegistryError) as raised:
                client.list_model_versions(pb.ListModelVersionsRequest())
            error = raised.value
            assert (error.fate_retcode, error.reason) == (105, Reason.PARTY_UNAVAILABLE), error
            url = f"mysql://{USER}@{HOST}:{database.port}/{DATABASE}"
            assert error.message.startswith(f"the catalog database {url} cannot be reached"), error.message
            assert PASSWORD not in error.message

            code, answer = flow(cluster, "model", "get-model-info", "--model-id", "m", "--model-version", "v")
            assert (code, answer["retcode"]) == (1, 105), answer
            assert url in answer["retmsg"] and PASSWORD not in str(answer)

            database.start()  # the same port and data: the coordinator's next call reconnects
            assert not client.list_model_versions(pb.ListModelVersionsRequest()).versions
        log = cluster.log_path("coordinator").read_text(encoding="utf-8")
    assert "Traceback" not in log and PASSWORD not in log
