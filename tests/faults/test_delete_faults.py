"""``flow model delete`` under faults: all or nothing on the party, and the catalog agrees.

- The model store (a real redis-server, stopped by its PID) is down: ``--from-store`` answers 105
  naming it and deletes nothing, neither the local files nor the agent's row nor the catalog row; once
  the store is back, the same command deletes everything.
- The agent is killed between deleting the store's copy and its local one: the local copy, its row
  and its catalog row stay (the coordinator, which lost the answer, asks the party once it is back);
  the same command finishes the delete.
- The coordinator is killed after the party deleted its copy, before the catalog forgot it: its restart
  asks the party and forgets the version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from client.sdk import RegistryClient
from fate_registry.faultpoints import ENV
from fate_registry.v1 import registry_pb2 as pb
from tests.conftest import GeneratedModel, generate_model
from tests.faults.conftest import ENGINE_PASSWORD
from tests.faults.state import (
    CONNECTION_ERROR,
    PARTY_OF,
    ROLES,
    WAIT,
    assert_consistent,
    operations,
    versions_of,
)
from tests.faults.test_transfer_faults import killed_at, settled, stored_keys
from tests.flow_cli import answer_of, flow, flow_in_background, write_conf
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until
from tests.support.services import RedisServer

GUEST = PARTY_OF["guest"]
MODEL_NOT_FOUND = 100  # get-model-info's retcode for a version the catalog does not list
NOT_FOUND = 404


@pytest.fixture
def model(tmp_path: Path) -> GeneratedModel:
    return generate_model(tmp_path / "model", roles=ROLES)


def keys(model: GeneratedModel) -> dict[str, Any]:
    return {"role": "guest", "party_id": int(GUEST), "model_id": model.model_id, "model_version": model.version}


def import_guest(cluster: Cluster, model: GeneratedModel, tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "import.json", {**keys(model), "file": str(model.archives["guest", GUEST])})
    code, answer = flow(cluster, "model", "import", "-c", conf)
    assert code == 0, answer


def store_guest(cluster: Cluster, model: GeneratedModel, tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "store.json", {**keys(model), "force_update": False})
    code, answer = flow(cluster, "model", "export", "-c", conf, "--to-database")
    assert code == 0, answer


def ids(model: GeneratedModel) -> list[str]:
    return ["--model-id", model.model_id, "--model-version", model.version]


def delete_args(model: GeneratedModel, *extra: str) -> list[str]:
    return ["model", "delete", *ids(model), "-r", "guest", "-p", GUEST, *extra]


def guest_holds(cluster: Cluster, model: GeneratedModel) -> bool:
    """Whether the guest holds the version, once its files, its agent's row and the catalog row are found
    to agree (:func:`assert_consistent`): all of them there, or none."""
    return versions_of(assert_consistent(cluster, [model.model_id]), model.model_id)[GUEST] == {model.version}


def catalog_lists(cluster: Cluster, model: GeneratedModel) -> bool:
    """What ``flow model get-model-info`` says: the catalog lists the guest's version, or knows no such model."""
    code, info = flow(cluster, "model", "get-model-info", *ids(model))
    assert code == 0 or info["retcode"] == MODEL_NOT_FOUND, info
    return code == 0 and [(r["f_role"], r["f_party_id"]) for r in info["data"]] == [("guest", GUEST)]


def reaches(cluster: Cluster, model: GeneratedModel) -> bool:
    """Whether the coordinator reaches the guest's agent: after a restart of the agent, its channel may
    wait out a reconnection backoff (up to a second), failing a call at once meanwhile."""
    request = pb.GetModelInfoRequest(model_id=model.model_id, model_version=model.version, detail=True)
    with RegistryClient(cluster.address) as client:
        return not client.get_model_info(request).failures


def last_delete(cluster: Cluster, model: GeneratedModel) -> dict[str, Any]:
    """The latest delete in the operation log, once its outcome is known (not running, not in doubt)."""
    wait_until(lambda: settled(cluster, model, "delete"), WAIT, "the delete settled")
    return operations(cluster, model, "delete")[0]


