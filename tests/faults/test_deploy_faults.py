"""Deploy is all or nothing under faults (DESIGN §5.1), on separately started processes.

A coordinator and three agents (guest 9999, host 10000, arbiter 10001), each its own process
(:class:`Cluster`), so one can be killed (SIGKILL), made slower than its deadline (SIGSTOP) or
restarted while the others run. After every fault, every party's state is checked: the version
directories under ``model_local_cache/<party_model_id>/`` (the parent only: no child anywhere),
no ``.staging/prep-*`` directory once the operation is resolved, the coordinator's catalog
(``flow model get-model-info`` of the child: not found) and its operation log (``flow operation
list``: the deploy failed or rolled back, with every party's result).

The coordinator's ``deploy_timeout`` (each party's deadline for prepare, commit and abort) is
3 s here, so a slow party costs seconds, not the default ten minutes.

"Late" work on a resumed agent is observed honestly: after SIGCONT, a call that reaches the agent
on the coordinator's own connection (``get-model-info --detail``) proves the agent has read
everything queued before it, and a graceful restart (which waits for running calls) lets a late
prepare finish before its directory is checked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import (
    CONNECTION_ERROR,
    DEPLOY_TIMEOUT,
    FEDERATED_ERROR,
    PARTY_OF,
    ROLES,
    WAIT,
    all_prepared,
    assert_consistent,
    assert_results_as_answered,
    assert_rolled_back_answer,
    has_prepared,
    import_everywhere,
    operations,
    prepared_dirs,
)
from tests.flow_cli import answer_of, flow, flow_in_background
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until

NOT_FOUND = "cannot find model"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def parent(cluster: Cluster, tmp_path: Path) -> GeneratedModel:
    """A trained HeteroLR model imported on every party: the parent every deploy starts from."""
    return import_everywhere(cluster, generate_model(tmp_path / "model", roles=ROLES))


# -- driving `flow` ---------------------------------------------------------------------------------


def deploy_args(model: GeneratedModel) -> list[str]:
    return ["model", "deploy", "--model-id", model.model_id, "--model-version", model.version]


def deploy(cluster: Cluster, model: GeneratedModel) -> tuple[int, dict[str, Any]]:
    return flow(cluster, *deploy_args(model))


def deploy_operations(cluster: Cluster, model: GeneratedModel) -> list[dict[str, Any]]:
    """The deploys of ``model`` in the coordinator's operation log, newest first."""
    return operations(cluster, model, "deploy")


def refresh_party(cluster: Cluster, model: GeneratedModel, role: str) -> None:
    """A call the coordinator makes on the party over its existing connection: once it is answered,
    the agent has read every call queued on that connection before it (HTTP/2 keeps their order)."""
    party = PARTY_OF[role]
    args = ["model", "get-model-info", "--model-id", model.model_id, "--model-version", model.version]
    code, answer = flow(cluster, *args, "-r", role, "-p", party, "--detail")
    assert code == 0, answer


# -- every party's state ----------------------------------------------------------------------------


def versions(cluster: Cluster, model: GeneratedModel, role: str) -> set[str]:
    """The version directories of the model under the party's model_local_cache/<party_model_id>/."""
    party = PARTY_OF[role]
    directory = cluster.model_cache(party) / f"{role}#{party}#{model.model_id}"
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


def assert_no_child_anywhere(cluster: Cluster, model: GeneratedModel, child: str) -> None:
    """Every party holds the parent only, nothing staged for a deploy; the catalog does not know the child."""
    assert_consistent(cluster, [model.model_id])  # files, manifests, rows and catalog agree
    for role, party in PARTY_OF.items():
        assert versions(cluster, model, role) == {model.version}, (role, party)
        assert prepared_dirs(cluster, party) == [], (role, party)
    code, info = flow(cluster, "model", "get-model-info", "--model-id", model.model_id, "--model-version", child)
    assert code != 0 and info["retcode"] == 100 and not info.get("data") and NOT_FOUND in info["retmsg"], info


