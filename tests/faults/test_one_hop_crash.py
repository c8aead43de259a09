"""A one-hop import across a crash of the coordinator (issue 17, item 4).

The client streams the archive straight to the party's agent with a ticket the coordinator issued;
the coordinator catalogues the version when the client ends the transfer. Killed after the party
reported the import done and before its catalog write, the restarted coordinator must catalogue the
version as soon as it can ask the party (at its start, then every maintenance period), not when the
ticket expires five minutes later; while it cannot ask, ``get-model-info`` says the version is being
settled, not that it does not exist (a re-import already says 409 "exists"). A transfer whose client
is still streaming when the coordinator restarts is left to finish.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from client.sdk import RegistryClient
from client.settings import TRANSFER_ENV
from fate_registry.errors import Retcode
from fate_registry.faultpoints import ENV
from fate_registry.v1.common_pb2 import PartyModelRef
from party_agent.lifecycle import STAGING
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import PARTY_OF, ROLES, WAIT, operations
from tests.faults.test_transfer_faults import guest_versions, import_args
from tests.flow_cli import answer_of, flow, flow_in_background
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until

GUEST = PARTY_OF["guest"]
SETTLED_WITHIN = 10.0  # the maintenance period is 1 s here; the ticket's own time is 300 s
POINT = "coordinator.transfer.reported"


@pytest.fixture
def model(tmp_path: Path) -> GeneratedModel:
    return generate_model(tmp_path / "model", roles=ROLES, target_bytes=2 * 1024 * 1024)


@pytest.fixture(autouse=True)
def _one_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRANSFER_ENV, "direct")


def model_info(cluster: Cluster, model: GeneratedModel) -> tuple[int, dict[str, Any]]:
    return flow(cluster, "model", "get-model-info", "--model-id", model.model_id, "--model-version", model.version)


def catalogued(cluster: Cluster, model: GeneratedModel) -> bool:
    code, answer = model_info(cluster, model)
    return code == 0 and [(r["f_role"], str(r["f_party_id"])) for r in answer["data"]] == [("guest", GUEST)]


def kill_after_the_party_reported(cluster: Cluster, model: GeneratedModel, tmp_path: Path) -> None:
    """Import one hop; the coordinator stops once the agent reported the import done and is killed there."""
    cluster.restart(COORDINATOR, {ENV: POINT})
    with flow_in_background(cluster, *import_args(model, tmp_path)) as running:
        cluster.wait_stopped(COORDINATOR)
        cluster.kill(COORDINATOR)
        code, answer = answer_of(running)
    assert code != 0 and answer["retcode"] == Retcode.CONNECTION_ERROR, answer
    assert "cannot reach the registry" in answer["retmsg"], answer


def assert_settled(cluster: Cluster, model: GeneratedModel) -> None:
    """The party holds the version, the catalog lists it, the import is logged as done."""
    assert guest_versions(cluster, model) == {model.version}
    (operation,) = operations(cluster, model, "import")
    assert operation["status"] == "success", operation


def test_coordinator_killed_after_the_party_reported_a_one_hop_import(
    cluster: Cluster, model: GeneratedModel, tmp_path: Path
) -> None:
    kill_after_the_party_reported(cluster, model, tmp_path)
    cluster.restart(COORDINATOR)
    wait_until(lambda: catalogued(cluster, model), SETTLED_WITHIN, "the version in the catalog")
    assert_settled(cluster, model)

    code, again = flow(cluster, *import_args(model, tmp_path))  # the party and the catalog agree: it exists
    assert code != 0 and again["retcode"] == Retcode.HTTP_CONFLICT, again


def test_a_version_in_doubt_is_being_settled_not_missing(
    cluster: Cluster, model: GeneratedModel, tmp_path: Path
) -> None:
    """The party cannot be asked (its agent hangs): get-model-info says so, then finds the version."""
    kill_after_the_party_reported(cluster, model, tmp_path)
    guest = agent_name(GUEST)
    cluster.pause(guest)
    try:
        cluster.restart(COORDINATOR)  # its start-up settle waits for the hung agent until call_timeout
        code, answer = model_info(cluster, model)
        assert code != 0 and answer["retcode"] == Retcode.CONNECTION_ERROR, answer
        assert "is being settled" in answer["retmsg"] and "ask again in a moment" in answer["retmsg"], answer
        assert "Traceback" not in answer["retmsg"] and "cannot find model" not in answer["retmsg"], answer
    finally:
        cluster.resume(guest)
    wait_until(lambda: catalogued(cluster, model), SETTLED_WITHIN, "the version in the catalog")
    assert_settled(cluster, model)


def test_an_import_streaming_across_a_coordinator_restart_is_left_to_finish(
    cluster: Cluster, model: GeneratedModel
) -> None:
    """The coordinator dies and comes back while the client streams to the agent: the restart's settle
    finds the transfer running at the agent and leaves it open; the client ends it and it is catalogued."""
    sent_one, go_on = threading.Event(), threading.Event()

    def hold_after_the_first_chunk(_: int) -> None:
        sent_one.set()
        go_on.wait(WAIT)  # bounded: the test releases it once the coordinator is back

    target = PartyModelRef(role="guest", party_id=GUEST, model_id=model.model_id, model_version=model.version)
    outcome: list[object] = []

    def upload() -> None:
        with RegistryClient(cluster.address, transfer="direct") as client:
            try:
                outcome.append(
                    client.import_model(model.archives["guest", GUEST], target, progress=hold_after_the_first_chunk)
                )
            except Exception as exc:  # reported by the test below
                outcome.append(exc)

    uploader = threading.Thread(target=upload, name="upload")
    uploader.start()
    try:
        assert sent_one.wait(WAIT), "the upload started"
        staging = cluster.model_cache(GUEST) / STAGING
        wait_until(lambda: list(staging.glob("stage-*")), WAIT, "the agent receiving the archive")
        cluster.kill(COORDINATOR)
        cluster.restart(COORDINATOR)  # its start-up settle has run: the transfer is running at the agent
        (operation,) = operations(cluster, model, "import")
        assert operation["status"] == "running", operation
    finally:
        go_on.set()
        uploader.join(WAIT)
    assert not uploader.is_alive()
    (result,) = outcome
    assert not isinstance(result, Exception), result
    assert_settled(cluster, model)
