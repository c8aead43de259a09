"""Deploy and migrate under kill -9 at each phase, of an agent and of the coordinator (issue 7).

Each process stops itself at a named phase (``FATE_REGISTRY_FAULTPOINT``, see
:mod:`fate_registry.faultpoints`), where the test kills it with SIGKILL: the crash happens exactly
there, not somewhere near. The killed process is then restarted; the federation must settle to one
of the two states all-or-nothing allows, on every party, checked by :func:`assert_consistent` (files,
manifests, the agents' rows, the catalog): the operation everywhere, or nowhere.

- An agent killed while it builds its prepared version: the operation rolls back everywhere.
- An agent killed after it has published its committed version but before it has cleaned up: the
  commit was decided, so it is resent until the restarted agent confirms; the version is everywhere.
- The coordinator killed with the plan logged but no prepare sent: rolled back at its restart.
- The coordinator killed with the commit decision logged but not sent, or sent and confirmed but
  not yet in the catalog: its restart finishes the commit, and the catalog lists every party's version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fate_registry.faultpoints import ENV
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import (
    CONNECTION_ERROR,
    NEW_MODEL_ID,
    NEW_PARTY_OF,
    PARTY_OF,
    ROLES,
    WAIT,
    assert_consistent,
    assert_rolled_back_answer,
    import_everywhere,
    operations,
    versions_of,
    write_migrate_conf,
)
from tests.flow_cli import answer_of, flow, flow_in_background
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until

DEAD_REASONS = {"PARTY_UNAVAILABLE", "DEADLINE_EXCEEDED"}
HOST = agent_name(PARTY_OF["host"])


@pytest.fixture
def parent(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    """A HeteroLR model imported on every party: deploys and migrates start from it."""
    return import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))


def command(operation: str, model: GeneratedModel, tmp_path: Path) -> list[str]:
    if operation == "deploy":
        return ["model", "deploy", "--model-id", model.model_id, "--model-version", model.version]
    return ["model", "migrate", "-c", str(write_migrate_conf(model, tmp_path / "migrate.json"))]


def run_until_stopped(cluster: Cluster, name: str, point: str, args: list[str]) -> tuple[int, dict[str, Any]]:
    """Restart ``name`` to stop at ``point``, run ``flow args``, kill -9 ``name`` there; the answer.

    A killed agent is restarted (without the fault point) once the answer is in: back at once, the
    coordinator's retry of an idempotent prepare would reach it and the operation could succeed."""
    cluster.restart(name, {ENV: point})
    with flow_in_background(cluster, *args) as running:
        cluster.wait_stopped(name)
        cluster.kill(name)
        answer = answer_of(running)
    if name != COORDINATOR:
        cluster.restart(name)
    return answer


def settled(cluster: Cluster, model: GeneratedModel, operation: str, status: str) -> None:
    """The operation log reaches ``status`` (a decision a party had not confirmed is resent meanwhile)."""
    wait_until(lambda: operations(cluster, model, operation)[0]["status"] == status, WAIT, f"{operation} {status}")


def assert_everywhere_or_nowhere(cluster: Cluster, model: GeneratedModel, operation: str, done: bool) -> str:
    """Every party holds the new version (``done``) or none does; files, rows, catalog agree. Its version."""
    states = assert_consistent(cluster, [model.model_id, NEW_MODEL_ID])  # a migrate's slices are catalogued too
    if operation == "deploy":
        held = versions_of(states, model.model_id)
        children = {frozenset(v - {model.version}) for v in held.values()}
        assert all(model.version in v for v in held.values()), held
    else:
        held = versions_of(states, NEW_MODEL_ID)
        children = {frozenset(v) for v in held.values()}
        for party, versions in held.items():
            archives = sorted(p.name for p in (cluster.data_dir / "parties" / party / "migrated").glob("*"))
            assert len(archives) == len(versions), (party, archives, versions)
    (child,) = children  # the same on every party
    assert len(child) == (1 if done else 0), held
    return next(iter(child), "")


@pytest.mark.parametrize("operation", ["deploy", "migrate"])
def test_agent_killed_while_preparing(cluster: Cluster, parent: GeneratedModel, tmp_path: Path, operation: str) -> None:
    args = command(operation, parent, tmp_path)
    code, answer = run_until_stopped(cluster, HOST, "agent.prepare.built", args)
    assert code != 0
    assert_rolled_back_answer(answer, "host", DEAD_REASONS)
    settled(cluster, parent, operation, "failed")
    assert_everywhere_or_nowhere(cluster, parent, operation, done=False)

    code, again = flow(cluster, *args)  # the federation works again
    assert code == 0, again
    assert_everywhere_or_nowhere(cluster, parent, operation, done=True)


@pytest.mark.parametrize("operation", ["deploy", "migrate"])
def test_agent_killed_while_committing(
    cluster: Cluster, parent: GeneratedModel, tmp_path: Path, operation: str
) -> None:
    code, answer = run_until_stopped(cluster, HOST, "agent.commit.published", command(operation, parent, tmp_path))
    assert code != 0 and answer["retcode"] == CONNECTION_ERROR, answer
    assert "party 10000" in answer["retmsg"] or "10000 did not confirm" in answer["retmsg"], answer
    settled(cluster, parent, operation, "success")  # the commit was decided: resent to the restarted host
    assert_everywhere_or_nowhere(cluster, parent, operation, done=True)


@pytest.mark.parametrize(
    ("operation", "point", "done"),
    [
        ("deploy", "coordinator.two_phase.preparing", False),
        ("deploy", "coordinator.two_phase.committing", True),
        ("deploy", "coordinator.two_phase.committed", True),
        ("migrate", "coordinator.two_phase.committing", True),
        ("migrate", "coordinator.two_phase.committed", True),
    ],
)
def test_coordinator_killed(
    cluster: Cluster, parent: GeneratedModel, tmp_path: Path, operation: str, point: str, done: bool
) -> None:
    args = command(operation, parent, tmp_path)
    code, answer = run_until_stopped(cluster, COORDINATOR, point, args)
    assert code != 0 and answer["retcode"] == CONNECTION_ERROR, answer
    assert "cannot reach the registry" in answer["retmsg"], answer

    cluster.restart(COORDINATOR)  # it serves once its start-up recovery has run
    (logged,) = operations(cluster, parent, operation)
    assert logged["status"] == ("success" if done else "rolled_back"), logged
    child = assert_everywhere_or_nowhere(cluster, parent, operation, done)
    if done:
        model_id = parent.model_id if operation == "deploy" else NEW_MODEL_ID
        code, info = flow(cluster, "model", "get-model-info", "--model-id", model_id, "--model-version", child)
        assert code == 0 and sorted(r["f_role"] for r in info["data"]) == sorted(PARTY_OF), info
        expected = PARTY_OF if operation == "deploy" else NEW_PARTY_OF
        assert {r["f_role"]: r["f_party_id"] for r in info["data"]} == expected, info
    if not done:
        code, again = flow(cluster, *args)
        assert code == 0, again
        assert_everywhere_or_nowhere(cluster, parent, operation, done=True)