def assert_deployed_everywhere(cluster: Cluster, model: GeneratedModel, answer: dict[str, Any]) -> str:
    assert answer["retcode"] == 0, answer
    child: str = answer["data"]["model_version"]
    assert_consistent(cluster, [model.model_id])
    for role, party in PARTY_OF.items():
        assert answer["data"][role] == {party: 0}, answer
        assert versions(cluster, model, role) == {model.version, child}, (role, party)
        assert prepared_dirs(cluster, party) == [], (role, party)
    code, info = flow(cluster, "model", "get-model-info", "--model-id", model.model_id, "--model-version", child)
    assert code == 0 and sorted(r["f_role"] for r in info["data"]) == sorted(PARTY_OF), info
    return child


def assert_failed_in_log(operation: dict[str, Any], answer: dict[str, Any]) -> None:
    """The operation log holds the deploy as failed, with the per-party results the caller was given;
    it stays "aborting" (and is resent) while the failed party has not confirmed the abort, and once it
    has, that party's result no longer says the abort is pending."""
    assert operation["status"] in ("failed", "aborting") and operation["retcode"] == 101, operation
    assert_results_as_answered(operation, answer)


# -- a. an agent killed -----------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["before", "during"])
def test_agent_killed_deploy_rolls_back_then_succeeds_after_restart(
    cluster: Cluster, parent: GeneratedModel, when: str
) -> None:
    host = agent_name(PARTY_OF["host"])
    if when == "before":
        cluster.kill(host)
        code, answer = deploy(cluster, parent)
    else:  # while its prepare is in flight: the others have prepared, the host never answers
        cluster.pause(host)
        with flow_in_background(cluster, *deploy_args(parent)) as running:
            wait_until(lambda: all_prepared(cluster, "guest", "arbiter"), WAIT, "guest and arbiter prepared")
            cluster.kill(host)
            code, answer = answer_of(running)

    assert code != 0
    assert_rolled_back_answer(answer, "host", {"PARTY_UNAVAILABLE", "DEADLINE_EXCEEDED"})
    child = answer["data"]["model_version"]
    assert child and child != parent.version
    assert_no_child_anywhere(cluster, parent, child)  # the killed party's disk too
    (operation,) = deploy_operations(cluster, parent)
    assert_failed_in_log(operation, answer)

    cluster.restart(host)  # on its old port: the coordinator reaches it again
    assert_no_child_anywhere(cluster, parent, child)  # its restart recovered nothing into place
    code, again = deploy(cluster, parent)
    assert code == 0, again
    second = assert_deployed_everywhere(cluster, parent, again)
    assert second != child
    wait_until(lambda: deploy_operations(cluster, parent)[1]["status"] == "failed", WAIT, "the abort confirmed")
    latest, first = deploy_operations(cluster, parent)
    assert latest["status"] == "success" and first["status"] == "failed" and first["end_date"]


# -- b. an agent slower than its deadline ------------------------------------------------------------


def test_agent_slower_than_its_deadline(cluster: Cluster, parent: GeneratedModel) -> None:
    """The host is stopped (SIGSTOP) before the deploy: its prepare passes its deadline, every other
    party aborts. Resumed, the host must not act on the prepare late: checked once it has read every
    queued call and a graceful restart has let any late call finish, and again after the
    coordinator's recovery (a restart runs the recovery the maintenance loop runs, and more)."""
    host = agent_name(PARTY_OF["host"])
    refresh_party(cluster, parent, "host")  # the coordinator holds a live connection to the host
    cluster.pause(host)
    started = time.monotonic()
    code, answer = deploy(cluster, parent)
    elapsed = time.monotonic() - started
    print(f"deploy with the host paused: answered in {elapsed:.2f} s (deploy_timeout {DEPLOY_TIMEOUT} s)")  # with -s
    assert code != 0
    assert_rolled_back_answer(answer, "host", {"DEADLINE_EXCEEDED"})
    assert elapsed >= DEPLOY_TIMEOUT, elapsed  # the host was given its whole deadline ...
    assert elapsed < 4 * DEPLOY_TIMEOUT + 10, elapsed  # ... and not the default ten minutes
    child = answer["data"]["model_version"]
    assert_no_child_anywhere(cluster, parent, child)  # the host is still stopped here
    (operation,) = deploy_operations(cluster, parent)
    assert_failed_in_log(operation, answer)

    cluster.resume(host)
    refresh_party(cluster, parent, "host")  # it has now read the late prepare and abort
    cluster.restart(host)  # graceful: a late prepare still running finishes first
    assert_no_child_anywhere(cluster, parent, child)
    cluster.restart(COORDINATOR)  # its recovery settles every deploy it has not finished
    assert_no_child_anywhere(cluster, parent, child)
    (operation,) = deploy_operations(cluster, parent)
    assert_failed_in_log(operation, answer)

    code, again = deploy(cluster, parent)
    assert code == 0, again
    assert_deployed_everywhere(cluster, parent, again)


