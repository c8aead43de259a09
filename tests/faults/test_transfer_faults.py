"""Import and store under faults: kill -9 of the agent or the coordinator mid-way, an engine that goes away.

The guest's slice (about 2 MiB, so it travels in several chunks) is imported with ``flow model
import`` and stored in a real redis-server with ``flow model export --to-database``. The receiving
agent stops itself at a named phase (:mod:`fate_registry.faultpoints`) and is killed there; after its
restart every party's files, rows and the catalog must agree (:func:`assert_consistent`) and the
engine must hold the whole archive or nothing under the model's key; then the same command works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis

from client.settings import TRANSFER_ENV
from fate_registry.config import LimitsConf
from fate_registry.faultpoints import ENV
from party_agent.storage.base import StoreKey
from party_agent.storage.redis_store import _header_key
from tests.conftest import GeneratedModel, generate_model
from tests.faults.state import (
    PARTY_OF,
    ROLES,
    WAIT,
    assert_consistent,
    import_everywhere,
    operations,
    versions_of,
)
from tests.flow_cli import answer_of, flow, flow_in_background, write_conf
from tests.support.cluster import COORDINATOR, Cluster, agent_name, wait_until
from tests.support.services import RedisServer

GUEST = PARTY_OF["guest"]
MODEL_BYTES = 8 * LimitsConf.upload_chunk_bytes  # several chunks: a fault point midway needs a second one


@pytest.fixture
def model(tmp_path: Path) -> GeneratedModel:
    return generate_model(tmp_path / "model", roles=ROLES, target_bytes=MODEL_BYTES)


def keys(model: GeneratedModel) -> dict[str, Any]:
    return {"role": "guest", "party_id": int(GUEST), "model_id": model.model_id, "model_version": model.version}


def import_args(model: GeneratedModel, tmp_path: Path) -> list[str]:
    conf = {**keys(model), "file": str(model.archives["guest", GUEST]), "force_update": False}
    return ["model", "import", "-c", write_conf(tmp_path, "import.json", conf)]


def store_args(model: GeneratedModel, tmp_path: Path) -> list[str]:
    """A store of an archive of several messages (stored: deflated, the small model's fits in one), to stop within."""
    conf = {**keys(model), "force_update": False}
    return ["model", "export", "-c", write_conf(tmp_path, "store.json", conf), "--to-database", "--stored"]


def killed_at(cluster: Cluster, name: str, point: str, args: list[str]) -> tuple[int, dict[str, Any]]:
    """Restart ``name`` to stop at ``point``, run ``flow args``, kill -9 ``name`` there, restart it; the answer."""
    cluster.restart(name, {ENV: point})
    with flow_in_background(cluster, *args) as running:
        cluster.wait_stopped(name)
        cluster.kill(name)
        answer = answer_of(running)
    cluster.restart(name)
    return answer


def settled(cluster: Cluster, model: GeneratedModel, operation: str) -> bool:
    """The operation's outcome is known: not running, not in doubt."""
    return operations(cluster, model, operation)[0]["status"] not in ("running", "in_doubt")


def guest_versions(cluster: Cluster, model: GeneratedModel) -> set[str]:
    return versions_of(assert_consistent(cluster, [model.model_id]), model.model_id)[GUEST]


def stored_keys(server: RedisServer, model: GeneratedModel) -> tuple[bool, int]:
    """Whether the model's header key is in redis, and how many chunk keys of it are (any generation)."""
    name = _header_key(StoreKey(f"guest#{GUEST}#{model.model_id}", model.version))
    with redis.Redis(host=server.host, port=server.port, password=server.password) as client:
        chunks = sum(1 for k in client.scan_iter(count=1000) if k.decode().startswith(f"{name}:chunk:"))
        return bool(client.exists(name)), chunks


# -- import -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "transfer"),
    [
        ("agent.import.receiving", "direct"),
        ("agent.publish.journalled", "direct"),
        ("agent.publish.renamed", "direct"),
        ("agent.publish.renamed", "relay"),
    ],
)
def test_agent_killed_while_importing(
    cluster: Cluster, model: GeneratedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str, transfer: str
) -> None:
    """Killed before its rename, the party has nothing; after it, its restart finishes the publish and
    the coordinator, which lost the party's answer, catalogs the version once the party is back."""
    monkeypatch.setenv(TRANSFER_ENV, transfer)
    args = import_args(model, tmp_path)
    code, answer = killed_at(cluster, agent_name(GUEST), point, args)
    assert code != 0 and answer["retcode"] == 105, answer  # said plainly: who could not be reached
    expected = "cannot reach the agent of party 9999" if transfer == "direct" else "party 9999 did not answer"
    assert expected in answer["retmsg"], answer
    held = {model.version} if point == "agent.publish.renamed" else set()
    wait_until(lambda: settled(cluster, model, "import"), WAIT, "the import settled")
    assert guest_versions(cluster, model) == held, "all or nothing, and the catalog agrees"

    code, again = flow(cluster, *args)
    if held:
        assert code != 0 and again["retcode"] == 409, again  # it is there: no overwrite without force_update
    else:
        assert code == 0, again
    assert guest_versions(cluster, model) == {model.version}