def test_delete_from_store_with_the_store_down_deletes_nothing(
    stored_cluster: Cluster, engine: RedisServer, model: GeneratedModel, tmp_path: Path
) -> None:
    """105 naming the store, and everything is still there; once the store is back, everything goes."""
    import_guest(stored_cluster, model, tmp_path)
    store_guest(stored_cluster, model, tmp_path)
    engine.stop()  # by its PID

    code, answer = flow(stored_cluster, *delete_args(model, "--from-store"))
    assert code != 0 and answer["retcode"] == CONNECTION_ERROR, answer
    assert "redis model store" in answer["retmsg"] and "nothing was deleted" in answer["retmsg"], answer
    assert ENGINE_PASSWORD not in answer["retmsg"], answer
    assert guest_holds(stored_cluster, model), "the local files and the agent's row are untouched"
    assert catalog_lists(stored_cluster, model)
    assert last_delete(stored_cluster, model)["status"] == "failed"

    engine.start()  # same port, same data
    assert stored_keys(engine, model)[0] is True, "the store's copy is untouched"
    code, answer = flow(stored_cluster, *delete_args(model, "--from-store"))
    assert code == 0, answer
    assert answer["data"]["deleted_local"] is True and answer["data"]["deleted_store"] is True, answer
    assert not guest_holds(stored_cluster, model)
    assert not catalog_lists(stored_cluster, model)
    assert stored_keys(engine, model) == (False, 0), "nothing of the version is left in the store"
    assert last_delete(stored_cluster, model)["status"] == "success"


def test_agent_killed_between_the_store_and_the_local_delete(
    stored_cluster: Cluster, engine: RedisServer, model: GeneratedModel, tmp_path: Path
) -> None:
    """The store's copy goes first; killed before the local one, the party keeps it and the catalog says so."""
    import_guest(stored_cluster, model, tmp_path)
    store_guest(stored_cluster, model, tmp_path)
    args = delete_args(model, "--from-store")

    guest = agent_name(GUEST)
    stored_cluster.restart(guest, {ENV: "agent.delete.store_deleted"})
    wait_until(lambda: reaches(stored_cluster, model), WAIT, "the coordinator reaches the restarted agent")
    with flow_in_background(stored_cluster, *args) as running:
        stored_cluster.wait_stopped(guest)
        stored_cluster.kill(guest)
        code, answer = answer_of(running)
    stored_cluster.restart(guest)
    assert code != 0 and answer["retcode"] == CONNECTION_ERROR and GUEST in answer["retmsg"], answer
    operation = last_delete(stored_cluster, model)  # asked the party once it was back: it holds the version
    assert operation["status"] == "failed" and "still holds the version" in operation["retmsg"], operation
    assert guest_holds(stored_cluster, model)
    assert catalog_lists(stored_cluster, model)
    assert stored_keys(engine, model)[0] is False

    code, answer = flow(stored_cluster, *args)  # the same command finishes it
    assert code == 0, answer
    assert answer["data"]["deleted_local"] is True and answer["data"]["deleted_store"] is False, answer
    assert not guest_holds(stored_cluster, model)
    assert not catalog_lists(stored_cluster, model)


def test_coordinator_killed_before_the_catalog_forgot(cluster: Cluster, model: GeneratedModel, tmp_path: Path) -> None:
    """The party deleted its copy and answered; the coordinator died before the catalog forgot the version."""
    import_guest(cluster, model, tmp_path)

    code, answer = killed_at(cluster, COORDINATOR, "coordinator.delete.answered", delete_args(model))
    assert code != 0 and "cannot reach the registry" in answer["retmsg"], answer
    assert not guest_holds(cluster, model), "the restart's recovery asked the party and forgot the version"
    assert not catalog_lists(cluster, model)
    operation = last_delete(cluster, model)
    assert operation["status"] == "success" and "no longer holds the version" in operation["retmsg"], operation

    code, answer = flow(cluster, *delete_args(model))
    assert code != 0 and answer["retcode"] == NOT_FOUND, answer