def test_abort_missed_by_a_slow_party_is_resent(cluster: Cluster, parent: GeneratedModel) -> None:
    """The arbiter is stopped before the deploy, so it fails; the host prepares, then is stopped
    before the coordinator's abort reaches it, so the abort passes its deadline there. Resumed,
    the host holds a prepared child that only the coordinator can release: its recovery must."""
    host, arbiter = agent_name(PARTY_OF["host"]), agent_name(PARTY_OF["arbiter"])
    cluster.pause(arbiter)
    with flow_in_background(cluster, *deploy_args(parent)) as running:
        wait_until(lambda: has_prepared(cluster, "host"), WAIT, "the host prepared")
        cluster.pause(host)
        code, answer = answer_of(running)
    assert code != 0 and answer["data"]["arbiter"] == {"10001": CONNECTION_ERROR}, answer
    assert answer["data"]["host"] == {"10000": FEDERATED_ERROR}, answer  # reported rolled back ...
    child = answer["data"]["model_version"]

    cluster.resume(host)
    cluster.resume(arbiter)
    refresh_party(cluster, parent, "host")
    cluster.restart(host)
    cluster.restart(COORDINATOR)  # the recovery that should resend the unacknowledged abort
    for role in PARTY_OF:
        assert versions(cluster, parent, role) == {parent.version}, role  # no child published
    assert prepared_dirs(cluster, PARTY_OF["host"]) == [], "the abort was resent: the host holds no prepared child"
    assert_no_child_anywhere(cluster, parent, child)


# -- c. the coordinator killed between prepare and commit ---------------------------------------------


def test_coordinator_killed_between_prepare_and_commit_rolls_back_on_restart(
    cluster: Cluster, parent: GeneratedModel
) -> None:
    arbiter, host = agent_name(PARTY_OF["arbiter"]), agent_name(PARTY_OF["host"])
    cluster.pause(arbiter)  # its prepare hangs: the deploy stays between prepare and commit
    with flow_in_background(cluster, *deploy_args(parent)) as running:
        prepared = wait_until(lambda: all_prepared(cluster, "guest", "host"), WAIT, "guest and host prepared")
        cluster.kill(COORDINATOR)
        code, answer = answer_of(running)
    assert code != 0 and answer["retcode"] == CONNECTION_ERROR, answer  # the coordinator went away mid-call
    assert "cannot reach the registry" in answer["retmsg"], answer
    (child,) = {json.loads(p.read_text(encoding="utf-8"))["model_version"] for p in prepared}
    cluster.resume(arbiter)

    # in doubt: the prepared children wait for the coordinator, across an agent restart too
    cluster.restart(host)
    assert has_prepared(cluster, "guest") and has_prepared(cluster, "host")
    for role in PARTY_OF:
        assert versions(cluster, parent, role) == {parent.version}, role

    cluster.restart(COORDINATOR)  # serving means its start-up recovery has run
    cluster.restart(arbiter)  # graceful: a late prepare it picked up has finished
    assert_no_child_anywhere(cluster, parent, child)
    (operation,) = deploy_operations(cluster, parent)
    assert operation["status"] == "rolled_back" and operation["end_date"], operation
    assert operation["retcode"] != 0 and "rolled back" in operation["retmsg"], operation

    code, again = deploy(cluster, parent)  # the federation deploys again after the recovery
    assert code == 0, again
    assert_deployed_everywhere(cluster, parent, again)

    parties = operation.get("parties") or {}
    assert all(parties.get(role) == {party: FEDERATED_ERROR} for role, party in PARTY_OF.items()), operation