def test_coordinator_killed_after_the_party_imported(
    cluster: Cluster, model: GeneratedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relayed through the coordinator, which dies between the party's answer and its catalog write."""
    monkeypatch.setenv(TRANSFER_ENV, "relay")
    code, answer = killed_at(cluster, COORDINATOR, "coordinator.import.answered", import_args(model, tmp_path))
    assert code != 0 and "cannot reach the registry" in answer["retmsg"], answer
    assert guest_versions(cluster, model) == {model.version}  # catalogued by the restart's recovery
    (operation,) = operations(cluster, model, "import")
    assert operation["status"] == "success" and "was lost" in operation["retmsg"], operation


# -- store --------------------------------------------------------------------------------------------


def test_agent_killed_while_storing(
    stored_cluster: Cluster, engine: RedisServer, model: GeneratedModel, tmp_path: Path
) -> None:
    import_everywhere(stored_cluster, model)
    args = store_args(model, tmp_path)
    code, answer = killed_at(stored_cluster, agent_name(GUEST), "agent.store.writing", args)
    assert code != 0 and answer["retcode"] == 105, answer
    assert stored_keys(engine, model)[0] is False  # no stored model: the header is written last
    assert guest_versions(stored_cluster, model) == {model.version}  # the local copy is untouched

    code, stored = flow(stored_cluster, *args)
    assert code == 0, stored
    assert stored_keys(engine, model)[0] is True


def test_storage_engine_goes_away_mid_store(
    stored_cluster: Cluster, engine: RedisServer, model: GeneratedModel, tmp_path: Path
) -> None:
    import_everywhere(stored_cluster, model)
    guest = agent_name(GUEST)
    args = store_args(model, tmp_path)
    stored_cluster.restart(guest, {ENV: "agent.store.writing"})
    with flow_in_background(stored_cluster, *args) as running:
        stored_cluster.wait_stopped(guest)
        engine.stop()  # by its PID
        stored_cluster.resume(guest)
        code, answer = answer_of(running)
    assert code != 0, answer
    assert "redis" in answer["retmsg"] and str(engine.password) not in answer["retmsg"], answer
    stored_cluster.restart(guest)
    engine.start()  # same port, same data
    assert stored_keys(engine, model) == (False, 0), "nothing half-written in the engine"
    assert guest_versions(stored_cluster, model) == {model.version}

    code, stored = flow(stored_cluster, *args)
    assert code == 0, stored
    restore = {**keys(model), "force_update": True}
    code, restored = flow(
        stored_cluster, "model", "import", "-c", write_conf(tmp_path, "restore.json", restore), "--from-database"
    )
    assert code == 0, restored
    assert guest_versions(stored_cluster, model) == {model.version}
