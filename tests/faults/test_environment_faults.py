"""Faults around the processes: a full disk on one party, a network partition, an agent that hangs.

- Full disk: the host's data directory is a small tmpfs the test mounts (a loop-mounted ext4 image
  where tmpfs is refused) and fills; a deploy and an import on that party fail with NO_SPACE, the
  other parties roll back, nothing half-written stays; once space is freed both work.
- Partition: the coordinator reaches the host through a :class:`TcpProxy` the test cuts. The host
  prepares a deploy, its answer is lost, the coordinator's abort is lost too: the host holds a
  prepared version until the link heals and the resent abort releases it.
- Hang: the host stops (SIGSTOP) in the middle of its commit for longer than its deadline; the user
  is told the commit is not confirmed yet; resumed, it finishes and the coordinator's resent commit
  settles the deploy everywhere.
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fate_registry.faultpoints import ENV
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import (
    CONNECTION_ERROR,
    FEDERATED_ERROR,
    PARTY_OF,
    ROLES,
    TIMEOUTS,
    WAIT,
    assert_consistent,
    has_prepared,
    import_everywhere,
    operations,
    versions_of,
)
from tests.flow_cli import answer_of, flow, flow_in_background, write_conf
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until
from tests.support.netproxy import TcpProxy

HOST = PARTY_OF["host"]
DISK_BYTES = 16 * 1024 * 1024
BLOCK = b"\0" * (64 * 1024)


@pytest.fixture
def parent(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    return import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))


def deploy_args(model: GeneratedModel) -> list[str]:
    return ["model", "deploy", "--model-id", model.model_id, "--model-version", model.version]


def children(cluster: Cluster, model: GeneratedModel) -> dict[str, set[str]]:
    """Each party's deployed versions of ``model`` (all but the parent), once files, rows and catalog agree."""
    held = versions_of(assert_consistent(cluster, [model.model_id]), model.model_id)
    assert all(model.version in v for v in held.values()), held
    return {party: v - {model.version} for party, v in held.items()}


def assert_deployed_once_everywhere(cluster: Cluster, model: GeneratedModel) -> None:
    found = children(cluster, model)
    assert len({frozenset(v) for v in found.values()}) == 1 and all(len(v) == 1 for v in found.values()), found


# -- a full disk ------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(directory: Path, size: int) -> Iterator[None]:
    """A filesystem of ``size`` bytes mounted at ``directory`` (tmpfs, else an ext4 image on a loop
    device), unmounted on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    tmpfs = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True, check=False
    )
    if tmpfs.returncode != 0:
        image = directory.with_name(directory.name + ".img")
        with image.open("wb") as f:
            f.truncate(size)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(directory)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True, capture_output=True)


@pytest.fixture
def full_disk_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The fault suite's federation, the host's data directory on a small filesystem of its own."""
    root = tmp_path / "cluster"
    parties: dict[str, dict[str, Any]] = {party: {} for party in PARTY_OF.values()}
    with small_disk(root / "data" / "parties" / HOST, DISK_BYTES), Cluster.start(root, parties, TIMEOUTS) as started:
        yield started  # the cluster stops before the filesystem is unmounted


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until its filesystem is full; the file."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(BLOCK)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_full_disk_on_one_party(full_disk_cluster: Cluster, tmp_path: Path) -> None:
    cluster = full_disk_cluster
    model = import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))
    other = generate_model(tmp_path / "other", roles=ROLES)  # another version of the same model id
    keys = {"role": "host", "party_id": int(HOST), "model_id": other.model_id, "model_version": other.version}
    conf = write_conf(tmp_path, "import.json", {**keys, "file": str(other.archives["host", HOST])})
    filler = fill(cluster.data_dir / "parties" / HOST)

    code, answer = flow(cluster, *deploy_args(model))
    assert code != 0 and answer["retcode"] == 101, answer
    detail = answer["data"]["detail"]
    assert detail["host"][HOST]["reason"] == "NO_SPACE" and "no space left" in detail["host"][HOST]["retmsg"], answer
    for role in ("guest", "arbiter"):
        assert answer["data"][role] == {PARTY_OF[role]: FEDERATED_ERROR}, answer
    code, imported = flow(cluster, "model", "import", "-c", conf)
    assert code != 0 and "no space left" in imported["retmsg"], imported

    filler.unlink()  # space again: nothing half-written was left behind, and both work now
    wait_until(lambda: operations(cluster, model, "deploy")[0]["status"] == "failed", WAIT, "the abort confirmed")
    assert children(cluster, model) == {party: set() for party in PARTY_OF.values()}
    assert other.version not in versions_of(assert_consistent(cluster, [other.model_id]), other.model_id)[HOST]
    code, answer = flow(cluster, *deploy_args(model))
    assert code == 0, answer
    assert_deployed_once_everywhere(cluster, model)
    code, imported = flow(cluster, "model", "import", "-c", conf)
    assert code == 0, imported
    assert other.version in versions_of(assert_consistent(cluster, [other.model_id]), other.model_id)[HOST]


# -- a network partition ----------------------------------------------------------------------------


def test_partition_between_coordinator_and_one_agent(cluster: Cluster, parent: GeneratedModel) -> None:
    host = agent_name(HOST)
    with TcpProxy(cluster.agent_address(HOST)) as link:
        cluster.route(HOST, link.address)
        cluster.restart(COORDINATOR)  # it reaches the host through the link from now on
        cluster.restart(host, {ENV: "agent.prepare.built"})
        with flow_in_background(cluster, *deploy_args(parent)) as running:
            cluster.wait_stopped(host)  # the host has received its prepare
            link.partition()
            cluster.resume(host)  # it prepares and answers into the void
            code, answer = answer_of(running)
        assert code != 0 and answer["data"]["host"] == {HOST: CONNECTION_ERROR}, answer
        assert answer["data"]["detail"]["host"][HOST]["reason"] == "DEADLINE_EXCEEDED", answer
        assert f"party {HOST}" in answer["data"]["detail"]["host"][HOST]["retmsg"], answer
        assert has_prepared(cluster, "host"), "the host prepared: only the coordinator's abort can release it"
        assert operations(cluster, parent, "deploy")[0]["status"] == "aborting"  # the abort did not get through

        link.heal()
        wait_until(lambda: operations(cluster, parent, "deploy")[0]["status"] == "failed", WAIT, "the abort resent")
        assert children(cluster, parent) == {party: set() for party in PARTY_OF.values()}
        cluster.restart(host)  # without the fault point
        code, answer = flow(cluster, *deploy_args(parent))
        assert code == 0, answer
        assert_deployed_once_everywhere(cluster, parent)
        cluster.route(HOST, None)


# -- an agent that hangs ----------------------------------------------------------------------------


def test_agent_hangs_mid_commit_past_its_deadline(cluster: Cluster, parent: GeneratedModel) -> None:
    host = agent_name(HOST)
    cluster.restart(host, {ENV: "agent.commit.published"})
    with flow_in_background(cluster, *deploy_args(parent)) as running:
        cluster.wait_stopped(host)
        code, answer = answer_of(running)  # the coordinator gives the host its deadline, then answers
    assert code != 0 and answer["retcode"] == CONNECTION_ERROR, answer
    assert f"{HOST} did not confirm yet" in answer["retmsg"] and "resends the commit" in answer["retmsg"], answer
    cluster.resume(host)
    wait_until(lambda: operations(cluster, parent, "deploy")[0]["status"] == "success", WAIT, "the commit confirmed")
    assert_deployed_once_everywhere(cluster, parent)
